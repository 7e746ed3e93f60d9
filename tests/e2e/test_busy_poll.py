"""--busy-poll: echod's epoll and uring workers, and echoc bench, spin instead of sleeping.

What a user would notice: every byte still comes back in order, the timers
(idle timeout, grace) still fire, a stop signal still ends echod at once,
the sandbox still lets it run, and a spinning worker really keeps its CPU
busy.  The models that block in the kernel refuse the option.  Speed is
never asserted here (the machine is shared); `make bench SUITE=latency`
measures it.
"""

import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import ECHOC, MODELS, cpu_seconds, echo_stream, recv_exactly, recv_until_eof

SPIN_MODELS = [m for m in ("epoll", "uring") if m in MODELS]
EXIT_TIMEOUT = 2.0  # a sleeping echod exits in milliseconds; a shared CPU adds some
PAYLOAD = os.urandom(200_000)


def start(echod, model, workers, *args):
    srv = echod("-m", model, "-w", str(workers), "--busy-poll", "-v", *args)
    srv.wait_for_line(rf"^echod: engine {model}, {workers} workers?, busy-polling")
    return srv


def stop_within(srv, seconds):
    """SIGTERM; asserts a clean exit (status 0) within seconds; returns the time taken."""
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    code = srv.proc.wait(timeout=seconds + 10)
    took = time.monotonic() - t0
    assert code == 0, srv.stderr_lines
    assert took < seconds, f"echod --busy-poll took {took:.2f} s to stop"
    return took


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_echoes_byte_exact_in_the_sandbox(echod, model, workers):
    srv = start(echod, model, workers)
    said = srv.wait_for_line(r"^echod: sandbox: (.*)$").group(1)
    assert "no seccomp" in said or "seccomp allows" in said, said
    conns = [srv.connect(timeout=10) for _ in range(workers + 1)]
    try:
        for i, s in enumerate(conns):
            data = PAYLOAD[i:] + bytes([i])
            assert echo_stream(s, data, timeout=30) == data
    finally:
        for s in conns:
            s.close()
    stop_within(srv, EXIT_TIMEOUT)


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_stops_at_once_on_sigterm(echod, model):
    srv = start(echod, model, 3)
    with srv.connect() as s:
        assert echo_stream(s, b"one\n") == b"one\n"
    stop_within(srv, EXIT_TIMEOUT)


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_still_ends_the_grace_period(echod, model):
    """An idle connection holds a spinning echod only until --grace ends."""
    srv = start(echod, model, 1, "--grace", "0.3")
    with srv.connect() as s:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
        took = stop_within(srv, 0.3 + EXIT_TIMEOUT)
        assert took >= 0.25, f"stopped after {took:.2f} s, before the grace period ended"
        assert recv_until_eof(s, timeout=1) == b""


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_still_closes_idle_connections(echod, model):
    srv = start(echod, model, 1, "--idle-timeout", "0.3")
    with srv.connect() as s:
        t0 = time.monotonic()
        assert recv_until_eof(s, timeout=5) == b""
        assert time.monotonic() - t0 >= 0.25
    srv.wait_for_line(r"end=idle")


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_keeps_a_cpu_busy_with_no_client(echod, model):
    """What --help warns of; a sleeping worker would use next to nothing.

    The bound is low because other work may share the CPU; idle, echod uses ~0.
    """
    srv = start(echod, model, 1)
    cpu0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
    select.select([], [], [], 0.5)
    cpu, wall = cpu_seconds(srv.proc.pid) - cpu0, time.monotonic() - t0
    assert cpu > 0.05 * wall, f"echod --busy-poll used {cpu:.2f} s of CPU in {wall:.2f} s"


@pytest.mark.parametrize("model", ["threads", "iterative"])
def test_busy_poll_is_refused_where_threads_block(run_echod, model):
    res = run_echod("-m", model, "--busy-poll")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"echod: --busy-poll applies to the epoll and uring models, not {model} (see --help)"]


def test_busy_poll_is_refused_with_inetd(run_echod):
    res = run_echod("--inetd", "--busy-poll")
    assert res.returncode == 2
    assert "cannot use --busy-poll with --inetd" in res.stderr


def test_help_says_busy_poll_keeps_a_cpu_busy(run_echod, run_echoc):
    assert "one CPU 100% busy" in run_echod("--help").stdout
    assert b"100% busy" in run_echoc("bench", "--help").stdout


