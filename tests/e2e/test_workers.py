"""The multi-worker engines (epoll, uring) with more workers than CPUs.

The machines that run the suite have 2 CPUs, so `--workers` defaults to 2 and
no other test runs more.  Start-up, shutdown and the shared --max-conns count
are where workers meet, and races there only show with more threads than
CPUs: these tests run every multi-worker engine with 3, 4 and 8 workers.

A start-up race loses a start now and then, so the first test starts the
server many times (STARTS), and every start must serve and stop: a race
that loses one start in two passes 20 starts once in a million runs.
ECHOD_WORKER_STARTS changes it (a sanitizer build starts slowly).
"""

import os
import socket
import time

import pytest

from conftest import MODELS, assert_silent, open_fds, recv_exactly, recv_until_eof

WORKER_MODELS = [m for m in ("epoll", "uring") if m in MODELS]
WORKER_COUNTS = [3, 4, 8]
STARTS = int(os.environ.get("ECHOD_WORKER_STARTS", "20"))
CLIENTS = 24          # more than any worker count: every worker gets some
ECHO_TIMEOUT = 5.0    # a server that serves answers in milliseconds
EXIT_TIMEOUT = 5.0    # SIGTERM with no connection open: out at once
GRACE = 0.3           # --grace: long enough to tell waiting from not waiting

params = pytest.mark.parametrize("model, workers", [
    (m, w) for m in WORKER_MODELS for w in WORKER_COUNTS])


def start(echod, model, workers, *args, **kwargs):
    srv = echod("-m", model, "-w", str(workers), *args, **kwargs)
    srv.wait_for_line(rf"^echod: engine {model}, {workers} workers$")
    return srv


def stop(srv):
    """SIGTERM, then a clean exit (status 0) within EXIT_TIMEOUT."""
    t0 = time.monotonic()
    srv.signal(15)
    code = srv.wait_exit(timeout=EXIT_TIMEOUT)
    assert code == 0, f"exit status {code}: {srv.stderr_lines}"
    assert time.monotonic() - t0 < EXIT_TIMEOUT


def serve_clients(srv, nclients, size):
    """nclients connect at once, each sends its own bytes; each gets exactly
    its own bytes back, then EOF after it shuts its write side."""
    socks = [srv.connect(timeout=ECHO_TIMEOUT) for _ in range(nclients)]
    try:
        payloads = [os.urandom(size) for _ in socks]
        for s, p in zip(socks, payloads):
            s.sendall(p)
            s.shutdown(socket.SHUT_WR)
        for i, (s, p) in enumerate(zip(socks, payloads)):
            got = recv_until_eof(s, timeout=ECHO_TIMEOUT, limit=size + 1)
            assert got == p, f"client {i}: {len(got)} bytes back of {size}"
    finally:
        for s in socks:
            s.close()


@params
def test_every_start_serves_and_stops(echod, model, workers):
    for n in range(STARTS):
        srv = start(echod, model, workers)
        try:
            serve_clients(srv, CLIENTS, 4096)
        except (AssertionError, OSError) as e:
            raise AssertionError(f"start {n + 1} of {STARTS} served nothing: {e!r}") from e
        stop(srv)


@params
def test_stop_during_startup_exits_cleanly(echod, model, workers):
    # SIGTERM as soon as the engine line is out, before any client: every
    # worker must see it, whether or not it has started serving yet.
    for _ in range(max(1, STARTS // 4)):
        stop(start(echod, model, workers))


@params
def test_bulk_echo_on_every_worker(echod, model, workers):
    srv = start(echod, model, workers)
    serve_clients(srv, 2 * workers, 256 * 1024)
    stop(srv)


@params
def test_max_conns_is_shared_by_all_workers(echod, model, workers):
    srv = start(echod, model, workers, "--max-conns", "2")
    held = [srv.connect() for _ in range(2)]
    waiting = []
    try:
        for i, s in enumerate(held):
            s.sendall(b"held %d\n" % i)
            assert recv_exactly(s, 7) == b"held %d\n" % i
        base = open_fds(srv.proc.pid)
        # However many workers, no third connection is served, or accepted ...
        waiting = [srv.connect() for _ in range(4 * workers)]
        for i, s in enumerate(waiting):
            s.sendall(b"waiting %d\n" % i)
        for s in waiting[:workers]:
            assert_silent(s, 0.2)
        assert open_fds(srv.proc.pid) == base
        # ... until the two close: then every waiting client is served, two at a time.
        for s in held:
            s.close()
        for i, s in enumerate(waiting):
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(waiting):
            assert recv_until_eof(s, timeout=ECHO_TIMEOUT) == b"waiting %d\n" % i
    finally:
        for s in held + waiting:
            s.close()
    stop(srv)


@params
def test_once_mode_serves_every_client(echod, model, workers):
    srv = start(echod, model, workers, "--once")
    socks = [srv.connect() for _ in range(CLIENTS)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"once %d\n" % i)
        for i, s in enumerate(socks):
            # The first chunk comes back, then the server shuts its side.
            assert recv_until_eof(s, timeout=ECHO_TIMEOUT) == b"once %d\n" % i
    finally:
        for s in socks:
            s.close()
    stop(srv)


@params
def test_udp_workers_echo_and_stop(echod, model, workers):
    srv = start(echod, model, workers, "--udp", "--udp-rate", "0", listeners=2)
    port = next(int(a.rsplit(":", 1)[1]) for kind, a in srv.listening if kind == "udp")
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(CLIENTS)]
    try:
        for i, c in enumerate(clients):
            c.bind(("127.0.0.1", 0))
            c.settimeout(ECHO_TIMEOUT)
            c.sendto(b"datagram %d" % i, ("127.0.0.1", port))
        for i, c in enumerate(clients):
            data, peer = c.recvfrom(100)
            assert data == b"datagram %d" % i and peer == ("127.0.0.1", port)
        # TCP beside it still works.
        serve_clients(srv, workers, 1024)
    finally:
        for c in clients:
            c.close()
    stop(srv)


@params
def test_stop_with_clients_open_finishes_within_grace(echod, model, workers):
    srv = start(echod, model, workers, "--grace", str(GRACE))
    socks = [srv.connect() for _ in range(CLIENTS)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"open %d\n" % i)
            assert recv_exactly(s, len(b"open %d\n" % i), timeout=ECHO_TIMEOUT)
        t0 = time.monotonic()
        srv.signal(15)
        # The idle clients are closed when the grace ends; echod exits 0.
        assert srv.wait_exit(timeout=GRACE + EXIT_TIMEOUT) == 0
        assert time.monotonic() - t0 < GRACE + EXIT_TIMEOUT
        for s in socks:
            assert recv_until_eof(s, timeout=ECHO_TIMEOUT) == b""
    finally:
        for s in socks:
            s.close()

