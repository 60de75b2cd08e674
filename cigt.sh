#!/bin/sh
# The README's two commands, on a Debian 12 as bare as a fresh debootstrap (no make, no gcc):
#
#   ./cigt.sh serve   # installs what building and serving needs, builds, starts cigtd
#   ./cigt.sh test    # installs what the tests need too, builds, runs every test
#
# It installs make (apt-get, as root; otherwise it prints the line to run) and hands over to
# `make TARGET...`, whose targets install the rest: `serve` only the Makefile's SERVE_PKGS,
# `test`, `bench` and the others its TEST_PKGS as well. Any make target works (./cigt.sh bench).
# POSIX sh only: a minimal Debian has dash, apt-get and coreutils, and nothing else is assumed.
set -eu
cd "$(dirname "$0")"

if [ $# = 0 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi

if ! command -v make >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "cigt.sh: make is not installed; run:"
    echo "  sudo apt-get install -y make"
    echo "then ./cigt.sh $*"
    exit 1
  fi
  echo "cigt.sh: installing make (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends make
fi
exec make "$@"
