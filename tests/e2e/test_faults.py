"""Faults between client and echod, injected by tests/faultproxy.py.

Each test puts the fault proxy between a client and a real echod, on every
model: 1-byte slices, latency with jitter and a bandwidth cap must leave the
echo byte-exact, for one client and for several at once; a stall longer than --idle-timeout must end in a close by
echod within the timeout; a reset toward either side must end the client's
exchange cleanly (a prefix of the echo, then EOF or a reset, never a hang) and
leave echod serving others with every descriptor of the connection closed;
SIGTERM while a slow client still sends must end echod within --grace.
"""

import os
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import CONCURRENT_MODELS, MODELS, assert_echo, connect_to, echo_stream, open_fds, recv_exactly, wait_until

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from faultproxy import FaultProxy, Faults  # noqa: E402  (tests/faultproxy.py)

IDLE_TIMEOUT = 0.5
# How late echod may close an idle connection: its timer granularity plus a
# loaded 2-CPU machine's scheduling delays.
CLOSE_SLACK = 1.5


def model_args(model):
    # uring runs 2 workers: with 3 or more, its start-up can deadlock (a known
    # defect being fixed separately); epoll matches it.
    return ["-m", model] + (["-w", "2"] if model in ("epoll", "uring") else [])


def through(proxy, timeout=5.0):
    """A client socket connected to echod through the proxy."""
    return connect_to(f"127.0.0.1:{proxy.port}", timeout)


def exchange_until_end(sock, payload, timeout):
    """Sends payload (then SHUT_WR) while reading, until the connection ends.

    Returns (received bytes, "eof" or "reset").  A connection that neither
    ends nor finishes within timeout fails the test: that is a hang.
    """
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    view, sent, out = memoryview(payload), 0, bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"hang: sent {sent}, received {len(out)} bytes in {timeout} s")
        want_w = [sock] if sent < len(payload) else []
        r, w, _ = select.select([sock], want_w, [], left)
        try:
            if w:
                sent += sock.send(view[sent:sent + 65536])
                if sent == len(payload):
                    sock.shutdown(socket.SHUT_WR)
            if r:
                chunk = sock.recv(65536)
                if not chunk:
                    return bytes(out), "eof"
                out += chunk
        except (ConnectionResetError, BrokenPipeError):
            return bytes(out), "reset"
        except BlockingIOError:
            pass


def baseline_fds(srv):
    """echod's descriptors with no client: counted while one client is being
    served (so the engine has opened everything it keeps), minus that
    client's socket."""
    with srv.connect() as s:
        assert_echo(s)
        return open_fds(srv.proc.pid) - 1


def assert_serves_others_without_leak(srv, baseline_fds):
    """echod closed every descriptor of the faulty connection and still echoes."""
    pid = srv.proc.pid
    assert wait_until(lambda: open_fds(pid) == baseline_fds, timeout=5), \
        f"descriptors: {open_fds(pid)}, baseline {baseline_fds}"
    with srv.connect() as s:
        assert_echo(s, os.urandom(4096))
    assert srv.proc.poll() is None


# ---------------------------------------------------------------------------
# The echo stays byte-exact.

@pytest.mark.parametrize("model", MODELS)
def test_echo_is_byte_exact_through_one_byte_slices(echod, model):
    srv = echod(*model_args(model))
    payload = os.urandom(1500)
    one_byte = Faults(slice=1, slice_gap=0.0005)
    with FaultProxy(("127.0.0.1", srv.port), up=one_byte, down=Faults(slice=1)) as proxy:
        with through(proxy) as s:
            assert echo_stream(s, payload, timeout=20) == payload


@pytest.mark.parametrize("model", MODELS)
def test_echo_is_byte_exact_with_latency_and_jitter(echod, model):
    srv = echod(*model_args(model))
    jittery = Faults(latency=0.01, jitter=0.02, slice=1000)
    rng = random.Random(862)
    with FaultProxy(("127.0.0.1", srv.port), up=jittery, down=jittery) as proxy:
        with through(proxy) as s:
            for _ in range(8):  # ping-pong, sizes from 1 byte to 64 KiB
                assert_echo(s, os.urandom(rng.choice([1, 17, 1460, 4096, 65536])), timeout=10)
            bulk = os.urandom(256 * 1024)
            assert echo_stream(s, bulk, timeout=20) == bulk


@pytest.mark.parametrize("model", MODELS)
def test_echo_is_byte_exact_under_a_bandwidth_cap(echod, model):
    srv = echod(*model_args(model))
    rate, payload = 400_000, os.urandom(200_000)
    capped = Faults(rate=rate, slice=4096)
    with FaultProxy(("127.0.0.1", srv.port), up=capped, down=capped) as proxy:
        with through(proxy) as s:
            start = time.monotonic()
            assert echo_stream(s, payload, timeout=20) == payload
            elapsed = time.monotonic() - start
    # The cap was in force (else this test would prove nothing about it).
    assert elapsed >= 0.8 * len(payload) / rate


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_concurrent_clients_through_combined_faults_get_exact_echoes(echod, model):
    srv = echod(*model_args(model))
    baseline = baseline_fds(srv)
    faults = Faults(slice=7, latency=0.005, jitter=0.01, rate=1_000_000)
    payloads = [os.urandom(24 * 1024) for _ in range(6)]
    echoes, errors = [None] * len(payloads), []

    def client(i):
        try:
            with through(proxy) as s:
                echoes[i] = echo_stream(s, payloads[i], timeout=30)
        except (OSError, AssertionError) as e:
            errors.append(f"client {i}: {e!r}")

    with FaultProxy(("127.0.0.1", srv.port), up=faults, down=faults) as proxy:
        clients = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
        for t in clients:
            t.start()
        for t in clients:
            t.join(40)
        assert not any(t.is_alive() for t in clients), "a client hung"
    assert not errors
    assert echoes == payloads
    assert_serves_others_without_leak(srv, baseline)


