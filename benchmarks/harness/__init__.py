"""The benchmark harness behind ``benchmarks/run.py``: gearshift against gearmand.

One module per job:

* :mod:`harness.loadgen`   -- build the C load generators and parse their reports;
* :mod:`harness.workloads` -- what is measured (the issue-5 workload table and targets);
* :mod:`harness.services`  -- the databases behind the durable-store workloads;
* :mod:`harness.servers`   -- start each Gearman server fresh, read its peak RSS;
* :mod:`harness.runner`    -- interleave servers, repeat, take medians;
* :mod:`harness.report`    -- the text table, JSON and the table in docs/benchmarks.md.

The load tools are C (one epoll loop each) so that the client side is never what limits
the measured server.
"""
