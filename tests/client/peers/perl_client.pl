#!/usr/bin/perl
# A Perl (Gearman::Client) client for interop tests.
# Usage: perl perl_client.pl HOST:PORT FUNCTION WORKLOAD...
# Prints "RESULT <value>" per workload, or "FAIL" when the job failed; then a background
# submission's handle as "BG <handle>".
use strict;
use warnings;
use Gearman::Client;

my ($server, $function, @workloads) = @ARGV;
my $client = Gearman::Client->new(job_servers => [$server]);
for my $workload (@workloads) {
    my $result = $client->do_task($function, $workload, {timeout => 20});
    print defined $result ? "RESULT $$result\n" : "FAIL\n";
}
my $handle = $client->dispatch_background($function, "bg-from-perl");
print "BG ", (defined $handle ? $handle : "none"), "\n";
