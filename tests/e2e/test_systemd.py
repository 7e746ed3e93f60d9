"""Socket activation (LISTEN_FDS), sd_notify, and the shipped systemd units.

systemd-socket-activate binds the sockets and execs echod on the first
connection or datagram, as systemd does for a socket unit with Accept=no.
The units in contrib/systemd are checked with systemd-analyze verify, offline
(no systemd needs to run here), and a unit broken on purpose must fail it.
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import uuid

import pytest

from activate import (SOCKET_ACTIVATE, activate, free_port, needs_socket_activate,  # noqa: F401
                      run_with_listen_fd, start_with_listen_fd)
from conftest import ECHOD, MODELS, ROOT, assert_echo, connect_to, echo_stream

UNITS_DIR = os.path.join(ROOT, "contrib", "systemd")
UNITS = ["echod.socket", "echod.service", "echod-inetd.socket", "echod-inetd@.service"]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@needs_socket_activate
@pytest.mark.parametrize("model", MODELS)
def test_tcp_socket_from_systemd(activate, model):
    run = activate([], ["127.0.0.1:{port}"], ["-m", model])
    target = f"127.0.0.1:{run.port_asked}"
    with connect_to(target) as s:  # the first connection makes the tool exec echod
        run.wait_listening(1)
        assert run.listening == [("tcp", target)]
        payload = os.urandom(256 << 10)
        assert echo_stream(s, payload) == payload
    run.signal(signal.SIGTERM)
    assert run.wait_exit() == 0


@needs_socket_activate
@pytest.mark.parametrize("model", MODELS)
def test_udp_socket_from_systemd(activate, model):
    """UDP alone: the engine runs with no stream listener at all."""
    run = activate(["--datagram"], ["127.0.0.1:{port}"], ["-m", model])
    addr = ("127.0.0.1", run.port_asked)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(10)
        c.sendto(b"first", addr)  # waits in the queue while the tool execs echod
        assert c.recvfrom(100) == (b"first", addr)
        run.wait_listening(1)
        assert run.listening == [("udp", f"127.0.0.1:{run.port_asked}")]
        c.sendto(b"second", addr)
        assert c.recvfrom(100) == (b"second", addr)
    run.signal(signal.SIGTERM)
    assert run.wait_exit() == 0


@needs_socket_activate
def test_unix_and_tcp_sockets_from_systemd_replace_listen(activate, tmp_path):
    """Two sockets at once; -l is ignored with a line; systemd's socket file is left alone."""
    path = str(tmp_path / "echod.sock")
    run = activate(["--fdname=tcp:local"], ["127.0.0.1:{port}", path],
                   ["-l", "127.0.0.1:0"])
    with connect_to(path) as s:
        run.wait_listening(2)
        assert run.listening == [("tcp", f"127.0.0.1:{run.port_asked}"), ("unix", path)]
        assert_echo(s, b"over unix\n")
    with connect_to(f"127.0.0.1:{run.port_asked}") as s:
        assert_echo(s, b"over tcp\n")
    assert any("--listen ignored" in line for line in run.stderr_lines)
    run.signal(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert os.path.exists(path), "echod removed a socket file systemd owns"


@needs_socket_activate
def test_udp_and_tcp_sockets_from_systemd_in_order(activate):
    """UDP on descriptor 3, TCP on 4, as one socket unit with both would pass them.

    systemd-socket-activate binds one type per run: an outer one binds UDP and
    execs an inner one (passing descriptor 3 on), which adds TCP.
    """
    for _ in range(5):
        tcp_port = free_port()
        run = activate(["--datagram"], ["127.0.0.1:{port}"],
                       [f"--listen=127.0.0.1:{tcp_port}", ECHOD], program=SOCKET_ACTIVATE)
        udp_addr = ("127.0.0.1", run.port_asked)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.settimeout(10)
        u.sendto(b"udp", udp_addr)  # starts the inner tool, and then echod
        line = run.wait_for_line(r"^Listening on 127\.0\.0\.1:\d+ as 4\.$|^Failed to open")
        if line.group(0).startswith("Failed"):  # the TCP port was taken meanwhile
            u.close()
            run.kill()
            continue
        with u:
            run.wait_listening(2)
            assert run.listening == [("udp", "127.0.0.1:%d" % udp_addr[1]),
                                     ("tcp", f"127.0.0.1:{tcp_port}")]
            assert u.recvfrom(100) == (b"udp", udp_addr)
            with connect_to(f"127.0.0.1:{tcp_port}") as s:
                assert_echo(s, b"tcp\n")
        run.signal(signal.SIGTERM)
        assert run.wait_exit() == 0
        return
    raise AssertionError("no free TCP port for the inner systemd-socket-activate")


def notify_socket(tmp_path, abstract):
    """A unix datagram socket to play systemd's part; returns (socket, NOTIFY_SOCKET value)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"echod-test-{uuid.uuid4().hex}"
        s.bind("\0" + name)
        return s, "@" + name
    path = str(tmp_path / "notify")
    s.bind(path)
    return s, path


def recv_state(sock, timeout=10):
    ready, _, _ = select.select([sock], [], [], timeout)
    assert ready, "no sd_notify message"
    return sock.recv(4096)


@needs_socket_activate
@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_after_listening_and_stopping_on_sigterm(activate, tmp_path, abstract):
    notify, value = notify_socket(tmp_path, abstract)
    with notify:
        # The tool passes on only the variables it is told to.
        run = activate([f"--setenv=NOTIFY_SOCKET={value}"], ["127.0.0.1:{port}"], [])
        with connect_to(f"127.0.0.1:{run.port_asked}") as s:
            assert recv_state(notify) == b"READY=1"
            # The listening line was written before READY=1: already in the pipe.
            assert select.select([run.proc.stderr], [], [], 0)[0]
            run.wait_listening(1)
            assert_echo(s)
            assert select.select([notify], [], [], 0)[0] == []  # nothing else meanwhile
            run.signal(signal.SIGTERM)
            assert recv_state(notify) == b"STOPPING=1"
        assert run.wait_exit() == 0


def test_connected_socket_is_refused():
    """Accept=yes passes connections: echod without --inetd says so and exits 1."""
    a, b = socket.socketpair()
    with a, b:
        res = run_with_listen_fd(b, ["-l", "127.0.0.1:0"], names="web")
    assert res.returncode == 1
    assert "LISTEN_FDS: descriptor 3 (web) is a connected stream socket" in res.stderr
    assert "--inetd" in res.stderr


def test_unix_datagram_socket_is_refused():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        res = run_with_listen_fd(b, [])
    assert res.returncode == 1
    assert "descriptor 3 is a unix datagram socket" in res.stderr


def test_listen_fds_for_another_process_are_ignored():
    """LISTEN_PID names someone else (a parent's leaked variables): bind -l as usual."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        srv = start_with_listen_fd(lsock, ["-l", "127.0.0.1:0"], listen_pid="1")
        try:
            srv.wait_listening(1)
            assert srv.listening[0][1] != "127.0.0.1:%d" % lsock.getsockname()[1]
            with srv.connect() as s:
                assert_echo(s)
        finally:
            srv.kill()


def test_listening_socket_passed_without_the_tool():
    """The protocol itself (fd 3, LISTEN_PID = echod's pid), without systemd-socket-activate."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        addr = "127.0.0.1:%d" % lsock.getsockname()[1]
        srv = start_with_listen_fd(lsock, [])
        try:
            srv.wait_listening(1)
            assert srv.listening == [("tcp", addr)]
            with connect_to(addr) as s:
                assert_echo(s)
        finally:
            srv.kill()


# ---------------------------------------------------------------------------
# systemd-analyze verify, offline: the units and the echod they start are put
# in a scratch root (--root), where ExecStart= must name an executable;
# --recursive-errors=no leaves the units they point at (sockets.target ...),
# which the scratch root lacks, unverified.  A warning is a failure: this
# systemd exits 0 for some (an unknown directive, say) and only prints them.

needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze not installed (Debian package systemd)")


def verify_units(tmp_path, edit=None):
    """Verifies the shipped units in a scratch root; returns (exit status, output)."""
    root = tmp_path / "root"
    units = root / "etc" / "systemd" / "system"
    bindir = root / "usr" / "local" / "bin"
    units.mkdir(parents=True)
    bindir.mkdir(parents=True)
    shutil.copy(ECHOD, bindir / "echod")
    for name in UNITS:
        shutil.copy(os.path.join(UNITS_DIR, name), units / name)
    if edit:
        edit(units)
    res = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", "--recursive-errors=no",
                          f"--root={root}"] + [str(units / name) for name in UNITS],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice", LC_ALL="C"))
    return res.returncode, (res.stdout + res.stderr).strip()


@needs_analyze
def test_shipped_units_verify(tmp_path):
    assert verify_units(tmp_path) == (0, "")


def add_to_service(line):
    def edit(units):
        path = units / "echod.service"
        path.write_text(path.read_text().replace("[Service]\n", f"[Service]\n{line}\n", 1))
    return edit


@needs_analyze
@pytest.mark.parametrize("line,complaint", [
    ("ProtectEverything=yes", "Unknown key"),  # a sandboxing directive this systemd lacks
    ("SystemCallFilter=no_such_call", "no_such_call"),
    ("RestrictAddressFamilies=AF_NOPE", "AF_NOPE"),
    ("MemoryMax=lots", "lots"),
])
def test_verify_fails_a_broken_unit(tmp_path, line, complaint):
    """The check above is real: each of these mistakes makes it fail."""
    status, output = verify_units(tmp_path, add_to_service(line))
    assert (status, output) != (0, "")
    assert complaint in output


@needs_analyze
def test_verify_fails_a_missing_executable(tmp_path):
    def edit(units):
        path = units / "echod.service"
        path.write_text(path.read_text().replace("/usr/local/bin/echod", "/usr/local/bin/nope"))
    status, output = verify_units(tmp_path, edit)
    assert status != 0
    assert "/usr/local/bin/nope" in output
