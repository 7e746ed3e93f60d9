"""echoc bench: every mode runs against echod and verifies every echo.

These runs assert correctness (no errors, no mismatches, something measured),
never speed: the machine may be shared.  Misbehaving servers are small Python
peers on 127.0.0.1 port 0, served from a thread with a deadline.
"""

import json
import socket
import threading

import pytest

from conftest import CONCURRENT_MODELS, best_concurrent_model

RUN_TIMEOUT = 30
JSON_FIELDS = ("mode", "conns", "size", "depth", "duration_s", "messages", "messages_per_s",
               "mbytes_per_s", "latency_us", "errors", "mismatches")


class Peer:
    """A Python echo server on 127.0.0.1:0 (TCP or UDP), optionally corrupting one byte.

    first_peer_only makes the UDP server answer only the first address it hears from, as
    socat UDP-LISTEN does: it connects its socket to that peer, so the kernel refuses the
    others (ICMP port unreachable).  truncate_to cuts each UDP echo to that many bytes (as
    xinetd's 2048-byte buffer does); copies sends each UDP echo that many times.
    """

    def __init__(self, udp=False, corrupt_at=None, first_peer_only=False, truncate_to=None,
                 copies=1):
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        if not udp:
            self.sock.listen(16)
        self.corrupt_at = corrupt_at
        self.first_peer_only = first_peer_only
        self.truncate_to = truncate_to
        self.copies = copies
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_udp if udp else self.serve_tcp,
                                       daemon=True)
        self.thread.start()

    @property
    def target(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def serve_tcp(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self.echo_stream, args=(conn,), daemon=True).start()

    def echo_stream(self, conn):
        """Echoes a stream, flipping the byte at offset corrupt_at (if any)."""
        seen = 0
        conn.settimeout(0.2)
        with conn:
            while not self.stop.is_set():
                try:
                    data = bytearray(conn.recv(65536))
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                at = None if self.corrupt_at is None else self.corrupt_at - seen
                if at is not None and 0 <= at < len(data):
                    data[at] ^= 0x55
                seen += len(data)
                try:
                    conn.sendall(data)
                except OSError:
                    return

    def serve_udp(self):
        connected = False
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:  # ICMP for an echo the peer no longer wanted
                continue
            if self.first_peer_only and not connected:
                self.sock.connect(addr)
                connected = True
            for _ in range(self.copies):
                self.sock.sendto(data[:self.truncate_to], addr)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def peer():
    started = []

    def start(**kw):
        p = Peer(**kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def bench(run_echoc, *args):
    """Runs echoc bench --json; returns (CompletedProcess, parsed JSON or None)."""
    res = run_echoc("bench", "--json", *args, timeout=RUN_TIMEOUT)
    out = res.stdout.decode()
    return res, (json.loads(out) if out.strip() else None)


def assert_clean(res, report):
    assert res.returncode == 0, res.stderr.decode()
    for field in JSON_FIELDS:
        assert field in report
    for p in ("p50", "p90", "p99", "p999", "max"):
        assert p in report["latency_us"]
    assert report["messages"] > 0
    assert report["errors"] == 0
    assert report["mismatches"] == 0


MODE_RUNS = [
    pytest.param([], id="pingpong"),
    pytest.param(["-c", "20", "-s", "128", "--depth", "8", "-T", "2"], id="pingpong-depth"),
    pytest.param(["--rate", "2000", "-c", "5"], id="pingpong-rate"),
    pytest.param(["--mode", "connrate", "-c", "4"], id="connrate"),
    pytest.param(["--mode", "bulk", "-c", "2", "-s", "32768"], id="bulk"),
    pytest.param(["--mode", "idle", "-c", "200"], id="idle"),
]


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
@pytest.mark.parametrize("args", MODE_RUNS)
def test_bench_mode_verifies_every_echo(echod, run_echoc, model, args):
    srv = echod("-m", model, "-q")
    res, report = bench(run_echoc, "-d", "1", *args, srv.target)
    assert_clean(res, report)
    if "idle" in args:
        assert report["conns_open"] == 200


def test_bench_connrate_once_expects_server_close(echod, run_echoc):
    srv = echod("--once", "-m", best_concurrent_model(), "-q")
    res, report = bench(run_echoc, "-d", "1", "--mode", "connrate", "--once", "-c", "4",
                        srv.target)
    assert_clean(res, report)


def test_bench_udp_counts_loss_and_order(run_echoc, peer):
    p = peer(udp=True)
    res, report = bench(run_echoc, "-u", "-d", "1", "-c", "2", "--depth", "4", p.target)
    assert_clean(res, report)
    assert report["udp"] is True
    dg = report["datagrams"]
    assert dg["sent"] >= report["messages"]
    assert dg["duplicates"] == 0


def test_bench_udp_probe_does_not_steal_a_one_peer_server(run_echoc, peer):
    # The probe datagram goes out from the socket the run then uses.
    p = peer(udp=True, first_peer_only=True)
    res, report = bench(run_echoc, "-u", "-d", "1", "-c", "1", "-t", "0.2", p.target)
    assert_clean(res, report)
    assert report["datagrams"]["lost"] == 0


def test_bench_udp_refused_connection_is_an_error(run_echoc, peer):
    # The server answers the probe's peer only; connection 1 is refused.
    p = peer(udp=True, first_peer_only=True)
    res, report = bench(run_echoc, "-u", "-d", "1", "-c", "2", "-t", "0.2", p.target)
    assert res.returncode == 1, res.stderr.decode()
    assert report["errors"] >= 1
    err = res.stderr.decode()
    assert "connection 1: " in err and "Connection refused" in err, err


def test_bench_udp_truncated_echo_is_named(run_echoc, peer):
    p = peer(udp=True, truncate_to=32)
    res, report = bench(run_echoc, "-u", "-d", "1", "-s", "64", "-t", "0.2", p.target)
    assert res.returncode == 1
    assert report["mismatches"] >= 1
    err = res.stderr.decode()
    assert "connection 0: datagram 0 came back truncated: 32 of its 64 bytes" in err, err
    assert "never sent" not in err


def test_bench_udp_duplicated_echo_is_not_a_mismatch(run_echoc, peer):
    # Every echo comes twice, the probe's too.
    p = peer(udp=True, copies=2)
    res, report = bench(run_echoc, "-u", "-d", "1", "-t", "0.2", p.target)
    assert_clean(res, report)
    assert report["datagrams"]["duplicates"] >= 1


def test_bench_connrate_once_reports_a_server_that_never_closes(run_echoc, peer):
    p = peer()  # echoes, and keeps the connection open until the client closes
    res, report = bench(run_echoc, "--mode", "connrate", "--once", "-d", "1", "-t", "0.2",
                        p.target)
    assert res.returncode == 1
    assert report["errors"] >= 1
    assert "did not close the connection" in res.stderr.decode()


def test_bench_reports_corrupted_byte(run_echoc, peer):
    p = peer(corrupt_at=1000)
    res, report = bench(run_echoc, "-d", "1", "-s", "64", p.target)
    assert res.returncode == 1
    assert report["mismatches"] >= 1
    err = res.stderr.decode()
    assert "mismatch in message 15 at byte 40" in err


def test_bench_writes_hdrhistogram_text(echod, run_echoc, tmp_path):
    srv = echod("-m", best_concurrent_model(), "-q")
    out = tmp_path / "lat.hgrm"
    res, report = bench(run_echoc, "-d", "1", "--hist", str(out), srv.target)
    assert_clean(res, report)
    text = out.read_text()
    assert text.split("\n")[0].split() == ["Value", "Percentile", "TotalCount",
                                           "1/(1-Percentile)"]
    assert "#[Mean    =" in text and "#[Max     =" in text
    assert f"Total count    = {report['messages']:12d}]" in text


@pytest.mark.no_threads  # a usage error: echoc bench exits before its threads start
@pytest.mark.parametrize("args,status,words", [
    (["--mode", "ping"], 2, "--mode ping"),
    (["-s", "0"], 2, "--size 0"),
    (["-d", "0"], 2, "--duration"),
    (["-u", "--mode", "bulk"], 2, "-u"),
    (["--once"], 2, "--once"),
    (["--mode", "bulk|idle"], 2, "--mode bulk|idle"),
])
def test_bench_bad_input_one_line(run_echoc, args, status, words):
    res = run_echoc("bench", *args, "127.0.0.1:9", timeout=RUN_TIMEOUT)
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode == status
    assert len(err) == 1 and words in err[0]


def test_bench_unreachable_server_exits_1(run_echoc):
    # A bound but not listening socket: its port refuses connections.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    try:
        res = run_echoc("bench", "-d", "1", "127.0.0.1:%d" % s.getsockname()[1],
                        timeout=RUN_TIMEOUT)
    finally:
        s.close()
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode == 1
    assert len(err) == 1 and "Connection refused" in err[0]