# ---------------------------------------------------------------------------
# A stall longer than --idle-timeout: echod closes the connection in time.

@pytest.mark.parametrize("model", MODELS)
def test_stall_toward_echod_past_idle_timeout_is_closed_by_echod(echod, model):
    srv = echod("--idle-timeout", str(IDLE_TIMEOUT), *model_args(model))
    baseline = baseline_fds(srv)
    payload, stall_at = os.urandom(4000), 1000
    stall = Faults(stall_after=stall_at, stall_for=6.0)
    with FaultProxy(("127.0.0.1", srv.port), up=stall) as proxy:
        with through(proxy) as s:
            got, how = exchange_until_end(s, payload, timeout=IDLE_TIMEOUT + CLOSE_SLACK + 2)
        conn = proxy.conns[0]
        stalled = conn.first("stall_up")
        closed = conn.first("server_eof") or conn.first("server_reset")
        assert stalled is not None and closed is not None, conn.events
        assert closed - stalled <= IDLE_TIMEOUT + CLOSE_SLACK, conn.events
    # The echo of what reached echod, then the end: nothing lost, nothing hung.
    assert got == payload[:stall_at] and how == "eof"
    assert_serves_others_without_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_stall_toward_client_past_idle_timeout_is_closed_by_echod_after_the_echo(echod, model):
    srv = echod("--idle-timeout", str(IDLE_TIMEOUT), *model_args(model))
    baseline = baseline_fds(srv)
    payload, stall_for = os.urandom(4000), 2 * IDLE_TIMEOUT  # the echo held past the timeout
    stall = Faults(stall_after=1000, stall_for=stall_for)
    with FaultProxy(("127.0.0.1", srv.port), down=stall) as proxy:
        with through(proxy) as s:
            s.sendall(payload)  # no half-close: only the idle timeout ends this
            got = recv_exactly(s, len(payload), timeout=stall_for + IDLE_TIMEOUT + CLOSE_SLACK + 2)
            assert s.recv(1) == b""  # then echod's close, passed on
        conn = proxy.conns[0]
        stalled = conn.first("stall_down")
        closed = conn.first("server_eof") or conn.first("server_reset")
        assert stalled is not None and closed is not None, conn.events
        assert closed - stalled <= IDLE_TIMEOUT + CLOSE_SLACK, conn.events
    assert got == payload
    assert_serves_others_without_leak(srv, baseline)


# ---------------------------------------------------------------------------
# A reset mid-stream, toward either side.

@pytest.mark.parametrize("model", MODELS)
def test_reset_toward_echod_mid_stream_leaves_it_serving_others(echod, model):
    srv = echod(*model_args(model))
    baseline = baseline_fds(srv)
    payload, reset_at = os.urandom(200_000), 30_000
    with FaultProxy(("127.0.0.1", srv.port), up=Faults(reset_after=reset_at, reset="server")) as proxy:
        with through(proxy) as s:
            got, how = exchange_until_end(s, payload, timeout=10)
        assert proxy.conns[0].first("reset_to_server") is not None
    assert len(got) <= reset_at and got == payload[:len(got)], (len(got), how)
    assert_serves_others_without_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_reset_toward_client_mid_stream_leaves_echod_serving_others(echod, model):
    srv = echod(*model_args(model))
    baseline = baseline_fds(srv)
    payload, reset_at = os.urandom(200_000), 30_000
    with FaultProxy(("127.0.0.1", srv.port), down=Faults(reset_after=reset_at, reset="client")) as proxy:
        with through(proxy) as s:
            got, how = exchange_until_end(s, payload, timeout=10)
        assert proxy.conns[0].first("reset_to_client") is not None
    assert how == "reset", f"the client saw {how} after {len(got)} bytes"
    assert len(got) <= reset_at and got == payload[:len(got)]
    assert_serves_others_without_leak(srv, baseline)


# ---------------------------------------------------------------------------
# SIGTERM while a slow client is still sending: --grace bounds the wait.

GRACE = 0.3


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_during_a_slow_flood_exits_within_grace(echod, model):
    srv = echod("--grace", str(GRACE), *model_args(model))
    payload = os.urandom(4 << 20)  # 20 s at the cap: far longer than the grace
    outcome = []

    def client():
        with through(proxy) as s:
            outcome.append(exchange_until_end(s, payload, timeout=GRACE + 10))

    with FaultProxy(("127.0.0.1", srv.port), up=Faults(rate=200_000, slice=4096)) as proxy:
        t = threading.Thread(target=client)
        t.start()
        assert wait_until(lambda: proxy.conns and proxy.conns[0].forwarded["up"] > 50_000, 5)
        srv.signal(signal.SIGTERM)
        start = time.monotonic()
        try:
            code = srv.proc.wait(timeout=GRACE + 5)
        except subprocess.TimeoutExpired:
            code = None
        waited = time.monotonic() - start
        t.join(GRACE + 12)
    assert code == 0 and waited <= GRACE + 1.5, f"exit {code} after {waited:.1f} s"
    assert outcome, "the client hung"
    got, how = outcome[0]
    assert got == payload[:len(got)]
