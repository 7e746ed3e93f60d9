"""Hostile or broken clients: each costs bounded memory and never disturbs
the others.  Every test runs on every model that serves clients at once.

The uring model's receive buffers come from a ring shared by a worker's
connections; ECHOD_URING_BUFS (test-only) makes that ring short, so a client
that pinned ring buffers would starve everyone else at once.  The other
models ignore it."""

import array
import fcntl
import os
import socket
import termios
import threading
import time

import pytest

from conftest import (CONCURRENT_MODELS, assert_echo, echo_stream, fill_until_blocked,
                      proc_status)

HOSTILE = 8


def model_args(model):
    # One worker: every hostile client shares the newcomer's loop (and ring).
    return ["-m", model] + (["-w", "1"] if model in ("epoll", "uring") else [])


def unread_bytes(sock):
    """How many echoed bytes wait, unread, in sock's receive queue."""
    n = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, n)
    return n[0]


def wait_echo_stalls(sock, stall=0.5, timeout=30.0):
    """Waits until the server's echo stops arriving on sock (which nobody
    reads): its receive queue has not grown for stall seconds.  Returns the
    bytes queued.  A measurement window, like fill_until_blocked's."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = unread_bytes(sock)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= stall:
            return n
        time.sleep(0.05)
    raise AssertionError(f"the echo kept arriving for {timeout} s")


def wmem_max():
    with open("/proc/sys/net/ipv4/tcp_wmem") as f:
        return int(f.read().split()[2])


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_clients_that_send_but_never_read_do_not_starve_a_newcomer(echod, monkeypatch, model):
    monkeypatch.setenv("ECHOD_URING_BUFS", "16")
    srv = echod(*model_args(model))
    with srv.connect() as s:
        assert_echo(s, os.urandom(64 * 1024), timeout=10)  # warm up the buffers
    rss_before = proc_status(srv.proc.pid, "VmRSS")
    socks = [srv.connect() for _ in range(HOSTILE)]
    try:
        accepted = [0] * HOSTILE

        def push(i):
            accepted[i] = fill_until_blocked(socks[i], 64 << 20, stall=1.0, timeout=60)

        pushers = [threading.Thread(target=push, args=(i,), daemon=True) for i in range(HOSTILE)]
        for t in pushers:
            t.start()
        for t in pushers:
            t.join(90)
        assert not any(t.is_alive() for t in pushers)
        # TCP flow control pushed back: the server stopped reading them.
        assert all(n < 32 << 20 for n in accepted), accepted
        with srv.connect() as fresh:
            assert_echo(fresh, b"still served?\n", timeout=2)
            payload = os.urandom(1 << 20)
            assert echo_stream(fresh, payload, timeout=10, shut_wr=False) == payload
        growth_kib = proc_status(srv.proc.pid, "VmRSS") - rss_before
        assert growth_kib < 16 * 1024, f"server RSS grew by {growth_kib} KiB"
        assert srv.proc.poll() is None
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_clients_that_stop_sending_and_never_read_do_not_starve_a_newcomer(
        echod, monkeypatch, model):
    # Each client sends more than the server can echo into the sockets, but
    # less than --buffer, then stops: the server keeps reading (no
    # backpressure) while its echo is stuck.  A send stuck on a ring buffer
    # must give the buffer back all the same.
    limit = 16 << 20
    size = wmem_max() + (4 << 20)
    if size > limit - (1 << 20):
        pytest.skip(f"net.ipv4.tcp_wmem allows {wmem_max()} bytes of send buffer")
    monkeypatch.setenv("ECHOD_URING_BUFS", "2")
    srv = echod(*model_args(model), "--buffer", str(limit))
    fresh = srv.connect()
    socks = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            s.settimeout(30)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(b"x" * size)
        for s in socks:
            assert wait_echo_stalls(s) < size
        assert_echo(fresh, b"still served?\n", timeout=2)
        assert srv.proc.poll() is None
    finally:
        fresh.close()
        for s in socks:
            s.close()
