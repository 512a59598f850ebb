<?php
// Interop peer for the PHP gearman extension (php-gearman, built on libgearman).
//
// The test suite drives every language through the same command line (see
// tests/interop/_peers.py for the contract), so one pytest scenario can run against PHP,
// Perl, Node, Python and the C tools alike:
//   php php_peer.php worker HOST PORT FUNC MODE LOGFILE [TIMEOUT]
//   php php_peer.php client HOST PORT OP FUNC ARGS...
// Clients print one JSON object on stdout; workers append "job <workload>" to LOGFILE.

function out($value) {
    echo json_encode($value), "\n";
}

function log_job($logfile, $workload) {
    file_put_contents($logfile, "job $workload\n", FILE_APPEND | LOCK_EX);
}

function wait_for_file($path) {
    $deadline = microtime(true) + 60;
    while (!file_exists($path) && microtime(true) < $deadline) {
        usleep(50000);
    }
}

function run_worker($host, $port, $func, $mode, $logfile, $timeout) {
    $worker = new GearmanWorker();
    $worker->addServer($host, (int)$port);
    $handler = function (GearmanJob $job) use ($mode, $logfile) {
        $workload = $job->workload();
        log_job($logfile, $workload);
        switch ($mode) {
            case 'echo':
                return 'php:' . strtoupper($workload);
            case 'stream':
                $job->sendData('chunk1');
                $job->sendStatus(1, 2);
                $job->sendWarning('careful');
                $job->sendData('chunk2');
                $job->sendStatus(2, 2);
                return 'done';
            case 'hold':
                $job->sendStatus(1, 2);
                wait_for_file($workload);
                return 'released';
            case 'fail':
                $job->setReturn(GEARMAN_WORK_FAIL);
                return null;
            case 'exception':
                $job->sendException('boom');
                $job->setReturn(GEARMAN_WORK_EXCEPTION);
                return null;
        }
        throw new InvalidArgumentException("unknown worker mode: $mode");
    };
    if ($timeout !== null) {
        $worker->addFunction($func, $handler, null, (int)$timeout);
    } else {
        $worker->addFunction($func, $handler);
    }
    while ($worker->work() || $worker->returnCode() == GEARMAN_TIMEOUT) {
    }
    fwrite(STDERR, "worker stopped: " . $worker->error() . "\n");
    exit(1);
}

function outcome(GearmanClient $client, $result) {
    $code = $client->returnCode();
    if ($code == GEARMAN_SUCCESS) {
        return ['status' => 'complete', 'result' => $result];
    }
    if ($code == GEARMAN_WORK_FAIL) {
        return ['status' => 'fail'];
    }
    if ($code == GEARMAN_WORK_EXCEPTION) {
        return ['status' => 'exception', 'exception' => $result];
    }
    return ['status' => 'error', 'code' => $code, 'error' => $client->error()];
}

function submit_sync(GearmanClient $client, $prio, $func, $workload, $unique, &$events) {
    $method = ['normal' => 'doNormal', 'high' => 'doHigh', 'low' => 'doLow'][$prio];
    while (true) {
        $result = $client->$method($func, $workload, $unique);
        $code = $client->returnCode();
        if ($code == GEARMAN_WORK_DATA) {
            $events[] = ['data', $result];
        } elseif ($code == GEARMAN_WORK_STATUS) {
            list($num, $den) = $client->doStatus();
            $events[] = ['status', $num, $den];
        } else {
            return outcome($client, $result);
        }
    }
}

function run_tasks(GearmanClient $client, $func, $workloads) {
    $results = [];
    $client->setCompleteCallback(function ($task) use (&$results) {
        $results[$task->unique()] = $task->data();
    });
    $client->setFailCallback(function ($task) use (&$results) {
        $results[$task->unique()] = null;
    });
    foreach ($workloads as $i => $workload) {
        $client->addTask($func, $workload, null, "t$i-" . uniqid());
    }
    if (!$client->runTasks()) {
        return ['status' => 'error', 'error' => $client->error()];
    }
    ksort($results, SORT_NATURAL);
    return ['results' => array_values($results)];
}

