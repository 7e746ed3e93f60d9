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

    def __init__(self, args, **popen_kwargs):
        self.args = [ECHOD] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     **popen_kwargs)
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
        return connect_to(self.target, timeout)

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
    teardown.  Other keyword arguments go to subprocess.Popen (preexec_fn=...).
    """
    started = []

    def start(*args, listeners=None, **popen_kwargs):
        args = list(args)
        if "-l" not in args and "--listen" not in args and "--inetd" not in args:
            args = ["-l", "127.0.0.1:0"] + args
        if listeners is None:
            listeners = max(1, args.count("-l") + args.count("--listen"))
        srv = Server(args, **popen_kwargs)
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


# ---------------------------------------------------------------------------
# Helpers for the behaviour tests (test_stream, test_once, test_limits, ...).

# Every test is bounded in time: pytest-timeout when it is installed (its
# --timeout wins), else a SIGALRM in the main thread.  E2E_TEST_TIMEOUT=0
# turns the fallback off.
E2E_TEST_TIMEOUT = float(os.environ.get("E2E_TEST_TIMEOUT", "150"))


class TestTimeout(Exception):
    """A test ran past E2E_TEST_TIMEOUT."""


@pytest.fixture(autouse=True)
def _bounded_test_time(request):
    cfg = request.config
    if E2E_TEST_TIMEOUT <= 0 or (cfg.pluginmanager.hasplugin("timeout") and
                                 (cfg.getoption("timeout", None) or cfg.getini("timeout"))):
        yield
        return

    def expire(signum, frame):
        raise TestTimeout(f"test ran longer than {E2E_TEST_TIMEOUT} s (E2E_TEST_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, E2E_TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def has_ipv6_loopback():
    """True when ::1 can be bound here."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def connect_to(addr, timeout=5.0):
    """A blocking socket connected to a listening address as echod prints it:
    "127.0.0.1:P", "[::1]:P" or a unix socket path."""
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    host, port = addr.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, int(port)))
    return s


def assert_echo(sock, data=b"ping\n", timeout=5.0):
    """Sends data and asserts the same bytes come back within timeout."""
    sock.settimeout(timeout)
    sock.sendall(data)
    got = recv_exactly(sock, len(data), timeout=timeout)
    assert got == data


def assert_silent(sock, window):
    """Asserts that nothing (neither data nor EOF) arrives on sock for window seconds.

    This is a measurement window, not synchronisation: the test asserts that
    an event does NOT happen, which can only be observed over some time.
    """
    ready, _, _ = select.select([sock], [], [], window)
    if ready:
        try:
            data = sock.recv(65536, socket.MSG_PEEK)
        except OSError as e:
            raise AssertionError(f"expected silence for {window} s, got {e!r}")
        raise AssertionError(f"expected silence for {window} s, got {data[:40]!r}"
                             f"{' (EOF)' if not data else ''}")


