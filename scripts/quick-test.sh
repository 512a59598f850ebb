#!/usr/bin/env bash
# The fast developer loop: the pure-logic unit tests (codec, admin protocol, broker
# dispatch, retries, schedules) against the source tree -- no services, no compiling, no
# server processes. About 30 s on 2 cores (322 tests, measured 2026-12-07). Extra
# arguments go to pytest (e.g. -x, -k NAME). The full suite stays scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=src exec python3 -m pytest -p no:cacheprovider -q \
    -m "not interop and not gearmand and not storage" tests/protocol tests/broker "$@"
