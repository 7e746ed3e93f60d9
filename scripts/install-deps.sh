#!/bin/sh
# scripts/install-deps.sh - installs the Debian packages echod needs, when missing.
#
#   install-deps.sh build   what the build uses: `make run` calls this.  Never
#                           fails: without liburing echod still builds, and
#                           serves with epoll.
#   install-deps.sh check   the build's and the tests' packages: `make check`
#                           (tests/check.sh) calls this.  Fails when any is
#                           still missing afterwards.
#
# As root, a missing package is installed (apt-get update, then apt-get
# install, non-interactive, no standard input).  Otherwise the exact
# apt-get command is printed: `make run` goes on without, `make check` stops.
set -eu

# What the build uses when it is there: liburing gives the uring engine,
# libseccomp the system call allow-list of echod's sandbox.
BUILD_PACKAGES="liburing-dev libseccomp-dev"

# What the tests need beyond gcc, make and python3.  Add yours here.
#   libcmocka-dev        unit tests            python3-pytest(-timeout)  end-to-end tests
#   clang                the clang build       libclang-rt-dev           libFuzzer's runtime (make fuzz)
#   python3-matplotlib   make bench's charts   systemd                   systemd-socket-activate, systemd-analyze
#   haproxy              contrib/haproxy, test_haproxy.py (--proxy-protocol behind a balancer)
#   python3-yaml         contrib/kubernetes's manifests
#   prometheus           promtool and a real Prometheus scraping --metrics
#   python3-pytest-xdist make check's end-to-end runs, several test files at once
TEST_PACKAGES="libcmocka-dev python3-pytest python3-pytest-timeout clang libclang-rt-dev
	python3-matplotlib systemd haproxy python3-yaml prometheus python3-pytest-xdist"

usage()
{
	echo "usage: $0 build|check" >&2
	exit 2
}

[ $# -eq 1 ] || usage
case $1 in
build) WANT=$BUILD_PACKAGES ;;
check) WANT="$BUILD_PACKAGES $TEST_PACKAGES" ;;
*) usage ;;
esac
SET=$1

# Gives up: for the build set that means going on without; for check, failing.
give_up()
{
	if [ "$SET" = build ]; then
		echo "install-deps: going on without: echod is built without what is missing (no liburing: it serves with epoll; no libseccomp: its sandbox has no system call filter)" >&2
		exit 0
	fi
	exit 1
}

installed()
{
	dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing_packages()
{
	for p in $WANT; do
		installed "$p" || printf '%s ' "$p"
	done
}

# "timeout" bounds apt-get where coreutils has it (a lock held forever, a dead mirror).
bounded()
{
	limit=$1
	shift
	if command -v timeout >/dev/null; then
		timeout -k 10 "$limit" "$@"
	else
		"$@"
	fi
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
	echo "install-deps: not a Debian system; make sure these (or their equivalents) are installed: $WANT" >&2
	exit 0
fi

missing=$(missing_packages)
missing=${missing% }
if [ -z "$missing" ]; then
	echo "install-deps: all present: $WANT"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing: $missing; to install them run:" >&2
	echo "    sudo apt-get install -y --no-install-recommends $missing" >&2
	give_up
fi

echo "install-deps: installing: $missing"
export DEBIAN_FRONTEND=noninteractive
bounded 600 apt-get update -q </dev/null || echo "install-deps: apt-get update failed; trying the install anyway" >&2
# shellcheck disable=SC2086 # one word per package
bounded 900 apt-get install -y -q --no-install-recommends $missing </dev/null ||
	echo "install-deps: apt-get install failed" >&2
missing=$(missing_packages)
missing=${missing% }
if [ -n "$missing" ]; then
	echo "install-deps: could not install: $missing" >&2
	give_up
fi
echo "install-deps: installed"
