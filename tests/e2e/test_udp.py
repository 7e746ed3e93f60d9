"""UDP echo (echod --udp): exact replies, one per datagram, the loop guard, the rate limit.

Synchronisation never sleeps: after the datagrams under test, a probe datagram
is sent, and its echo marks the point by which every earlier reply has been
sent.  Tests that need that ordering across two client sockets run echod with
one worker, so one server socket takes every datagram in arrival order.
"""

import json
import os
import pty
import socket
import subprocess
import sys
import time

import pytest

from conftest import ECHOC, ECHOD, MODELS, Server

DEADLINE = 5.0
GUARDED_PORTS = [7, 19, 53, 123]


def udp_listeners(srv):
    """(host, port) of every "listening on udp" line."""
    out = []
    for kind, addr in srv.listening:
        if kind == "udp":
            host, port = addr.rsplit(":", 1)
            out.append((host.strip("[]"), int(port)))
    return out


def client(host="127.0.0.1", port=0):
    """A UDP socket bound to host:port, of host's family."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((host, port))
    return s


def recv_one(sock, deadline):
    """The next datagram and its sender, or AssertionError at the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise AssertionError("no reply before the deadline")
    sock.settimeout(left)
    try:
        return sock.recvfrom(70000)
    except socket.timeout:
        raise AssertionError("no reply before the deadline") from None


def recv_until(sock, marker, timeout=DEADLINE):
    """Every datagram received before the one equal to marker."""
    deadline = time.monotonic() + timeout
    got = []
    while True:
        data, _ = recv_one(sock, deadline)
        if data == marker:
            return got
        got.append(data)


def pending(sock):
    """The datagrams already queued on sock, without waiting."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(70000))
    except BlockingIOError:
        return out
    finally:
        sock.setblocking(True)


def sync(srv_addr, host="127.0.0.1"):
    """Sends a probe from a fresh ordinary port and waits for its echo."""
    with client(host) as p:
        p.sendto(b"probe", srv_addr)
        assert recv_until(p, b"probe") == []


def payload(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


def bind_or_skip(port):
    if os.geteuid() != 0:
        pytest.skip("binding a source port below 1024 needs root")
    try:
        return client("127.0.0.1", port)
    except OSError as e:
        pytest.skip(f"cannot bind 127.0.0.1:{port}: {e.strerror}")


@pytest.mark.parametrize("model", MODELS)
def test_udp_echo_is_exact_across_sizes(echod, model):
    srv = echod("--udp", "-m", model, listeners=2)
    ((host, port),) = udp_listeners(srv)
    assert port == srv.port, "UDP must share the TCP listener's real port"
    with client() as s:
        for n in (0, 1, 1400, 65507):
            s.sendto(payload(n), (host, port))
            data, sender = recv_one(s, time.monotonic() + DEADLINE)
            assert data == payload(n)
            assert sender == (host, port)


def test_udp_echo_over_ipv6_up_to_65527_bytes(echod):
    srv = echod("--udp", "-l", "[::1]:0", listeners=2)
    ((host, port),) = udp_listeners(srv)
    assert host == "::1"
    with client("::1") as s:
        for n in (0, 1, 1400, 65527):
            s.sendto(payload(n), (host, port))
            data, sender = recv_one(s, time.monotonic() + DEADLINE)
            assert data == payload(n)
            assert sender[:2] == (host, port)


def test_every_datagram_gets_exactly_one_reply(echod):
    srv = echod("--udp", listeners=2)
    (addr,) = udp_listeners(srv)
    sent = [b"datagram %d" % i for i in range(200)]
    with client() as s:
        for d in sent:
            s.sendto(d, addr)
        s.sendto(b"probe", addr)
        got = recv_until(s, b"probe")
        got += pending(s)
    assert sorted(got) == sorted(sent)


def test_many_sources_at_once_are_all_answered(echod):
    srv = echod("--udp", listeners=2)
    (addr,) = udp_listeners(srv)
    socks = [client() for _ in range(200)]
    try:
        for i, s in enumerate(socks):
            s.sendto(b"source %d" % i, addr)
        deadline = time.monotonic() + DEADLINE
        for i, s in enumerate(socks):
            assert recv_one(s, deadline)[0] == b"source %d" % i
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("low_port", GUARDED_PORTS)
def test_loop_guard_ignores_well_known_source_ports(echod, low_port):
    srv = echod("--udp", "-w", "1", listeners=2)
    (addr,) = udp_listeners(srv)
    with bind_or_skip(low_port) as s:
        s.sendto(b"would loop", addr)
        sync(addr)
        assert pending(s) == []
    srv.wait_for_line(rf"udp: not answering 127\.0\.0\.1:{low_port}: .*loop guard")


@pytest.mark.parametrize("low_port", GUARDED_PORTS)
def test_allow_low_ports_answers_them(echod, low_port):
    srv = echod("--udp", "--udp-allow-low-ports", listeners=2)
    (addr,) = udp_listeners(srv)
    with bind_or_skip(low_port) as s:
        s.sendto(b"lab use", addr)
        assert recv_one(s, time.monotonic() + DEADLINE)[0] == b"lab use"


def test_rate_limit_per_source_keeps_serving_others(echod):
    srv = echod("--udp", "--udp-rate", "10", "-w", "1", listeners=2)
    (addr,) = udp_listeners(srv)
    with client() as noisy, client("127.0.0.2") as other:
        start = time.monotonic()
        for i in range(100):
            noisy.sendto(b"burst %d" % i, addr)
        # The second source's probe is queued behind the burst.
        other.sendto(b"other", addr)
        assert recv_until(other, b"other") == []
        took = time.monotonic() - start
        answered = pending(noisy)
    # A burst of one second's worth (10), plus a token per 100 ms the burst took.
    assert 10 <= len(answered) <= 10 + int(took * 10) + 1, (took, answered)
    assert answered == [b"burst %d" % i for i in range(len(answered))]
    srv.wait_for_line(r"udp: not answering 127\.0\.0\.1:\d+: over --udp-rate")


def test_rate_limit_zero_is_unlimited(echod):
    srv = echod("--udp", "--udp-rate", "0", listeners=2)
    (addr,) = udp_listeners(srv)
    with client() as s:
        for i in range(1500):
            s.sendto(b"%d" % i, addr)
            assert recv_one(s, time.monotonic() + DEADLINE)[0] == b"%d" % i


def test_udp_is_off_by_default(echod):
    srv = echod()
    assert udp_listeners(srv) == []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # Connected, so the kernel's port-unreachable answer surfaces as an error.
        s.connect(("127.0.0.1", srv.port))
        s.settimeout(DEADLINE)
        s.send(b"anyone?")
        with pytest.raises(ConnectionRefusedError):
            s.recv(100)


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_stops_udp_workers_and_exits_0(echod, model):
    srv = echod("--udp", "-m", model, listeners=2)
    (addr,) = udp_listeners(srv)
    sync(addr)
    srv.signal(15)
    assert srv.wait_exit() == 0


@pytest.mark.parametrize("args, message", [
    (["--udp-rate", "5"], "--udp-rate needs --udp"),
    (["--udp-allow-low-ports"], "--udp-allow-low-ports needs --udp"),
    (["--udp", "--once"], "cannot use --once with --udp"),
    (["--udp", "--udp-rate", "-1"], "--udp-rate -1"),
    (["--udp", "--udp-rate", "x"], "--udp-rate x"),
    (["--udp", "-l", "unix:/tmp/echod-udp-test.sock"], "--udp needs an IP address"),
])
def test_udp_option_errors_exit_2(run_echod, args, message):
    r = run_echod(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# Runs inside echod's network namespace: sends to every loopback address it
# is given on the wildcard port and reports who answered.
WILDCARD_CLIENT = r"""
import json, socket, sys
port = int(sys.argv[1])
out = []
for host in sys.argv[2:]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"to " + host.encode(), (host, port))
    data, sender = s.recvfrom(100)
    out.append([host, data.decode(), sender[0], sender[1]])
