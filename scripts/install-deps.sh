#!/bin/sh
# Installs every Debian 12 package sealguard needs to build, test, demo and benchmark.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
# Usage: scripts/install-deps.sh [--bench | --fuzz]   (--bench adds the benchmark peers: nginx with its
# stream module, wrk; --fuzz adds clang with libFuzzer for make fuzz)
set -eu

BUILD="build-essential cmake pkg-config clang-format
libssl-dev libevent-dev libhttp-parser-dev libnghttp2-dev libcurl4-openssl-dev
libjansson-dev libcjose-dev libcyaml-dev libyaml-dev libsqlite3-dev libpq-dev libcmocka-dev"
# Real peers the tests drive: curl (HTTP/1.1 + HTTP/2), openssl s_client, nghttp/h2load, sqlite3,
# and a real browser for the login page (Debian's chromium, headless; the node driver
# playwright-core is installed by the test itself). chromium without recommends is 25 packages,
# ~125 MB to download on a fresh Debian 12, about 20 s to unpack.
TEST="curl openssl nghttp2-client sqlite3 python3 python3-cryptography procps chromium"
BENCH="nginx-light libnginx-mod-stream wrk glewlwyd"
FUZZ="clang libclang-rt-14-dev"

want="$BUILD $TEST"
[ "${1:-}" = "--bench" ] && want="$want $BENCH"
[ "${1:-}" = "--fuzz" ] && want="$want $FUZZ"

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "install-deps: need root or sudo to install:$missing" >&2; exit 1; }
	SUDO="sudo"
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
