"""A blocking gearshift worker for the SIGTERM test: each job sleeps, then answers.

Usage: python sigterm_worker.py HOST:PORT FUNCTION SECONDS
Prints "ready" once registered, "start <data>" when a job begins.
"""

import sys
import time

from gearshift.client import Job, Worker


def main() -> None:
    address, function, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def slow(job: Job) -> bytes:
        print("start", job.data.decode(), flush=True)
        time.sleep(seconds)
        return b"finished " + job.data

    worker = Worker([address])
    worker.register(function, slow)
    print("ready", flush=True)
    worker.run(handle_signals=True)
    print("stopped", worker.jobs_done, flush=True)


if __name__ == "__main__":
    main()
