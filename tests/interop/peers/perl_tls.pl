#!/usr/bin/perl
# Perl's Gearman::Client / Gearman::Worker (Debian libgearman-client-perl) over TLS
# (IO::Socket::SSL), for tests/interop/test_tls_peers.py.
#
#   perl_tls.pl worker HOST PORT CA CERT KEY FUNC COUNT   # reverse COUNT jobs, then exit
#   perl_tls.pl client HOST PORT CA CERT KEY FUNC DATA    # print the job's result
#
# CERT and KEY may be "-" (no client certificate).
use strict;
use warnings;
use Gearman::Client;
use Gearman::Worker;

my ($mode, $host, $port, $ca, $cert, $key, $func, $arg) = @ARGV;
my %server = (host => $host, port => $port, use_ssl => 1, ca_file => $ca);
if ($cert ne "-") {
    $server{cert_file} = $cert;
    $server{key_file}  = $key;
}

if ($mode eq "worker") {
    my $worker = Gearman::Worker->new(job_servers => [\%server]);
    $worker->register_function($func => sub { return scalar reverse $_[0]->arg });
    my $done = 0;
    $worker->work(
        on_complete => sub { $done++ },
        stop_if     => sub { $done >= $arg },
    );
    exit 0;
}

my $client = Gearman::Client->new(job_servers => [\%server]);
my $result = $client->do_task($func, $arg, { timeout => 20 });
if (!defined $result) {
    print STDERR "no result\n";
    exit 1;
}
print ${$result};
exit 0;
