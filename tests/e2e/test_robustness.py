"""Misbehaving clients: resets mid-echo, clients that vanish with an echo
unread (SIGPIPE), aborted connects, a stopped and continued server.  The
server keeps running, keeps serving and leaks no descriptor."""

import os
import signal
import socket

import pytest

from conftest import (MODELS, assert_echo, echo_stream, fill_until_blocked, open_fds,
                      set_linger_reset, wait_until)


def _settled_fds(srv):
    """The server's descriptor count once no connection is open."""
    with srv.connect() as s:
        assert_echo(s)
    pid = srv.proc.pid
    # Wait for the count to stop changing (the closed connection reaped).
    last = [open_fds(pid)]

    def stable():
        now = open_fds(pid)
        same = now == last[0]
        last[0] = now
        return same
    wait_until(stable, timeout=5, interval=0.1)
    return last[0]


def _assert_no_leak(srv, baseline):
    pid = srv.proc.pid
    assert wait_until(lambda: open_fds(pid) <= baseline, timeout=15), \
        f"echod holds {open_fds(pid)} descriptors, {baseline} before"
    assert srv.proc.poll() is None, "echod died"
    with srv.connect() as s:
        assert_echo(s, b"still serving\n")


def _send_some(s, size):
    """Queues up to size bytes without blocking; returns how many went."""
    s.setblocking(False)
    try:
        return s.send(os.urandom(size))
    except BlockingIOError:
        return 0
    finally:
        s.setblocking(True)


@pytest.mark.parametrize("once", [False, True], ids=["stream", "once"])
@pytest.mark.parametrize("model", MODELS)
def test_resets_mid_echo_leak_no_descriptor(echod, model, once):
    srv = echod("-m", model, *(["--once"] if once else []))
    baseline = _settled_fds(srv)
    for _ in range(30):
        s = srv.connect()
        _send_some(s, 256 * 1024)
        set_linger_reset(s)
        s.close()  # RST while the echo is in flight
    _assert_no_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_clients_vanishing_with_echo_unread_do_not_kill_server(echod, model):
    # The client closes with our echo unread in its buffer: its kernel
    # answers the server's next send with a reset (EPIPE: SIGPIPE if not
    # ignored).
    srv = echod("-m", model)
    baseline = _settled_fds(srv)
    for _ in range(20):
        s = srv.connect()
        _send_some(s, 512 * 1024)
        s.close()
    _assert_no_leak(srv, baseline)


@pytest.mark.parametrize("how", ["reset", "close"])
@pytest.mark.parametrize("model", MODELS)
def test_peer_gone_while_server_is_blocked_writing(echod, model, how):
    srv = echod("-m", model)
    baseline = _settled_fds(srv)
    s = srv.connect()
    # Fill both directions: the server now waits to write its echo.
    fill_until_blocked(s, 64 << 20, stall=0.5)
    if how == "reset":
        set_linger_reset(s)
    s.close()
    _assert_no_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_half_closed_client_that_vanishes_before_its_echo(echod, model):
    srv = echod("-m", model)
    baseline = _settled_fds(srv)
    for _ in range(20):
        s = srv.connect()
        _send_some(s, 256 * 1024)
        s.shutdown(socket.SHUT_WR)
        s.close()
    _assert_no_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_connections_aborted_in_the_backlog_are_harmless(echod, model):
    # Connections reset before echod accepts them (ECONNABORTED, or an
    # accepted socket that is already dead).
    srv = echod("-m", model)
    baseline = _settled_fds(srv)
    with srv.connect() as busy:
        assert_echo(busy)  # iterative: the others wait in the backlog
        for _ in range(30):
            s = srv.connect()
            set_linger_reset(s)
            s.close()
        assert_echo(busy, b"busy still\n")
    _assert_no_leak(srv, baseline)


@pytest.mark.parametrize("model", MODELS)
def test_stopped_and_continued_server_loses_no_byte(echod, model):
    # SIGSTOP/SIGCONT interrupt blocking calls (EINTR where no SA_RESTART).
    srv = echod("-m", model)
    payload = os.urandom(4 << 20)
    with srv.connect(timeout=30) as s:
        assert_echo(s)
        srv.signal(signal.SIGSTOP)
        try:
            sent = fill_until_blocked(s, len(payload), stall=0.3)
        finally:
            srv.signal(signal.SIGCONT)
        got = echo_stream(s, payload, timeout=30, shut_wr=True)
    assert len(got) == sent + len(payload)
    assert got[:sent] == b"x" * sent
    assert got[sent:] == payload
    assert srv.proc.poll() is None