print(json.dumps(out))
"""


class NetnsServer(Server):
    """echod alone in a new network namespace whose only interface is lo.

    Lets a wildcard listener be tested while reachable from loopback only.
    """

    def __init__(self, args):  # pylint: disable=super-init-not-called
        script = 'ip link set lo up && exec "$0" "$@"'
        self.args = ["unshare", "-n", "sh", "-c", script, ECHOD] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines = []
        self.listening = []
        self._buf = b""


def test_wildcard_replies_from_the_address_it_was_sent_to():
    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not allowed here")
    srv = NetnsServer(["-l", "0", "--udp"])
    try:
        srv.wait_listening(4)
        udp = sorted(a for k, a in srv.listening if k == "udp")
        port = srv.port
        assert udp == sorted([f"0.0.0.0:{port}", f"[::]:{port}"])
        hosts = ["127.0.0.1", "127.0.0.2", "127.1.2.3", "::1"]
        r = subprocess.run(["nsenter", "-t", str(srv.proc.pid), "-n", sys.executable, "-c",
                            WILDCARD_CLIENT, str(port)] + hosts,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        for host, data, sender, sender_port in json.loads(r.stdout):
            assert data == "to " + host
            assert (sender, sender_port) == (host, port)
    finally:
        srv.kill()


def udp_target(srv):
    host, port = udp_listeners(srv)[0]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def test_echoc_udp_message_mode(echod, run_echoc):
    srv = echod("--udp", listeners=2)
    r = run_echoc("-u", udp_target(srv), "hello", "world")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"hello world\n"


def test_echoc_udp_message_mode_over_ipv6(echod, run_echoc):
    srv = echod("--udp", "-l", "[::1]:0", listeners=2)
    r = run_echoc("-u", "-n", udp_target(srv), "x" * 65000)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"x" * 65000


def test_echoc_udp_without_udp_server_exits_1(echod, run_echoc):
    srv = echod()
    r = run_echoc("-u", "-t", "2", srv.target, "hello")
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1
    assert b"refused" in r.stderr or b"timeout" in r.stderr


def test_echoc_udp_pipe_mode_round_trips_a_file(echod, run_echoc):
    srv = echod("--udp", "--udp-rate", "0", listeners=2)
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = run_echoc("-u", udp_target(srv), input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout == data


def test_echoc_udp_pipe_mode_reports_a_lost_datagram(echod, run_echoc):
    # One datagram a second, burst of one: the second datagram goes unanswered.
    srv = echod("--udp", "--udp-rate", "1", listeners=2)
    r = run_echoc("-u", "-t", "0.5", udp_target(srv), input=b"a" * 1400 + b"b" * 1400)
    assert r.returncode == 1
    assert r.stdout == b"a" * 1400
    assert b"datagram 2 (lost?)" in r.stderr


def test_echoc_udp_refuses_once(run_echoc):
    r = run_echoc("-u", "--once", "127.0.0.1:1", "hi")
    assert r.returncode == 2
    assert b"cannot use --once with --udp" in r.stderr


def test_echoc_udp_interactive_sends_a_datagram_per_line(echod):
    srv = echod("--udp", listeners=2)
    master, slave = pty.openpty()
    proc = subprocess.Popen([ECHOC, "-u", udp_target(srv)], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        os.write(master, b"first line\nsecond\n\x04")  # ^D: end of input
        out, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, err
        assert out == b"first line\nsecond\n"
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
