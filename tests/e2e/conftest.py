"""Fixtures for the end-to-end tests: start the real binaries on port 0.

Every server is started on 127.0.0.1 port 0 (or whatever the test asks for),
and the fixture waits, with a deadline, for the "echod: listening on ..."
lines to learn the real port.  Every process a test starts is killed in
teardown, whatever happened.

Environment:
  ECHOD_BIN, ECHOC_BIN  the binaries under test (default build/echod, build/echoc)
  ECHOD_MODELS          space-separated models to run the per-model tests on
                        (default "iterative threads epoll uring"; uring is skipped
                        with the server's own reason where it cannot run)
"""

import os
import re
import select
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ECHOD = os.environ.get("ECHOD_BIN", os.path.join(ROOT, "build", "echod"))
ECHOC = os.environ.get("ECHOC_BIN", os.path.join(ROOT, "build", "echoc"))
MODELS = os.environ.get("ECHOD_MODELS", "iterative threads epoll uring").split()
# Models that serve many connections at once (everything but iterative).
CONCURRENT_MODELS = [m for m in MODELS if m != "iterative"]

LISTEN_RE = re.compile(r"^echod: listening on (tcp|udp|unix) (.+)$")
START_TIMEOUT = 10.0


class Server:
    """A running echod: its process, its listening addresses and its stderr."""

    def __init__(self, args):
        self.args = [ECHOD] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        self.listening = []  # (kind, address) in the order printed
        self._buf = b""

    def read_stderr_line(self, timeout):
        """Returns the next stderr line (without newline), or None on timeout/EOF."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                if not self._buf:
                    return None
                self._buf += b"\n"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        text = line.decode(errors="replace")
        self.stderr_lines.append(text)
        return text

    def wait_for_line(self, pattern, timeout=START_TIMEOUT):
        """Reads stderr until a line matches the regex pattern; returns the match."""
        deadline = time.monotonic() + timeout
        for line in self.stderr_lines:
            m = re.search(pattern, line)
            if m:
                return m
        while True:
            line = self.read_stderr_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    f"no line matching {pattern!r} from {self.args}; stderr so far: "
                    f"{self.stderr_lines}")
            m = re.search(pattern, line)
            if m:
                return m

    def wait_listening(self, count):
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.listening) < count:
            line = self.read_stderr_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"echod did not start: {self.args}: {self.stderr_lines}"
                                     f" exit={self.proc.poll()}")
            m = LISTEN_RE.match(line)
            if m:
                self.listening.append((m.group(1), m.group(2)))

    @property
    def port(self):
        """The port of the first TCP listener."""
        for kind, addr in self.listening:
            if kind in ("tcp", "udp"):
                return int(addr.rsplit(":", 1)[1])
        raise AssertionError("no tcp listener")

    @property
    def target(self):
        """HOST:PORT of the first TCP listener, for echoc."""
        for kind, addr in self.listening:
            if kind == "tcp":
                return addr
        raise AssertionError("no tcp listener")

    def connect(self, timeout=5.0):
        """A blocking TCP socket connected to the first listener."""
        host, port = self.target.rsplit(":", 1)
        host = host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((host, int(port)))
        return s

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=10.0):
        """Waits for the process to exit; returns its status; drains stderr."""
        code = self.proc.wait(timeout=timeout)
        while self.read_stderr_line(0.5) is not None:
            pass
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def echod():
    """Factory: echod(*args, listeners=1) starts echod and waits until it listens.

    Without -l in args, "-l 127.0.0.1:0" is added.  The server is killed at
    teardown.
    """
    started = []

    def start(*args, listeners=None):
        args = list(args)
        if "-l" not in args and "--listen" not in args and "--inetd" not in args:
            args = ["-l", "127.0.0.1:0"] + args
        if listeners is None:
            listeners = max(1, args.count("-l") + args.count("--listen"))
        srv = Server(args)
        started.append(srv)
        srv.wait_listening(listeners)
        return srv

    yield start
    for srv in started:
        srv.kill()


@pytest.fixture
def run_echod():
    """Runs echod expecting it to exit by itself (usage errors): returns CompletedProcess."""
    def run(*args, timeout=10):
        return subprocess.run([ECHOD] + list(args), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    return run


@pytest.fixture
def run_echoc():
    """Runs echoc to completion: run_echoc(*args, input=bytes) -> CompletedProcess (bytes)."""
    def run(*args, input=None, timeout=30):
        return subprocess.run([ECHOC] + list(args), capture_output=True, input=input,
                              timeout=timeout)
    return run


def recv_exactly(sock, n, timeout=5.0):
    """Receives exactly n bytes or fails the test (EOF or timeout)."""
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"EOF after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_until_eof(sock, timeout=5.0, limit=1 << 30):
    """Receives until EOF; raises on timeout or reset."""
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("more data than the limit")


def open_fds(pid):
    """The number of open descriptors of a process."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(predicate, timeout=10.0, interval=0.02):
    """Polls predicate until true or the deadline; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


_uring_reason = []


def uring_unavailable():
    """None if echod can run the uring model here, else its one-line reason.

    Asks the binary itself (its probe runs before it binds), once per session.
    """
    if not _uring_reason:
        srv = Server(["-m", "uring", "-q", "-l", "127.0.0.1:0"])
        try:
            line = srv.read_stderr_line(START_TIMEOUT)  # "listening on" or the reason
        finally:
            srv.kill()
        if line is None:
            line = "echod -m uring printed nothing within the start timeout"
        _uring_reason.append(None if "listening on" in line else line.strip())
    return _uring_reason[0]


def pytest_collection_modifyitems(config, items):
    """Skips every test parametrized with the uring model when it cannot run here."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "uring" in params.values():
            why = uring_unavailable()
            if why:
                item.add_marker(pytest.mark.skip(reason=f"uring unavailable: {why}"))
