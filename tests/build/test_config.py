"""How the Makefile configures a build tree.

A tree records its configuration (compiler, flags, liburing, sanitizer) in
B/config and is rebuilt when that changes: liburing installed after a first
build must give the uring engine, not a stale epoll-only binary.  Every test
builds in its own temporary directory (make B=...), never in build/.
"""

import os
import re
import select
import shutil
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOBS = os.environ.get("MAKE_JOBS", "2")
MAKE_TIMEOUT = 300
START_TIMEOUT = 10.0

# What a build without the uring engine answers to echod -m uring.
NO_LIBURING = "built without liburing"

# A cc that, while HIDE_LIBURING is set, behaves as if liburing were not
# installed: the newcomer's machine before `make check` installed it.
FAKE_CC = """#!/bin/sh
if [ -n "${HIDE_LIBURING:-}" ]; then
	for a; do
		case $a in -luring | *liburing*) echo "fake cc: liburing is not installed" >&2; exit 1 ;; esac
	done
fi
exec cc "$@"
"""


def make_env(**extra):
    """The environment without the options of a make that may have started pytest."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CC", "CFLAGS", "LDFLAGS",
                        "SANITIZER", "URING", "B")}
    env.update(extra)
    return env


def make(*args, env=None):
    """Runs make in the source tree; returns the CompletedProcess (text)."""
    return subprocess.run(["make", "-C", ROOT, "--no-print-directory", f"-j{JOBS}", *args],
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT,
                          stdin=subprocess.DEVNULL, env=env or make_env())


def build(*args, env=None):
    r = make(*args, env=env)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


def up_to_date(b, *args):
    """True when `make -q` finds tree b up to date for the given settings."""
    r = make("-q", f"B={b}", *args, f"{b}/echod")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def liburing_installed():
    probe = "#include <liburing.h>\nint main(void){struct io_uring r; return io_uring_queue_init(1, &r, 0);}\n"
    r = subprocess.run(["cc", "-x", "c", "-", "-luring", "-o", os.devnull], input=probe,
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0


needs_liburing = pytest.mark.skipif(not liburing_installed(),
                                    reason="liburing-dev is not installed: no tree can have uring")


def first_stderr_line(proc, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stderr], [], [], left)[0]:
            break
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0].decode(errors="replace")


def uring_start(echod):
    """Starts echod -m uring on a free loopback port: returns its first line
    and, when it listens, what came back for one echoed message."""
    proc = subprocess.Popen([echod, "-m", "uring", "-q", "-l", "127.0.0.1:0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        line = first_stderr_line(proc, START_TIMEOUT)
        m = re.fullmatch(r"echod: listening on tcp 127\.0\.0\.1:(\d+)", line)
        if not m:
            return line, None
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5) as s:
            s.sendall(b"uring after all\n")
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(4096):
                got += chunk
        return line, got
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()


@pytest.fixture
def fake_cc(tmp_path):
    path = tmp_path / "cc"
    path.write_text(FAKE_CC)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def tree(tmp_path):
    return str(tmp_path / "b")


@pytest.fixture(scope="module")
def built_tree(tmp_path_factory):
    """One tree built with the default configuration, for the tests that only look."""
    b = str(tmp_path_factory.mktemp("built") / "b")
    build(f"B={b}", f"{b}/echod")
    return b


# The two ways the first build lacks liburing; the second build is plain `make`.
FIRST_BUILD_WITHOUT_LIBURING = {
    "liburing-installed-after": lambda cc: ([f"CC={cc}"], make_env(HIDE_LIBURING="1")),
    "URING=no-then-default": lambda cc: (["URING=no"], None),
}


@needs_liburing
@pytest.mark.parametrize("first", FIRST_BUILD_WITHOUT_LIBURING)
def test_tree_built_without_liburing_gets_uring_when_rebuilt_with_it(tree, fake_cc, first):
    """The newcomer's order: `make run` before liburing-dev was installed,
    then `make check` installed it and built again in the same tree."""
    args, env = FIRST_BUILD_WITHOUT_LIBURING[first](fake_cc)
    cc = [a for a in args if a.startswith("CC=")]
    build(f"B={tree}", *args, f"{tree}/echod", env=env)
    line, _ = uring_start(f"{tree}/echod")
    assert NO_LIBURING in line, line  # the first build really lacks it

    build(f"B={tree}", *cc, f"{tree}/echod")
    line, echoed = uring_start(f"{tree}/echod")
    assert NO_LIBURING not in line, "the tree was not rebuilt with liburing"
    if echoed is None:
        # The kernel or a seccomp filter refuses io_uring: echod says so.
        assert line.startswith("echod: --model uring: io_uring"), line
    else:
        assert echoed == b"uring after all\n"


def test_same_configuration_rebuilds_nothing(built_tree):
    tree = built_tree
    with open(f"{tree}/config") as f:
        recorded = f.read()
    assert "CFLAGS" in recorded and "liburing" in recorded and "SANITIZER" in recorded
    assert up_to_date(tree)
    r = build(f"B={tree}", f"{tree}/echod")
    assert "is up to date" in r.stdout, r.stdout


OTHER_CONFIGURATIONS = [
    pytest.param(["URING=no"], id="URING=no"),
    pytest.param(["CFLAGS=-O0 -g"], id="CFLAGS"),
    pytest.param(["LDFLAGS=-Wl,-O1"], id="LDFLAGS"),
    pytest.param(["SANITIZER=address,undefined"], id="SANITIZER"),
    pytest.param(["CC=clang"], id="clang", marks=pytest.mark.skipif(
        not shutil.which("clang"), reason="clang is not installed")),
]


@pytest.mark.parametrize("settings", OTHER_CONFIGURATIONS)
def test_other_configuration_makes_the_tree_out_of_date(built_tree, settings):
    assert not up_to_date(built_tree, *settings)
    # make -q only looked: the tree is still up to date for its own configuration.
    assert up_to_date(built_tree)


def test_switching_flags_back_and_forth_rebuilds_each_time(tree):
    # One object is enough to see the record rewritten and obeyed.
    obj = f"{tree}/obj/common/net.o"
    build(f"B={tree}", obj)
    r = build(f"B={tree}", "CFLAGS=-O1", obj)
    assert "-O1" in r.stdout and "net.c" in r.stdout, r.stdout
    with open(f"{tree}/config") as f:
        assert "-O1" in f.read()
    r = build(f"B={tree}", obj)
    assert "-O2" in r.stdout and "net.c" in r.stdout, r.stdout


@pytest.mark.parametrize("settings,tree_name", [
    ([], "build"),
    (["URING=no"], "build-nouring"),
    (["SANITIZER=address,undefined"], "build-address-undefined"),
    (["SANITIZER=thread", "URING=no"], "build-thread-nouring"),
])
def test_each_configuration_has_a_tree_of_its_own(settings, tree_name):
    # make -n -B prints every command, as if nothing were built, and runs none.
    # No goal: plain `make` builds both programs.
    r = make("-n", "-B", *settings)
    assert r.returncode == 0, r.stderr
    for program in ("echod", "echoc"):
        assert re.search(rf"-o {tree_name}/{program}\b", r.stdout), r.stdout[-2000:]


def test_uring_yes_without_liburing_stops_with_the_reason(tree, fake_cc):
    r = make(f"B={tree}", f"CC={fake_cc}", "URING=yes", "all", env=make_env(HIDE_LIBURING="1"))
    assert r.returncode != 0
    assert "URING=yes: liburing is not usable" in r.stderr, r.stderr
    assert "liburing-dev" in r.stderr
