"""Behaviour under load: backpressure on clients that never read,
--max-conns, --idle-timeout, running out of file descriptors."""

import os
import resource
import select
import socket
import threading
import time

import pytest

from conftest import (CONCURRENT_MODELS, MODELS, assert_echo, assert_silent, connect_to, cpu_seconds,
                      echo_stream, fill_until_blocked, open_fds, proc_status, recv_exactly,
                      recv_until_eof, wait_until)


def model_args(model):
    # epoll with a single worker: a stuck client must not stall its loop.
    return ["-m", model] + (["-w", "1"] if model == "epoll" else [])


# ---------------------------------------------------------------------------
# Backpressure

@pytest.mark.parametrize("model", MODELS)
def test_client_that_never_reads_does_not_grow_server_memory(echod, model):
    srv = echod(*model_args(model))
    with srv.connect() as s:
        assert_echo(s, os.urandom(256 * 1024), timeout=10)  # warm up the buffers
    rss_before = proc_status(srv.proc.pid, "VmRSS")
    nclients, limit = 4, 64 << 20
    socks = [srv.connect() for _ in range(nclients)]
    try:
        accepted = [0] * nclients

        def push(i):
            accepted[i] = fill_until_blocked(socks[i], limit, stall=1.0, timeout=60)

        pushers = [threading.Thread(target=push, args=(i,), daemon=True) for i in range(nclients)]
        for t in pushers:
            t.start()
        for t in pushers:
            t.join(90)
        assert not any(t.is_alive() for t in pushers)
        # TCP flow control pushed back: far less than the 64 MiB tried got in.
        for n in accepted:
            assert n < limit // 2, f"the kernel took {n} bytes: the server kept reading"
        growth_kib = proc_status(srv.proc.pid, "VmRSS") - rss_before
        assert growth_kib < 8 * 1024, f"server RSS grew by {growth_kib} KiB"
        assert srv.proc.poll() is None
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_slow_reader_does_not_stall_others(echod, model):
    srv = echod(*model_args(model))
    with srv.connect() as stuck, srv.connect() as other:
        assert fill_until_blocked(stuck, 64 << 20, stall=1.0) < 32 << 20
        # The stuck client still holds its connection; others are served at once.
        t0 = time.monotonic()
        assert_echo(other, b"still there?\n", timeout=2)
        assert time.monotonic() - t0 < 2
        payload = os.urandom(2 << 20)
        assert echo_stream(other, payload, timeout=10, shut_wr=False) == payload
        with srv.connect() as third:
            assert_echo(third, b"newcomer\n", timeout=2)


@pytest.mark.parametrize("model", MODELS)
def test_reader_catching_up_gets_every_byte_after_backpressure(echod, model):
    # Backpressure must not lose data: after the pause, the echo is complete.
    srv = echod(*model_args(model))
    with srv.connect(timeout=30) as s:
        sent = fill_until_blocked(s, 64 << 20, stall=0.5)
        s.shutdown(socket.SHUT_WR)
        got = recv_until_eof(s, timeout=30)
    assert len(got) == sent
    assert got == b"x" * sent


# ---------------------------------------------------------------------------
# --max-conns

@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_max_conns_holds_extra_clients_in_backlog_until_a_slot_frees(echod, model):
    srv = echod("--max-conns", "2", *model_args(model))
    a = b = c = d = None
    try:
        # One after the other, so which two hold the slots is clear.
        a = srv.connect()
        assert_echo(a, b"a\n")
        b = srv.connect()
        assert_echo(b, b"b\n")
        c = srv.connect()  # the kernel completes it: it waits in the backlog
        c.sendall(b"c\n")
        assert_silent(c, 1.0)
        a.close()  # a slot frees: c is served
        assert recv_exactly(c, 2, timeout=10) == b"c\n"
        assert_echo(c, b"c again\n")
        # b and c hold both slots again: d waits ...
        d = srv.connect()
        d.sendall(b"d\n")
        assert_silent(d, 0.5)
        # ... until one of them goes away, even by a reset.
        b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        b.close()
        assert recv_exactly(d, 2, timeout=10) == b"d\n"
        assert_echo(c, b"c still\n")
    finally:
        for s in (a, b, c, d):
            if s:
                s.close()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_max_conns_serves_every_client_in_turn(echod, model):
    srv = echod("--max-conns", "3", *model_args(model))
    socks = [srv.connect() for _ in range(12)]
    try:
        for i, s in enumerate(socks):
            s.sendall(b"client %d\n" % i)
            s.shutdown(socket.SHUT_WR)
        for i, s in enumerate(socks):
            assert recv_until_eof(s, timeout=10) == b"client %d\n" % i
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("model", MODELS)
def test_max_conns_accepts_no_more_sockets_than_slots(echod, model):
    # The clients beyond --max-conns wait in the kernel's backlog, not in
    # echod: once it serves its one connection, its descriptors stay as many.
    srv = echod("--max-conns", "1", *model_args(model))
    held = srv.connect()
    waiting = []
    try:
        assert_echo(held, b"held\n")
        base = open_fds(srv.proc.pid)
        waiting = [srv.connect() for _ in range(100)]
        for i, s in enumerate(waiting):
            s.sendall(b"waiting %d\n" % i)
        assert_silent(waiting[-1], 0.5)
        assert open_fds(srv.proc.pid) == base
        # Nothing was lost: once the slot frees, each is served in turn.
        held.close()
        for i, s in enumerate(waiting):
            s.shutdown(socket.SHUT_WR)
            assert recv_until_eof(s, timeout=10) == b"waiting %d\n" % i
            s.close()
    finally:
        for s in [held] + waiting:
            s.close()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_max_conns_serves_a_client_on_any_listener(echod, model):
    # A free slot is for whichever listener a client comes to first: with
    # two listeners and one slot, a client of the second one is served.
    srv = echod("--max-conns", "1", "-l", "127.0.0.1:0", "-l", "127.0.0.2:0",
                *model_args(model))
    for kind, addr in srv.listening:
        with connect_to(addr) as s:
            assert_echo(s, addr.encode() + b"\n")


