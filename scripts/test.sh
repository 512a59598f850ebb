#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine (apt packages, the
# package with its test extras, third-party interop clients), makes sure the database
# services the storage tests use are running, then runs lint, types and every test.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log "apt packages"
# libpq5: psycopg (extra 'test') parses --libpq-conninfo with libpq's own parser.
# openssl: the TLS tests' certificates; prometheus: its promtool checks /metrics;
# chromium + chromium-driver: the dashboard's browser test (tests/web).
# systemd: systemd-analyze verify checks packaging/systemd/gearshift.service (no systemd
# needs to run; tests/server/test_logs_notify.py). libssl-dev: benchmarks/tls_bench.py
# builds its load generator against OpenSSL.
APT_PACKAGES="gearman-job-server gearman-tools libgearman-client-perl php-cli php-gearman memcached gcc libpq5 openssl prometheus chromium chromium-driver systemd libssl-dev"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Debian starts a gearmand service on install; tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop gearman-job-server 2>/dev/null || true; fi
# Likewise the prometheus service (only promtool is wanted).
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop prometheus 2>/dev/null || true; fi

log "services (PostgreSQL, MariaDB, Redis)"
bash scripts/services.sh

log "python packages (gearshift as users install it: the hot path compiled by mypyc)"
python3 -m pip install -q --disable-pip-version-check '.[test,bench]'

if [ -x scripts/install_interop.sh ] || [ -f scripts/install_interop.sh ]; then
  log "interop clients"
  bash scripts/install_interop.sh
fi

# Lint, types and tests all run even when an earlier one fails, so one CI run reports
# everything; the exit status is non-zero if any of them failed.
status=0
log "ruff"
python3 -m ruff check src tests benchmarks scripts setup.py || status=1
log "mypy --strict"
python3 -m mypy || status=1
log "pytest (installed package, mypyc build)"
GEARSHIFT_EXPECT_BUILD=mypyc python3 -m pytest -p no:cacheprovider "$@" || status=1
# The pure-Python modules are the same source and must behave the same: run the codec,
# dispatch and server tests again from src/ (PYTHONPATH wins over the installed package,
# and the server processes the tests start inherit it).
log "pytest (pure-Python build from src/: protocol, broker, server)"
PYTHONPATH=src GEARSHIFT_EXPECT_BUILD="pure Python" python3 -m pytest -p no:cacheprovider \
  tests/protocol tests/broker tests/server tests/test_build.py || status=1
exit $status
