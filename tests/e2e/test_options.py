"""The command line: usage errors (exit 2, one line naming the option),
--help and --version, and start failures (exit 1, the address and the reason)."""

import os
import re
import shutil
import socket
import subprocess

import pytest

from conftest import ECHOD, has_ipv6_loopback

# echod exits on its options or at start-up, before it starts any thread.
pytestmark = pytest.mark.no_threads

# (arguments, what the one line must name)
BAD_USAGE = [
    (["--workers", "0"], "--workers"),
    (["--workers", "abc"], "--workers"),
    (["--workers", "99999999999999999999"], "--workers"),
    (["-w"], "--workers"),
    (["--model", "foo"], "--model"),
    (["--model"], "--model"),
    (["-m", ""], "--model"),
    (["--buffer", "0"], "--buffer"),
    (["--buffer", "1k"], "--buffer"),
    (["--backlog", "-1"], "--backlog"),
    (["--backlog", "0"], "--backlog"),
    (["--max-conns", "-1"], "--max-conns"),
    (["--max-conns", "many"], "--max-conns"),
    (["--idle-timeout", "-1"], "--idle-timeout"),
    (["--idle-timeout", "abc"], "--idle-timeout"),
    (["--idle-timeout", "inf"], "--idle-timeout"),
    (["--grace", "x"], "--grace"),
    (["--grace", "nan"], "--grace"),
    (["--grace", "-2"], "--grace"),
    (["--log-format", "xml"], "--log-format"),
    (["--log-format", "text|json"], "--log-format"),
    (["-m", "auto|epoll"], "--model"),
    (["-l", "::1]"], "::1]"),
    (["-l", "127.0.0.1:99999"], "127.0.0.1:99999"),
    (["-l", "127.0.0.1:port"], "127.0.0.1:port"),
    (["-l", "[::1"], "[::1"),
    (["-l", "unix:"], "--listen"),
    (["-l", ""], "--listen"),
    (["--listen"], "--listen"),
    (["--bogus"], "--bogus"),
    (["-x"], "-x"),
    (["stray"], "stray"),
    (["-m", "threads", "-w", "2"], "--workers"),
    (["-m", "iterative", "--workers", "2"], "--workers"),
    (["-v", "-q"], "--quiet"),
]


@pytest.mark.parametrize("args,names", BAD_USAGE, ids=[" ".join(a) or "empty" for a, _ in BAD_USAGE])
def test_bad_option_exits_2_with_one_line_naming_it(run_echod, args, names):
    r = run_echod(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("echod: ")
    assert names in lines[0]
    assert "listening" not in r.stderr
    assert r.stdout == ""


def test_usage_error_is_reported_before_any_socket_is_bound(run_echod):
    # With an address already in use AND a bad value, the bad value wins:
    # nothing was bound before the options were all checked.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_echod("-l", f"127.0.0.1:{port}", "--grace", "soon")
    assert r.returncode == 2, r.stderr
    assert "--grace" in r.stderr
    assert "in use" not in r.stderr


# Every option of the contract that echod has today.
CONTRACT_OPTIONS = ["--listen", "--once", "--model", "--workers", "--buffer", "--backlog",
                    "--max-conns", "--idle-timeout", "--grace", "--user", "--verbose",
                    "--quiet", "--log-format", "--help", "--version"]
CONTRACT_SHORT = ["-l", "-m", "-w", "-v", "-q", "-h", "-V"]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_and_exits_0(run_echod, flag):
    r = run_echod(flag)
    assert r.returncode == 0
    assert r.stderr == ""
    assert r.stdout.startswith("usage: echod")
    listed = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", r.stdout))
    missing = [o for o in CONTRACT_OPTIONS if o not in listed]
    assert not missing, f"--help does not list {missing}"
    for short in CONTRACT_SHORT:
        assert re.search(rf"(?m)^\s+{short}, --", r.stdout), f"--help does not list {short}"


SAMPLE = {"ADDR": "127.0.0.1:0", "MODEL": "threads", "N": "1", "BYTES": "1024", "S": "1",
          "NAME": "nobody", "FORMAT": "text", "LIST": "off", "POLICY": "normal"}


def test_every_option_in_help_is_accepted_by_the_parser(run_echod):
    # --help and the parser come from one table: whatever help shows parses.
    out = run_echod("--help").stdout
    opts = re.findall(r"(?m)^\s+(?:-\w, )?(--[a-z][a-z-]*)(?: ([A-Z]+))?", out)
    assert len(opts) >= len(CONTRACT_OPTIONS)
    for name, arg in opts:
        if name in ("--help", "--version"):
            continue
        args = [name] + ([SAMPLE[arg]] if arg else []) + ["--help"]
        r = run_echod(*args)
        assert r.returncode == 0, f"{args}: {r.stderr}"
        assert r.stdout.startswith("usage: echod"), args


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_one_line_and_exits_0(run_echod, flag):
    r = run_echod(flag)
    assert r.returncode == 0
    assert re.fullmatch(r"echod \d+\.\d+\S*\n", r.stdout), r.stdout
    assert r.stderr == ""


def _assert_start_failure(r, addr, reason):
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert addr in lines[0] and reason in lines[0], lines[0]
    assert lines[0].startswith("echod: ")


def test_address_in_use_exits_1_naming_address_and_reason(run_echod):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_echod("-l", f"127.0.0.1:{port}")
    _assert_start_failure(r, f"127.0.0.1:{port}", "Address already in use")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_address_in_use_exits_1_naming_address_and_reason(run_echod):
    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_echod("-l", f"[::1]:{port}")
    _assert_start_failure(r, f"[::1]:{port}", "Address already in use")


def test_second_listener_in_use_fails_the_whole_start(run_echod):
    # No half-started server: if any -l fails, echod exits 1 before serving.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_echod("-l", "127.0.0.1:0", "-l", f"127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"127.0.0.1:{port}" in r.stderr and "Address already in use" in r.stderr


def test_unknown_user_cannot_start_exits_1(run_echod):
    # echod(1): an unknown --user is a start failure (1), not a usage error (2).
    r = run_echod("-l", "127.0.0.1:0", "--user", "echod-test-no-such-user")
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == "echod: --user echod-test-no-such-user: no such user"


def _privileged_port_needs_root():
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return int(f.read()) > 7
    except OSError:
        return True


def test_permission_denied_exits_1_naming_address_and_reason():
    if not _privileged_port_needs_root():
        pytest.skip("net.ipv4.ip_unprivileged_port_start lets anyone bind port 7")
    cmd = [ECHOD, "-l", "127.0.0.1:7"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            pytest.skip("running as root and setpriv(1) is not installed")
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=-all", "--"] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    if r.returncode == 127 or "setpriv" in r.stderr:
        pytest.skip(f"cannot run as an unprivileged user here: {r.stderr.strip()}")
    _assert_start_failure(r, "127.0.0.1:7", "Permission denied")
