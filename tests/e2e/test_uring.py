"""The io_uring model's own behaviour: its fallback when the kernel refuses
io_uring, and its short-buffer-ring path.  The shared behaviour (stream,
--once, half-close, backpressure, ...) is covered by the per-model tests,
which run on uring too."""

import os
import random
import selectors
import socket
import subprocess
import sys
import time

import pytest

from conftest import ECHOD, Server, recv_until_eof, skip_without_liburing, uring_unavailable

NO_URING = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                         "no_uring.py")]


class WrappedServer(Server):
    """An echod started through a wrapper program (the seccomp filter)."""

    def __init__(self, wrapper, args):
        self.args = list(wrapper) + [ECHOD] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        self.listening = []
        self._buf = b""


@pytest.fixture
def wrapped_echod():
    started = []

    def start(wrapper, *args):
        srv = WrappedServer(wrapper, ["-l", "127.0.0.1:0"] + list(args))
        started.append(srv)
        srv.wait_listening(1)
        return srv

    yield start
    for srv in started:
        srv.kill()


def needs_uring():
    why = uring_unavailable()
    if why:
        pytest.skip(f"uring unavailable: {why}")


@pytest.mark.parametrize("err", ["EPERM", "ENOSYS"])
def test_auto_falls_back_to_epoll_with_one_line_when_io_uring_is_blocked(wrapped_echod, err):
    srv = wrapped_echod(NO_URING + ["--errno", err], "-w", "2")
    srv.wait_for_line(r"^echod: engine ")
    assert srv.stderr_lines[-1] == "echod: engine epoll, 2 workers"
    about_uring = [line for line in srv.stderr_lines if "uring" in line]
    assert len(about_uring) == 1, srv.stderr_lines
    assert about_uring[0].startswith("echod: uring unavailable: ")
    assert about_uring[0].endswith("; using epoll")
    with srv.connect() as s:
        s.sendall(b"still served\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == b"still served\n"


@pytest.mark.parametrize("err", ["EPERM", "ENOSYS"])
def test_model_uring_exits_1_with_one_line_when_io_uring_is_blocked(err):
    skip_without_liburing()
    proc = subprocess.run(NO_URING + ["--errno", err, ECHOD, "-m", "uring", "-l", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("echod: --model uring: io_uring"), lines
    assert os.strerror(getattr(__import__("errno"), err)) in lines[0]


def test_auto_falls_back_to_epoll_when_the_kernel_lacks_multishot_receive(wrapped_echod):
    needs_uring()
    srv = wrapped_echod(NO_URING + ["--old-kernel"], "-w", "1")
    srv.wait_for_line(r"^echod: engine ")
    assert srv.stderr_lines[-1] == "echod: engine epoll, 1 worker"
    about_uring = [line for line in srv.stderr_lines if "uring" in line]
    assert len(about_uring) == 1, srv.stderr_lines
    assert "Linux 6.0" in about_uring[0], about_uring
    with srv.connect() as s:
        s.sendall(b"still served\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == b"still served\n"


def test_model_uring_exits_1_when_the_kernel_lacks_multishot_receive():
    needs_uring()
    proc = subprocess.run(NO_URING + ["--old-kernel", ECHOD, "-m", "uring", "-l", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == ("echod: --model uring: io_uring: kernel lacks multishot receive "
                        "(needs Linux 6.0)"), lines


def test_engine_line_names_uring_and_its_workers(echod):
    needs_uring()
    srv = echod("-m", "uring", "-w", "2")
    srv.wait_for_line(r"^echod: engine ")
    assert srv.stderr_lines[-1] == "echod: engine uring, 2 workers"


def echo_many(srv, nconns, size, deadline_s):
    """Streams size random bytes on each of nconns connections at once, in
    random-sized writes, reading concurrently; then half-closes each and
    expects exactly its bytes back, then EOF."""
    rng = random.Random(862)
    sel = selectors.DefaultSelector()
    state = {}
    for _ in range(nconns):
        s = srv.connect()
        s.setblocking(False)
        payload = rng.randbytes(size)
        state[s] = {"out": payload, "sent": 0, "got": bytearray(), "eof": False}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = time.monotonic() + deadline_s
    try:
        while any(not st["eof"] for st in state.values()):
            assert time.monotonic() < deadline, "echo did not finish in time"
            for key, ev in sel.select(timeout=1.0):
                s, st = key.fileobj, state[key.fileobj]
                if ev & selectors.EVENT_WRITE and st["sent"] < size:
                    n = rng.randint(1, 4096)
                    st["sent"] += s.send(st["out"][st["sent"]:st["sent"] + n])
                    if st["sent"] == size:
                        s.shutdown(socket.SHUT_WR)
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    chunk = s.recv(65536)
                    if not chunk:
                        st["eof"] = True
                        sel.unregister(s)
                    st["got"] += chunk
        for st in state.values():
            assert len(st["got"]) == size
            assert bytes(st["got"]) == st["out"]
    finally:
        for s in state:
            s.close()


def test_short_buffer_ring_echoes_every_byte_on_50_connections(echod, monkeypatch):
    """ECHOD_URING_BUFS (test-only) leaves 4 receive buffers per worker for 50
    busy connections: reads must wait for buffers, never lose or reorder."""
    needs_uring()
    monkeypatch.setenv("ECHOD_URING_BUFS", "4")
    srv = echod("-m", "uring", "-w", "2", "-v")
    echo_many(srv, nconns=50, size=1024 * 1024, deadline_s=60)
    srv.wait_for_line(r"buffer ring ran dry")
    assert srv.proc.poll() is None


def test_short_buffer_ring_once_mode_echoes_each_first_chunk(echod, monkeypatch):
    needs_uring()
    monkeypatch.setenv("ECHOD_URING_BUFS", "2")
    srv = echod("-m", "uring", "-w", "1", "--once")
    socks = [srv.connect() for _ in range(30)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"chunk %d\n" % i)
        for i, s in enumerate(socks):
            assert recv_until_eof(s) == b"chunk %d\n" % i
    finally:
        for s in socks:
            s.close()
