<?php
// A PHP (php-gearman / libgearman) worker for interop tests.
// Usage: php php_worker.php HOST PORT FUNCTION COUNT
// Reverses each workload, reporting status and one data chunk first; exits after COUNT jobs.
[$_, $host, $port, $function, $count] = $argv;
$worker = new GearmanWorker();
$worker->addServer($host, (int)$port);
$worker->addFunction($function, function (GearmanJob $job) {
    $job->sendStatus(1, 2);
    $job->sendData("php:" . $job->workload());
    if ($job->workload() === "fail") {
        $job->sendFail();
        return "";
    }
    return strrev($job->workload());
});
echo "ready\n";
for ($i = 0; $i < (int)$count; $i++) {
    if (!$worker->work()) {
        fwrite(STDERR, "work failed: " . $worker->error() . "\n");
        exit(1);
    }
}
