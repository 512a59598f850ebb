#!/usr/bin/env bash
# Installs the third-party Gearman clients and workers that tests/interop drives, from the
# registries this project can reach (Debian, PyPI, npm). Idempotent: installs only what is
# missing, so CI (.ci/run -> scripts/test.sh) can call it on every run.
#   Debian: gearman-job-server (reference gearmand), gearman-tools (gearman, gearadmin),
#           php-cli + php-gearman, libgearman-client-perl, nodejs + npm; for Perl's own
#           test suite its source package (the CPAN tarball, into tests/interop/.perl,
#           git-ignored), the modules its tests use, and patch
#   PyPI:   gear, pygearman (python-gearman API), gear's test requirements
#   npm:    gearman (mreinstein/node-gearman) into tests/interop/.node (git-ignored)
# Go is not installed: Debian has no Go Gearman package and Go modules cannot be fetched.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_PACKAGES="gearman-job-server gearman-tools php-cli php-gearman libgearman-client-perl"
# What Gearman::Client's own t/*.t need (tests/interop/test_perl_suite.py), and patch(1).
APT_PACKAGES="$APT_PACKAGES libtest-tcp-perl libproc-guard-perl libtest-timer-perl \
  libtest-exception-perl libfile-which-perl libstring-crc32-perl libio-socket-ssl-perl patch"
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

# Perl Gearman::Client's own test suite. Debian's binary package ships no tests; the CPAN
# release tarball is Debian's source package. It is fetched through a private deb-src list
# and apt state in a temporary directory (this machine's apt configuration is left alone),
# from the mirror apt already uses for this release's main component, unpacked into
# tests/interop/.perl and patched with tests/interop/perl/*.patch (each says why).
PERL_DIR=tests/interop/.perl
patches_sum=$(cat tests/interop/perl/*.patch | sha256sum)
if [ "$(cat "$PERL_DIR/.ready" 2>/dev/null)" != "$patches_sum" ]; then  # redone if a patch changes
  rm -rf "$PERL_DIR"
  mkdir -p "$PERL_DIR"
  . /etc/os-release
  mirror=$(apt-cache policy | awk -v s="$VERSION_CODENAME/main" '$3 == s && $2 ~ /^https?:/ {print $2; exit}')
  apt_tmp=$(mktemp -d)
  mkdir -p "$apt_tmp/lists/partial"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror:-http://deb.debian.org/debian} $VERSION_CODENAME main" \
    > "$apt_tmp/sources.list"
  apt_opts=(-qq -o Dir::Etc::SourceList="$apt_tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$apt_tmp/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
            -o APT::Sandbox::User=root)
  (cd "$apt_tmp" && $SUDO apt-get "${apt_opts[@]}" update \
     && $SUDO apt-get "${apt_opts[@]}" source --tar-only libgearman-client-perl >/dev/null)
  tar xzf "$apt_tmp"/libgearman-client-perl_*.orig.tar.gz -C "$PERL_DIR"
  $SUDO rm -rf "$apt_tmp"
  for p in tests/interop/perl/*.patch; do
    patch -s -d "$PERL_DIR"/Gearman-* -p1 < "$p"
  done
  echo "$patches_sum" > "$PERL_DIR/.ready"
fi
