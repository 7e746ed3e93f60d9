"""SIGTERM/SIGINT: stop accepting at once, let open connections finish
within --grace, exit 0; a second signal exits at once."""

import os
import select
import shutil
import signal
import socket
import tempfile
import time

import pytest

from conftest import (CONCURRENT_MODELS, MODELS, assert_echo, connect_to, cpu_seconds,
                      echo_stream, recv_until_eof, wait_until)

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT],
                                  ids=["SIGTERM", "SIGINT"])
STOPPING = r"(?i)stopping"
# --grace of the tests that wait it out: long enough to tell a wait from none.
GRACE = 0.3


def _refused(addr):
    """True when a connection to addr ("127.0.0.1:P" or a unix path) is refused now."""
    try:
        s = connect_to(addr, timeout=2)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # caught in the backlog as the listener shut: try again
    s.close()
    return False


def _assert_idle_cpu(pid, window=0.5):
    """No busy loop: the process uses little CPU over a measurement window."""
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    select.select([], [], [], window)
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    assert cpu < 0.3 * wall, f"echod used {cpu:.2f} s of CPU in {wall:.2f} s"


@SIGNALS
@pytest.mark.parametrize("model", MODELS)
def test_stop_signal_refuses_new_connections_at_once(echod, model, sig):
    srv = echod("--grace", "10", "-m", model)
    with srv.connect() as busy:
        assert_echo(busy)  # an open connection keeps the server in its grace period
        srv.signal(sig)
        srv.wait_for_line(STOPPING)
        assert wait_until(lambda: _refused(srv.target), timeout=2), \
            "still accepting connections after the stop signal"
        assert srv.proc.poll() is None  # still serving the open connection
        _assert_idle_cpu(srv.proc.pid)
        assert_echo(busy, b"served through the grace period\n")


@pytest.mark.parametrize("model", MODELS)
def test_stop_signal_refuses_new_unix_connections_at_once(echod, model):
    d = tempfile.mkdtemp(prefix="echod-")
    try:
        path = os.path.join(d, "sock")
        srv = echod("-l", f"unix:{path}", "--grace", "10", "-m", model)
        with connect_to(path) as busy:
            assert_echo(busy)
            srv.signal(signal.SIGTERM)
            srv.wait_for_line(STOPPING)
            assert wait_until(lambda: _refused(path), timeout=2), \
                "still accepting connections after the stop signal"
            _assert_idle_cpu(srv.proc.pid)
            assert_echo(busy, b"served through the grace period\n")
        assert srv.wait_exit(timeout=10) == 0
        assert not os.path.exists(path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@SIGNALS
@pytest.mark.parametrize("model", MODELS)
def test_open_connection_finishes_its_echo_after_stop_signal(echod, model, sig):
    srv = echod("--grace", "10", "-m", model)
    with srv.connect(timeout=15) as s:
        assert_echo(s, b"before\n")
        srv.signal(sig)
        srv.wait_for_line(STOPPING)
        t0 = time.monotonic()
        payload = os.urandom(1 << 20)
        assert echo_stream(s, payload, timeout=9) == payload
    # Its last connection done, echod exits without waiting out the grace.
    assert srv.wait_exit(timeout=9) == 0
    assert time.monotonic() - t0 < 9


@pytest.mark.parametrize("model", MODELS)
def test_connection_that_never_finishes_is_cut_after_grace(echod, model):
    srv = echod("--grace", str(GRACE), "-m", model)
    with srv.connect() as s:
        assert_echo(s)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(timeout=10) == 0
        elapsed = time.monotonic() - t0
        try:
            assert recv_until_eof(s, timeout=2) == b""
        except ConnectionResetError:
            pass  # cut off: a reset is fine once the grace is over
    assert GRACE - 0.05 <= elapsed <= GRACE + 5, elapsed


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_idle_connections_do_not_hold_shutdown_past_grace(echod, model):
    # threads: every blocked connection thread is woken and joined.
    srv = echod("--grace", str(GRACE), "-m", model)
    socks = [srv.connect() for _ in range(20)]
    try:
        for s in socks:
            assert_echo(s)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(timeout=10) == 0
        assert time.monotonic() - t0 <= GRACE + 5
    finally:
        for s in socks:
            s.close()


@SIGNALS
@pytest.mark.parametrize("model", MODELS)
def test_second_signal_exits_immediately(echod, model, sig):
    srv = echod("--grace", "60", "-m", model)
    with srv.connect() as s:
        assert_echo(s)
        srv.signal(sig)
        srv.wait_for_line(STOPPING)
        t0 = time.monotonic()
        srv.signal(sig)
        assert srv.wait_exit(timeout=10) == -sig
        assert time.monotonic() - t0 < 3


@SIGNALS
@pytest.mark.parametrize("model", MODELS)
def test_stop_without_connections_exits_0_promptly(echod, model, sig):
    srv = echod("--grace", "30", "-m", model)
    with srv.connect() as s:
        assert_echo(s)
    t0 = time.monotonic()
    srv.signal(sig)
    assert srv.wait_exit(timeout=10) == 0
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("model", MODELS)
def test_grace_zero_cuts_connections_at_once(echod, model):
    srv = echod("--grace", "0", "-m", model)
    with srv.connect() as s:
        assert_echo(s)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(timeout=10) == 0
    assert time.monotonic() - t0 < 3


@SIGNALS
@pytest.mark.parametrize("model", MODELS)
def test_clean_stop_logs_nothing_but_the_stopping_line(echod, model, sig):
    # Shutting the listeners is part of stopping, not an error to report.
    srv = echod("-m", model)
    srv.wait_for_line(r"^echod: engine ")
    with srv.connect() as s:
        assert_echo(s)
    srv.signal(sig)
    assert srv.wait_exit(timeout=10) == 0
    after = srv.stderr_lines[srv.stderr_lines.index(
        next(l for l in srv.stderr_lines if l.startswith("echod: engine "))) + 1:]
    assert len(after) == 1 and "stopping" in after[0], after