// One foreground task with every callback set (addTask + runTasks): intermediate
// WORK_DATA / WORK_WARNING / WORK_STATUS arrive as events, the end as complete, fail or exception.
function stream_task(GearmanClient $client, $func, $workload) {
    $res = ['events' => []];
    $client->setDataCallback(function ($task) use (&$res) {
        $res['events'][] = ['data', $task->data()];
    });
    $client->setWarningCallback(function ($task) use (&$res) {
        $res['events'][] = ['warning', $task->data()];
    });
    $client->setStatusCallback(function ($task) use (&$res) {
        $res['events'][] = ['status', $task->taskNumerator(), $task->taskDenominator()];
    });
    $client->setCompleteCallback(function ($task) use (&$res) {
        $res['status'] = 'complete';
        $res['result'] = $task->data();
    });
    $client->setFailCallback(function ($task) use (&$res) {
        $res['status'] = 'fail';
    });
    $client->setExceptionCallback(function ($task) use (&$res) {
        $res['status'] = 'exception';
        $res['exception'] = $task->data();
    });
    $client->addTask($func, $workload);
    if (!$client->runTasks() && !isset($res['status'])) {
        $res['status'] = 'error';
        $res['error'] = $client->error();
    }
    return $res;
}

// A foreground task with a unique key that writes its handle to $createdFile as soon as
// JOB_CREATED arrives, so the test knows the server has attached this client.
function shared_task(GearmanClient $client, $func, $unique, $workload, $createdFile) {
    $res = [];
    $client->setCreatedCallback(function ($task) use ($createdFile) {
        file_put_contents($createdFile, $task->jobHandle());
    });
    $client->setCompleteCallback(function ($task) use (&$res) {
        $res = ['status' => 'complete', 'result' => $task->data(), 'handle' => $task->jobHandle()];
    });
    $client->setFailCallback(function ($task) use (&$res) {
        $res = ['status' => 'fail'];
    });
    $client->addTask($func, $workload, null, $unique);
    if (!$client->runTasks() && !$res) {
        $res = ['status' => 'error', 'error' => $client->error()];
    }
    return $res;
}

function run_client($host, $port, $op, $func, $args) {
    $client = new GearmanClient();
    $client->addServer($host, (int)$port);
    $client->setTimeout(30000);
    $events = [];
    switch ($op) {
        case 'do':
            return out(submit_sync($client, $args[0], $func, $args[1], $args[2] ?? null, $events));
        case 'stream':
            return out(stream_task($client, $func, $args[0]));
        case 'bg':
            $method = ['normal' => 'doBackground', 'high' => 'doHighBackground',
                       'low' => 'doLowBackground'][$args[0]];
            $handle = $client->$method($func, $args[1], $args[2] ?? null);
            return out(['handle' => $handle, 'code' => $client->returnCode()]);
        case 'status':
            list($known, $running, $num, $den) = $client->jobStatus($args[0]);
            return out(['known' => (bool)$known, 'running' => (bool)$running,
                        'num' => $num, 'den' => $den]);
        case 'tasks':
            return out(run_tasks($client, $func, $args));
        case 'shared':
            return out(shared_task($client, $func, $args[0], $args[1], $args[2]));
    }
    fwrite(STDERR, "unsupported client op: $op\n");
    exit(2);
}

if ($argc < 6) {
    fwrite(STDERR, "usage: php_peer.php worker|client HOST PORT ...\n");
    exit(2);
}
if ($argv[1] === 'worker') {
    run_worker($argv[2], $argv[3], $argv[4], $argv[5], $argv[6], $argv[7] ?? null);
} else {
    run_client($argv[2], $argv[3], $argv[4], $argv[5], array_slice($argv, 6));
}
