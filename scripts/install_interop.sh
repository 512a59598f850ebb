#!/usr/bin/env bash
# Installs the third-party Gearman clients and workers that tests/interop drives, from the
# registries this project can reach (Debian, PyPI, npm). Idempotent: installs only what is
# missing, so CI (.ci/run -> scripts/test.sh) can call it on every run.
#   Debian: gearman-job-server (reference gearmand), gearman-tools (gearman, gearadmin),
#           php-cli + php-gearman, libgearman-client-perl, nodejs + npm
#   PyPI:   gear, pygearman (python-gearman API), gear's test requirements
#   npm:    gearman (mreinstein/node-gearman) into tests/interop/.node (git-ignored)
# Go is not installed: Debian has no Go Gearman package and Go modules cannot be fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_PACKAGES="gearman-job-server gearman-tools php-cli php-gearman libgearman-client-perl"
# node/npm may come from the base image rather than Debian; apt-get them only when absent.
command -v npm >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES nodejs npm"
missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Debian starts a gearmand service on install; the tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop gearman-job-server 2>/dev/null || true; fi

# gear's published tests (shipped in its wheel) need its test requirements.
python3 -m pip install -q --disable-pip-version-check "gear>=0.16" "pygearman==0.2.6" \
  fixtures testtools testscenarios testresources pyOpenSSL

NODE_DIR=tests/interop/.node
if [ ! -f "$NODE_DIR/node_modules/gearman/package.json" ]; then
  mkdir -p "$NODE_DIR"
  npm install --prefix "$NODE_DIR" --no-audit --no-fund --no-save --silent gearman@2.1.0
fi