def echo_stream(sock, payload, timeout=60.0, shut_wr=True):
    """Sends payload while reading the echo concurrently (full duplex, one
    thread, non-blocking); then, with shut_wr, shuts the write side and
    expects EOF right after the echo.  Returns the bytes received."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    view = memoryview(payload)
    sent, out, eof = 0, bytearray(), False
    try:
        while not eof and (len(out) < len(payload) or shut_wr):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"echo_stream timed out: sent {sent}, received "
                                     f"{len(out)} of {len(payload)} bytes")
            want_w = [sock] if sent < len(payload) else []
            r, w, _ = select.select([sock], want_w, [], left)
            if w:
                sent += sock.send(view[sent:sent + 262144])
                if sent == len(payload) and shut_wr:
                    sock.shutdown(socket.SHUT_WR)
            if r:
                chunk = sock.recv(262144)
                if not chunk:
                    eof = True
                out += chunk
    finally:
        sock.setblocking(True)
    if shut_wr and sent == len(payload) and len(out) < len(payload):
        raise AssertionError(f"EOF after {len(out)} of {len(payload)} echoed bytes")
    return bytes(out)


def proc_status(pid, field):
    """A field of /proc/PID/status as an integer (VmRSS in KiB, Threads ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def cpu_seconds(pid):
    """User plus system CPU time a process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def set_linger_reset(sock):
    """Makes close() send a RST instead of a FIN (SO_LINGER on, 0 seconds)."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def fill_until_blocked(sock, limit, stall=1.0, timeout=30.0, chunk=65536):
    """Sends on a non-blocking socket until limit bytes were accepted, or no
    byte was accepted for stall seconds (flow control pushed back), or
    timeout.  Returns the number of bytes the kernel accepted."""
    sock.setblocking(False)
    data = b"x" * chunk
    accepted = 0
    deadline = time.monotonic() + timeout
    last_progress = time.monotonic()
    try:
        while accepted < limit and time.monotonic() < deadline:
            try:
                accepted += sock.send(data)
                last_progress = time.monotonic()
                continue
            except BlockingIOError:
                pass
            if time.monotonic() - last_progress >= stall:
                break
            select.select([], [sock], [], 0.05)
    finally:
        sock.setblocking(True)
    return accepted


_uring_reason = []

# What echod -m uring says when the binary has no uring engine at all.
NO_LIBURING = "built without liburing"


def uring_unavailable():
    """None if echod can run the uring model here, else its one-line reason.

    Asks the binary itself (its probe runs before it binds), once per session:
    the build may lack liburing ("built without liburing"), or the kernel or a
    seccomp filter may refuse io_uring.
    """
    if not _uring_reason:
        srv = Server(["-m", "uring", "-q", "-l", "127.0.0.1:0"])
        try:
            line = srv.read_stderr_line(START_TIMEOUT)  # "listening on" or the reason
        finally:
            srv.kill()
        if line is None:
            line = "echod -m uring printed nothing within the start timeout"
        line = line.strip()
        _uring_reason.append(None if "listening on" in line else
                             line.removeprefix("echod: --model uring: "))
    return _uring_reason[0]


def built_without_liburing():
    """True when the echod under test has no uring engine compiled in."""
    return NO_LIBURING in (uring_unavailable() or "")


def skip_without_liburing():
    """Skips a test of the uring engine's own code when the binary lacks it."""
    if built_without_liburing():
        pytest.skip(f"echod {NO_LIBURING}")


def best_concurrent_model():
    """The last of CONCURRENT_MODELS (the most capable one asked for) that
    can run here; skips the test when none can."""
    usable = [m for m in CONCURRENT_MODELS if m != "uring" or not uring_unavailable()]
    if not usable:
        pytest.skip(f"no concurrent model among {MODELS} can run here "
                    f"(uring unavailable: {uring_unavailable()})")
    return usable[-1]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "no_threads: no process the test starts ever runs a second thread (echod exiting "
        "on its options or at start-up before its first thread; echoc outside bench; "
        "no binary of ours at all), so the ThreadSanitizer run of make check leaves it out")


def pytest_collection_modifyitems(config, items):
    """Skips every test parametrized with the uring model when it cannot run here."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "uring" in params.values():
            why = uring_unavailable()
            if why:
                item.add_marker(pytest.mark.skip(reason=f"uring unavailable: {why}"))


# ---------------------------------------------------------------------------
# --metrics: where echod serves its Prometheus text, and scraping it
# (test_metrics, test_haproxy).

METRICS_RE = r"^echod: metrics on http://(\S+)/metrics$"


def start_with_metrics(echod, *args):
    """echod with --metrics on a free loopback port; returns (server, "HOST:PORT")."""
    srv = echod("--metrics", "127.0.0.1:0", *args)
    return srv, srv.wait_for_line(METRICS_RE).group(1)


def http(addr, request, timeout=5.0):
    """Sends raw request bytes; returns (status, headers dict, body) from the reply."""
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request)
        raw = recv_until_eof(s, timeout=timeout)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def scrape(addr):
    """GET /metrics: the body as text, after checking the status and type."""
    status, headers, body = http(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["content-length"]) == len(body)
    return body.decode()


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def scraped(addr):
    """GET /metrics as {sample: value} (see samples)."""
    return samples(scrape(addr))
