"""echod --inetd: the connection, or a UDP socket, on standard input.

Over a socketpair (as inetd and systemd Accept=yes hand it over), over a real
UDP socket (inetd's "wait" mode), and under systemd-socket-activate --inetd
--accept, which forks one echod per connection.
"""

import os
import pty
import select
import signal
import socket
import subprocess
import time

import pytest

from activate import activate, needs_socket_activate  # noqa: F401 (fixture)
from conftest import ECHOD, echo_stream, recv_until_eof


def start_inetd(sock, *args, stderr=subprocess.PIPE):
    """echod --inetd with sock as standard input and output; the caller's copy stays open."""
    return subprocess.Popen([ECHOD, "--inetd", *args], stdin=sock, stdout=sock, stderr=stderr)


@pytest.fixture
def inetd():
    """Factory: inetd(*args, stderr=PIPE) -> (client socket, process); killed at teardown."""
    procs = []

    def start(*args, stderr=subprocess.PIPE):
        ours, theirs = socket.socketpair()
        proc = start_inetd(theirs, *args, stderr=theirs if stderr == "socket" else stderr)
        theirs.close()
        procs.append((proc, ours))
        return ours, proc

    yield start
    for proc, ours in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        ours.close()
        if proc.stderr:
            proc.stderr.close()


def test_echoes_the_connection_and_exits_at_its_end(inetd):
    client, proc = inetd()
    payload = os.urandom(1 << 20)
    assert echo_stream(client, payload) == payload
    assert proc.wait(timeout=10) == 0


def test_log_lines_never_reach_the_socket(inetd):
    """Standard error is the socket too (inetd's habit): -v's lines must not join the echo."""
    client, proc = inetd("-v", stderr="socket")
    client.sendall(b"only this\n")
    client.shutdown(socket.SHUT_WR)
    assert recv_until_eof(client) == b"only this\n"
    assert proc.wait(timeout=10) == 0


def test_once_echoes_the_first_chunk_then_closes(inetd):
    client, proc = inetd("--once", "--buffer", "4")
    client.sendall(b"abcdefgh")
    assert recv_until_eof(client) == b"abcd"
    assert proc.wait(timeout=10) == 0


def test_idle_timeout_ends_a_silent_connection(inetd):
    client, proc = inetd("--idle-timeout", "0.3")
    start = time.monotonic()
    assert recv_until_eof(client, timeout=10) == b""
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - start >= 0.25


def test_sigterm_gives_the_connection_its_grace_then_exits(inetd):
    client, proc = inetd("--grace", "0.3")
    client.sendall(b"x")
    client.settimeout(5)
    assert client.recv(1) == b"x"
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert recv_until_eof(client, timeout=10) == b""
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - start >= 0.25
    assert b"SIGTERM" in proc.stderr.read()


def test_udp_socket_answered_until_idle():
    """inetd "wait" mode: the bound UDP socket is standard input."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    addr = server.getsockname()
    proc = subprocess.Popen([ECHOD, "--inetd", "--idle-timeout", "0.5"], stdin=server,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.close()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    try:
        for payload in (b"first", b"second datagram", os.urandom(60000)):
            client.sendto(payload, addr)
            data, src = client.recvfrom(65536)
            assert (data, src) == (payload, addr)
        last = time.monotonic()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - last >= 0.45
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
        client.close()


def test_udp_loop_guard_still_applies():
    """A datagram from a well-known service port (chargen, 19) is not answered."""
    low = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        low.bind(("127.0.0.1", 19))
    except OSError as e:
        low.close()
        pytest.skip(f"cannot bind 127.0.0.1:19 (needs root): {e}")
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    addr = server.getsockname()
    proc = subprocess.Popen([ECHOD, "--inetd", "--idle-timeout", "0.5"], stdin=server,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server.close()
    try:
        low.sendto(b"loop?", addr)
        assert proc.wait(timeout=10) == 0  # idle after the refusal
        low.setblocking(False)
        with pytest.raises(BlockingIOError):
            low.recv(100)
        assert b"loop guard" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()
        low.close()


@pytest.mark.parametrize("stdin,why", [
    ("devnull", "standard input is not a socket"),
    ("listening", "is a listening socket"),
])
def test_refuses_what_it_cannot_serve(stdin, why):
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        res = subprocess.run([ECHOD, "--inetd"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL if stdin == "devnull" else lsock)
    assert res.returncode == 1
    assert why in res.stderr
    assert res.stderr.count("\n") == 1


def test_not_a_socket_is_said_on_a_terminal():
    """Typed on a terminal, standard input and error are the same tty: the reason must show."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([ECHOD, "--inetd"], stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        assert proc.wait(timeout=10) == 1
        out = b""
        while select.select([master], [], [], 1)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            out += chunk
        assert b"standard input is not a socket" in out
    finally:
        os.close(master)


@pytest.mark.parametrize("args,option", [
    (["-l", "127.0.0.1:0"], "--listen"),
    (["--udp"], "--udp"),
    (["--workers", "2"], "--workers"),
    (["-m", "epoll"], "--model"),
    (["--max-conns", "3"], "--max-conns"),
])
def test_options_that_mean_nothing_with_inetd_are_usage_errors(run_echod, args, option):
    res = run_echod("--inetd", *args)
    assert res.returncode == 2
    assert f"cannot use {option} with --inetd" in res.stderr


@needs_socket_activate
def test_under_systemd_socket_activate_one_echod_per_connection(activate):
    run = activate(["--inetd", "--accept"], ["127.0.0.1:{port}"], ["--inetd", "-v"])
    port = run.port_asked
    first = socket.create_connection(("127.0.0.1", port), timeout=5)
    second = socket.create_connection(("127.0.0.1", port), timeout=5)
    with first, second:
        # Both served at once: each has its own process.
        payload = os.urandom(256 << 10)
        second.sendall(b"second\n")
        assert echo_stream(first, payload) == payload
        second.shutdown(socket.SHUT_WR)
        assert recv_until_eof(second) == b"second\n"
    spawned = set()
    while len(spawned) < 2:
        spawned.add(run.wait_for_line(r"^Spawned .* as PID (\d+)\.$").group(1))
        run.stderr_lines.clear()  # wait_for_line looks at old lines first
    exited = {}
    while len(exited) < 2:
        m = run.wait_for_line(r"^Child (\d+) died with code (\d+)$")
        exited[m.group(1)] = m.group(2)
        run.stderr_lines.clear()
    assert exited == {pid: "0" for pid in spawned}