# (conns, threads): one thread with two connections watches them with epoll;
# a thread that owns exactly one spins on recv(2) of it.
@pytest.mark.parametrize("conns,threads", [(2, 1), (1, 1), (2, 2)])
@pytest.mark.parametrize("model", SPIN_MODELS)
def test_bench_busy_poll_verifies_every_echo(echod, run_echoc, model, conns, threads):
    srv = echod("-m", model, "-w", "1", "--busy-poll", "-q")
    res = run_echoc("bench", "--busy-poll", "--json", "-c", str(conns), "-T", str(threads),
                    "-s", "64", "-d", "0.3", srv.target, timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    report = json.loads(res.stdout)
    assert report["busy_poll"] is True
    assert report["messages"] > 0
    assert report["errors"] == 0 and report["mismatches"] == 0
    assert report["latency_us"]["p50"] > 0


def test_bench_busy_poll_one_conn_reports_a_server_that_closes(echod, run_echoc):
    """echoc's spinning recv sees the end of the stream: an error at once, not a spin to -d."""
    srv = echod("-m", "epoll", "-w", "1", "--once", "-q")
    t0 = time.monotonic()
    res = run_echoc("bench", "--busy-poll", "-c", "1", "-d", "10", "-t", "10", srv.target,
                    timeout=30)
    assert time.monotonic() - t0 < 5, "echoc bench kept spinning on a closed connection"
    assert b"the server closed the connection after 1 messages" in res.stdout + res.stderr


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_hot_connection_does_not_hold_up_another(echod, model):
    """A worker reading its busiest connection directly still serves the others,
    and the busy one again after them.

    echoc bench pings one connection as fast as it can (the worker's "hot"
    one; epoll takes it out of its epoll set after a streak) while this test
    echoes on a second, which takes the hot turn from it: every echo of the
    second comes back, each within a bound far above a spinning worker's
    microseconds, and echoc's connection is served to its end, no echo late.
    """
    srv = echod("-m", model, "-w", "1", "--busy-poll", "-q")
    load = subprocess.Popen([ECHOC, "bench", "--busy-poll", "--json", "-c", "1", "-d", "0.6",
                             "-t", "1", srv.target],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        with srv.connect() as s:
            s.settimeout(1.0)
            for i in range(50):
                msg = b"second %d\n" % i
                s.sendall(msg)
                assert recv_exactly(s, len(msg), timeout=1.0) == msg
            assert load.poll() is None, "the first client stopped before the second was done"
        out, _ = load.communicate(timeout=30)
        report = json.loads(out)
        assert report["messages"] > 0
        assert report["errors"] == 0 and report["mismatches"] == 0, report
    finally:
        load.kill()
        load.wait()


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_hot_connection_whose_peer_reads_late_gets_every_byte(echod, model):
    """A hot connection (read straight from its socket) whose echo stops fitting.

    A few pings make the connection the worker's hot one; then 64 KiB
    messages arrive while the client, with a tiny receive buffer, reads
    nothing, so an echo soon fits only in part and the rest waits in the
    server (uring: the spill) until the client reads: every byte still
    comes back, in order.
    """
    srv = start(echod, model, 1, "--buffer", "65536")
    host, port = srv.target.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((host, int(port)))
    with s:
        for i in range(20):
            msg = b"ping %d\n" % i
            s.sendall(msg)
            assert recv_exactly(s, len(msg), timeout=5) == msg
        data = PAYLOAD * 10
        sent = 0
        # Send until the socket stops taking bytes (the server stopped
        # reading: its echoes are stuck), then read everything back.
        while sent < len(data):
            _, writable, _ = select.select([], [s], [], 0.2)
            if not writable:
                break
            sent += s.send(data[sent:sent + 65536])
        assert sent > 65536, "the server took too little to back up"
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s, timeout=30) == data[:sent]
    stop_within(srv, EXIT_TIMEOUT)


def spin_recv(sock, n, timeout):
    """Exactly n bytes from a non-blocking socket, spinning (no wake-up to wait for, so
    the pings come faster than a spinning server's hot period); fails on EOF or timeout."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except BlockingIOError:
            assert time.monotonic() < deadline, f"{len(out)} of {n} bytes after {timeout} s"
            continue
        assert chunk, f"EOF after {len(out)} of {n} bytes"
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("model", SPIN_MODELS)
def test_busy_poll_hot_connection_that_pauses_is_still_served(echod, model):
    """A connection hot for a long streak (epoll: read directly, out of the epoll set),
    then silent longer than a hot connection stays hot, then pinging again: every
    echo comes back, and its EOF still ends the connection."""
    srv = start(echod, model, 1)
    with srv.connect(timeout=10) as s:
        s.setblocking(False)
        for burst in range(3):
            for i in range(100):
                msg = b"burst %d ping %d\n" % (burst, i)
                s.sendall(msg)
                assert spin_recv(s, len(msg), timeout=5) == msg
            time.sleep(0.01)  # the silence under test: 50 times the 200 us hot period
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s, timeout=5) == b""
    stop_within(srv, EXIT_TIMEOUT)
