"""Several echod processes on one TCP port, as docs/scaling.md describes.

echod does not set SO_REUSEPORT on the sockets it binds, but it serves the
sockets systemd passes (LISTEN_FDS), and systemd sets SO_REUSEPORT on them
with ReusePort=yes.  No systemd here: this test does what such socket units
would, binding two SO_REUSEPORT sockets to one port and handing one to each
echod as descriptor 3 with LISTEN_FDS=1 and LISTEN_PID set to echod's pid.
Checked: both serve, the kernel spreads connections over them, and once one
has SIGTERM the other takes every new connection.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/contrib
"""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ECHOD = os.environ.get("ECHOD_BIN", os.path.join(ROOT, "build", "echod"))
WAIT = 5.0
CONNECTIONS = 20

# Runs in the child: descriptor FD becomes 3, then the process becomes echod,
# keeping its pid, so LISTEN_PID names echod itself.
EXEC_WITH_SOCKET = """
import os, sys
fd, argv = int(sys.argv[1]), sys.argv[2:]
os.dup2(fd, 3)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
os.execv(argv[0], argv)
"""


class Instance:
    def __init__(self, sock):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", EXEC_WITH_SOCKET, str(sock.fileno()),
             ECHOD, "-v", "-m", "epoll", "-w", "1", "--grace", "10",
             "--metrics", "127.0.0.1:0"],
            pass_fds=(sock.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.log = ""

    def read_log(self, until=None, timeout=WAIT):
        """Reads stderr until the regex until matches (or for timeout seconds
        when until is None, or until EOF)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (until and re.search(until, self.log)):
            ready, _, _ = select.select([self.proc.stderr], [], [], 0.05)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                self.log += chunk.decode(errors="replace")
        return self.log

    def connections(self):
        """Connections this echod accepted so far: its own counter, from --metrics."""
        m = re.search(r"echod: metrics on (http://\S+)", self.log)
        assert m, self.log
        with urllib.request.urlopen(m.group(1), timeout=WAIT) as r:
            text = r.read().decode()
        return int(float(re.search(r"^echod_connections_accepted_total (\S+)$", text, re.M).group(1)))

    def wait_connections(self, n, timeout=WAIT):
        """Reads the log until it shows n connections (or timeout); the count."""
        deadline = time.monotonic() + timeout
        while self.connections() < n and time.monotonic() < deadline:
            self.read_log(timeout=0.05)
        return self.connections()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stderr.close()


def reuseport_listeners(n):
    """n listening sockets on one loopback port, each with SO_REUSEPORT."""
    socks, port = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.listen(128)
        port = s.getsockname()[1]
        socks.append(s)
    return socks, port


def echo_once(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
        c.sendall(payload)
        c.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := c.recv(65536):
            got += chunk
    return got


@pytest.fixture
def pair():
    out = subprocess.run([ECHOD, "--help"], capture_output=True, text=True, timeout=10)
    if "--inetd" not in out.stdout + out.stderr:
        pytest.skip("this echod predates socket activation (LISTEN_FDS)")
    # The test keeps its own descriptors of the two sockets: the same sockets
    # as echod's, through which it can see when one stops listening.
    socks, port = reuseport_listeners(2)
    instances = []
    try:
        for s in socks:
            instances.append(Instance(s))
        for i in instances:
            i.read_log(until=r"echod: metrics on ")
            assert f"listening on tcp 127.0.0.1:{port}" in i.log, i.log
        yield port, instances, socks
    finally:
        for s in socks:
            s.close()
        for i in instances:
            i.stop()


def test_two_processes_share_one_port(pair):
    port, (a, b), _ = pair
    held = [socket.create_connection(("127.0.0.1", port), timeout=WAIT) for _ in range(CONNECTIONS)]
    try:
        for n, c in enumerate(held):
            c.sendall(b"%d\n" % n)
            assert c.recv(64) == b"%d\n" % n
        deadline = time.monotonic() + WAIT
        while a.connections() + b.connections() < CONNECTIONS and time.monotonic() < deadline:
            a.read_log(timeout=0.05)
            b.read_log(timeout=0.05)
        # The kernel hashes each connection to one socket of the group: all
        # 20 on one side would be a one-in-half-a-million chance.
        assert a.connections() + b.connections() == CONNECTIONS, a.log + b.log
        assert a.connections() > 0 and b.connections() > 0, (a.connections(), b.connections())
    finally:
        for c in held:
            c.close()


def listening(sock):
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 0


def connection_to(instance, port):
    """A connection that the kernel gave to instance (the others are closed)."""
    for _ in range(100):
        before = instance.connections()
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        c.sendall(b"which\n")
        assert c.recv(64) == b"which\n"
        # echod counts a connection when it accepts it, before its first echo.
        if instance.connections() > before:
            return c
        c.close()
    raise AssertionError("100 connections and none to this instance")


def test_while_one_drains_the_other_takes_every_new_connection(pair):
    port, (a, b), (a_sock, _) = pair
    with connection_to(a, port) as held:  # keeps a draining for its --grace
        assert listening(a_sock)
        a.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while listening(a_sock) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not listening(a_sock), "echod did not stop listening on SIGTERM"
        before = b.connections()
        for n in range(CONNECTIONS):
            assert echo_once(port, b"after %d\n" % n) == b"after %d\n" % n
        assert b.wait_connections(before + CONNECTIONS) == before + CONNECTIONS, b.log
        # a still serves the connection it had.
        held.sendall(b"still here\n")
        assert held.recv(64) == b"still here\n"
    assert a.proc.wait(timeout=WAIT) == 0
