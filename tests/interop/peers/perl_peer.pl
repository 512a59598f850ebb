#!/usr/bin/perl
# Interop peer for Perl's Gearman::Client / Gearman::Worker (Debian libgearman-client-perl).
#
# Same command line as every peer (contract in tests/interop/_peers.py):
#   perl perl_peer.pl worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
#   perl perl_peer.pl client HOST PORT OP FUNC ARGS...
# Clients print one JSON object on stdout; workers append "job <workload>" to LOGFILE.
use strict;
use warnings;
use Fcntl qw(:flock);
use Gearman::Client;
use Gearman::Worker;
use JSON::PP;
use Time::HiRes qw(sleep time);

$| = 1;
my $json = JSON::PP->new->canonical;

sub out { print $json->encode($_[0]), "\n"; }

sub log_job {
    my ($logfile, $workload) = @_;
    open(my $fh, '>>', $logfile) or die "cannot open $logfile: $!";
    flock($fh, LOCK_EX);
    print $fh "job $workload\n";
    close($fh);
}

sub wait_for_file {
    my ($path) = @_;
    my $deadline = time + 60;
    sleep(0.05) while !-e $path && time < $deadline;
}

sub run_worker {
    my ($host, $port, $func, $mode, $logfile, $timeout) = @_;
    my $worker = Gearman::Worker->new(job_servers => ["$host:$port"]);
    my $handler = sub {
        my $job = shift;
        my $workload = $job->arg;
        log_job($logfile, $workload);
        if ($mode eq 'echo') {
            return 'perl:' . uc($workload);
        } elsif ($mode eq 'stream') {
            $worker->send_work_data($job, 'chunk1');
            $job->set_status(1, 2);
            $worker->send_work_warning($job, 'careful');
            $worker->send_work_data($job, 'chunk2');
            $job->set_status(2, 2);
            return 'done';
        } elsif ($mode eq 'hold') {
            $job->set_status(1, 2);
            wait_for_file($workload);
            return 'released';
        } elsif ($mode eq 'fail') {
            return undef;    # Gearman::Worker sends WORK_FAIL for an undefined result
        } elsif ($mode eq 'exception') {
            die "boom\n";    # a dying handler becomes WORK_EXCEPTION
        }
        die "unknown worker mode: $mode\n";
    };
    if (defined $timeout) {
        $worker->register_function($func, $timeout, $handler);
    } else {
        $worker->register_function($func, $handler);
    }
    $worker->work() while 1;
}

sub task_options {
    my ($prio, $unique, $res) = @_;
    my %opts = (priority => $prio);
    $opts{uniq} = $unique if defined $unique;
    if ($res) {
        $opts{on_complete}  = sub { $res->{status} = 'complete'; $res->{result} = ${ $_[0] }; };
        $opts{on_fail}      = sub { $res->{status} ||= 'fail'; };
        $opts{on_exception} = sub { $res->{status} = 'exception'; $res->{exception} = $_[0]; };
        $opts{on_data}      = sub { push @{ $res->{events} }, ['data', ${ $_[0] }]; };
        $opts{on_warning}   = sub { push @{ $res->{events} }, ['warning', ${ $_[0] }]; };
        $opts{on_status}    = sub { push @{ $res->{events} }, ['status', 0 + $_[0], 0 + $_[1]]; };
    }
    return \%opts;
}

sub run_client {
    my ($host, $port, $op, $func, @args) = @_;
    my $client = Gearman::Client->new(job_servers => ["$host:$port"], exceptions => 1);
    if ($op eq 'do') {
        # do_task: the blocking call; a reference to the result, undef on failure.
        my ($prio, $workload, $unique) = @args;
        my $result = $client->do_task($func, $workload, task_options($prio, $unique));
        return out(defined $result ? { status => 'complete', result => $$result }
                                   : { status => 'fail' });
    }
    if ($op eq 'stream') {
        # A task set with every callback: data, status, exception arrive as events.
        my $res = { events => [] };
        my $ts = $client->new_task_set;
        $ts->add_task($func, $args[0], task_options('normal', undef, $res));
        $ts->wait(timeout => 40);
        $res->{status} ||= 'error';
        return out($res);
    }
    if ($op eq 'bg') {
        my ($prio, $workload, $unique) = @args;
        my $handle = $client->dispatch_background($func, $workload, task_options($prio, $unique));
        return out({ handle => $handle });
    }
    if ($op eq 'status') {
        my $st = $client->get_status($args[0]);
        return out({ known => JSON::PP::false, running => JSON::PP::false, num => 0, den => 0 })
            unless $st;
        return out({ known => $st->known ? JSON::PP::true : JSON::PP::false,
                     running => $st->running ? JSON::PP::true : JSON::PP::false,
                     num => 0 + ($st->progress ? $st->progress->[0] : 0),
                     den => 0 + ($st->progress ? $st->progress->[1] : 0) });
    }
    if ($op eq 'tasks') {
        my @results = (undef) x @args;
        my $ts = $client->new_task_set;
        for my $i (0 .. $#args) {
            $ts->add_task($func, $args[$i],
                          { on_complete => sub { $results[$i] = ${ $_[0] }; } });
        }
        $ts->wait(timeout => 40);
        return out({ results => \@results });
    }
    if ($op eq 'shared') {
        # Taskset::add_task returns once JOB_CREATED has arrived.
        my ($unique, $workload, $created_file) = @args;
        my $res = { events => [] };
        my $ts = $client->new_task_set;
        my $handle = $ts->add_task($func, $workload, task_options('normal', $unique, $res));
        (my $short = $handle) =~ s{^.*//}{};
        open(my $fh, '>', $created_file) or die "cannot write $created_file: $!";
        print $fh $short;
        close($fh);
        $ts->wait(timeout => 40);
        $res->{status} ||= 'error';
        $res->{handle} = $short;
        delete $res->{events};
        return out($res);
    }
    if ($op eq 'admin') {
        my %status;
        my $per_server = $client->get_job_server_status;
        for my $functions (values %{$per_server}) {
            for my $name (keys %{$functions}) {
                my $f = $functions->{$name};
                # "queued" is the status line's total column (queued plus running jobs).
                $status{$name} = [0 + $f->{queued}, 0 + $f->{running}, 0 + $f->{capable}];
            }
        }
        return out({ status => \%status });
    }
    die "unsupported client op: $op\n";
}

my $role = shift @ARGV // '';
if ($role eq 'worker') {
    run_worker(@ARGV);
} elsif ($role eq 'client') {
    run_client(@ARGV);
} else {
    die "usage: perl_peer.pl worker|client HOST PORT ...\n";
}