# ---------------------------------------------------------------------------
# --idle-timeout

@pytest.mark.parametrize("model", MODELS)
def test_idle_connection_is_closed_after_idle_timeout(echod, model):
    srv = echod("--idle-timeout", "1", *model_args(model))
    with srv.connect() as s:
        assert_echo(s, b"then silence\n")
        t0 = time.monotonic()
        assert recv_until_eof(s, timeout=10) == b""
        elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed <= 5.0, elapsed


@pytest.mark.parametrize("model", MODELS)
def test_connection_that_never_sends_is_closed_after_idle_timeout(echod, model):
    srv = echod("--idle-timeout", "0.5", *model_args(model))
    t0 = time.monotonic()
    with srv.connect() as s:
        assert recv_until_eof(s, timeout=10) == b""
    assert 0.4 <= time.monotonic() - t0 <= 5.0


@pytest.mark.parametrize("model", MODELS)
def test_active_connection_is_never_closed_by_idle_timeout(echod, model):
    srv = echod("--idle-timeout", "1", *model_args(model))
    with srv.connect() as s:
        end = time.monotonic() + 2.5  # longer than two idle timeouts
        i = 0
        while time.monotonic() < end:
            assert_echo(s, b"tick %d\n" % i)
            i += 1
            # Pacing the client, not synchronising: a message every 0.2 s.
            select.select([], [], [], 0.2)
        assert_echo(s, b"still open\n")
        # Once it stops talking, the timeout applies.
        assert recv_until_eof(s, timeout=10) == b""


@pytest.mark.parametrize("model", MODELS)
def test_connection_without_idle_timeout_stays_open(echod, model):
    srv = echod(*model_args(model))
    with srv.connect() as s:
        assert_echo(s)
        assert_silent(s, 1.5)
        assert_echo(s, b"after a pause\n")


@pytest.mark.skipif("iterative" not in MODELS, reason="iterative not in ECHOD_MODELS")
def test_idle_timeout_frees_the_iterative_server_for_the_next_client(echod):
    srv = echod("--idle-timeout", "0.5", "-m", "iterative")
    with srv.connect() as silent, srv.connect() as waiting:
        waiting.sendall(b"me next\n")
        assert recv_exactly(waiting, 8, timeout=10) == b"me next\n"
        assert recv_until_eof(silent, timeout=1) == b""


# ---------------------------------------------------------------------------
# Out of descriptors

NOFILE = 32


def _low_nofile():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_out_of_descriptors_no_busy_loop_and_service_resumes(echod, model):
    srv = echod(*model_args(model), preexec_fn=_low_nofile)
    pid = srv.proc.pid
    clients = []
    try:
        for _ in range(NOFILE + 16):
            s = srv.connect()
            s.sendall(b"x")
            clients.append(s)
        # Saturated: every descriptor the server may have is in use.
        assert wait_until(lambda: open_fds(pid) >= NOFILE - 1, timeout=10), open_fds(pid)
        # Measure over one-second windows (measurement, not synchronisation).  The
        # first may still hold the tail of the connection burst (thread starts and
        # echoes, slow under a sanitizer on a loaded machine); a busy loop never
        # ends, so it fills every window: the test fails only if all three are busy.
        windows = []
        for _ in range(3):
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            select.select([], [], [], 1.0)
            windows.append((cpu_seconds(pid) - cpu0, time.monotonic() - t0))
            if windows[-1][0] < 0.25 * windows[-1][1]:
                break
        cpu, wall = windows[-1]
        assert cpu < 0.25 * wall, f"echod used {windows} s of CPU (cpu, wall): a busy loop"
        assert srv.proc.poll() is None, "echod died when it ran out of descriptors"

        # Free descriptors by closing the clients that were served; the
        # others must then be served (or, with a spare-descriptor policy,
        # closed): none is left hanging.
        deadline = time.monotonic() + 20
        pending = list(clients)
        while pending:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(pending)} clients neither served nor closed"
            ready, _, _ = select.select(pending, [], [], left)
            for s in ready:
                try:
                    s.recv(16)
                except OSError:
                    pass
                s.close()
                pending.remove(s)
        # Service resumes by itself.
        with srv.connect() as s:
            assert_echo(s, b"back in service\n", timeout=10)
        assert srv.proc.poll() is None
    finally:
        for s in clients:
            s.close()
