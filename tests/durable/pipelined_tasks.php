<?php
// Used by test_ordering.py: libgearman (through php-gearman) pipelines the submissions
// of run_tasks on one connection and pairs each JOB_CREATED with a task by position.
// argv: host port unique... ; prints "unique handle" for each task as libgearman paired
// them (in the created callback).
$client = new GearmanClient();
$client->addServer($argv[1], (int)$argv[2]);
$client->setCreatedCallback(function (GearmanTask $task) {
    echo $task->unique(), " ", $task->jobHandle(), "\n";
});
foreach (array_slice($argv, 3) as $unique) {
    $client->addTaskBackground("f", "data-" . $unique, null, $unique);
}
if (!$client->runTasks()) {
    fwrite(STDERR, $client->error() . "\n");
    exit(1);
}
