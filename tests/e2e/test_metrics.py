"""--metrics ADDR: the Prometheus exposition, as a scraper and a hostile client see it.

Counters move with echo traffic on every model; the HTTP side answers 404,
405, 400 and 431 as echod(1) says, drops a slow client within about a second
and never holds up echo traffic; the text passes `promtool check metrics`;
and a real Prometheus server scrapes it (its HTTP API reports up == 1 and
echod's counters).
"""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import (METRICS_RE, MODELS, assert_echo, has_ipv6_loopback, http,
                      recv_until_eof, scrape, scraped, start_with_metrics, wait_until)

DEADLINE_S = 1.0  # METRICS_HTTP_DEADLINE_MS
MAX_CONNS = 8  # METRICS_HTTP_MAX_CONNS


@pytest.mark.parametrize("model", MODELS)
def test_counters_follow_traffic(echod, model):
    srv, maddr = start_with_metrics(echod, "-m", model)
    before = scraped(maddr)
    assert before["echod_connections_accepted_total"] == 0
    assert before["echod_bytes_received_total"] == 0
    assert before["echod_connections_active"] == 0
    info = [k for k in before if k.startswith("echod_info{")]
    assert len(info) == 1 and f'engine="{model}"' in info[0]

    payload = b"metrics are counted\n" * 50
    with srv.connect() as s:
        assert_echo(s, payload)
        # The connection is open and served: the gauge says so.
        now = scraped(maddr)
        assert now["echod_connections_active"] == 1
        assert now["echod_connections_accepted_total"] == 1
    # Closed by the client; the counters settle once echod has seen the EOF.
    # echod counts the close before it frees the slot the gauge counts, so a
    # scrape in between sees both: wait for the two to settle, not the first.
    after = wait_until(lambda: (lambda m: m if (m["echod_connections_closed_total"],
                                                m["echod_connections_active"]) == (1, 0)
                                else None)(scraped(maddr)), timeout=10)
    assert after, f"the close was never counted, or the gauge stayed up: {scraped(maddr)}"
    assert after["echod_bytes_received_total"] == len(payload)
    assert after["echod_bytes_sent_total"] == len(payload)
    assert after["process_open_fds"] > 0
    assert after["process_resident_memory_bytes"] > 0
    assert after["process_max_fds"] >= after["process_open_fds"]
    start = after["process_start_time_seconds"]
    assert time.time() - 120 < start <= time.time() + 1


@pytest.mark.parametrize("model", MODELS)
def test_close_reasons_and_messages(echod, model):
    srv, maddr = start_with_metrics(echod, "-m", model)
    with srv.connect() as s:
        assert_echo(s, b"one\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == b""
    eof = 'echod_connections_closed_by_reason_total{reason="eof"}'
    after = wait_until(lambda: (lambda m: m if m[eof] == 1 else None)(scraped(maddr)),
                       timeout=5)
    assert after, "the close by EOF was never counted"
    assert after["echod_messages_received_total"] >= 1
    assert after["echod_messages_sent_total"] >= 1


def test_requests_other_than_get_metrics(echod):
    _, maddr = start_with_metrics(echod, "-m", "epoll")
    status, headers, body = http(maddr, b"HEAD /metrics HTTP/1.0\r\n\r\n")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 1000  # what GET would send
    status, _, _ = http(maddr, b"GET /metrics?name[]=x HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200
    assert http(maddr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    assert http(maddr, b"GET /favicon.ico HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 404
    status, headers, _ = http(maddr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert http(maddr, b"GET /metrics HTTP/9.9\r\n\r\n")[0] == 400
    assert http(maddr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")[0] == 400
    huge = b"GET /metrics HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 8192 + b"\r\n\r\n"
    assert http(maddr, huge)[0] == 431
    # And the endpoint still answers after all that.
    assert "echod_connections_accepted_total 0" in scrape(maddr)


def test_slow_clients_are_dropped_and_echo_goes_on(echod):
    srv, maddr = start_with_metrics(echod, "-m", "epoll", "-w", "1")
    host, port = maddr.rsplit(":", 1)
    # More slow clients than the cap, each with half a request line.
    slow = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_CONNS + 4)]
    try:
        t0 = time.monotonic()
        for s in slow:
            s.sendall(b"GET /met")
        # Echo traffic is served meanwhile, at once.
        with srv.connect() as c:
            for _ in range(20):
                assert_echo(c, b"still echoing\n", timeout=2)
        # The first MAX_CONNS are cut off at their deadline, unanswered.
        for s in slow[:MAX_CONNS]:
            s.settimeout(5)
            assert s.recv(100) == b""
        elapsed = time.monotonic() - t0
        assert elapsed < DEADLINE_S + 1.0, f"slow clients held for {elapsed:.2f} s"
    finally:
        for s in slow:
            s.close()
    # Those waiting in the backlog had their own second; the endpoint is free again.
    assert "echod_connections_accepted_total 1" in scrape(maddr)


def test_silent_client_does_not_block_scrapes(echod):
    _, maddr = start_with_metrics(echod)
    host, port = maddr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        t0 = time.monotonic()
        scrape(maddr)  # another client is served while the silent one waits
        assert time.monotonic() - t0 < DEADLINE_S / 2


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_metrics_on_ipv6(echod):
    srv = echod("--metrics", "[::1]:0")
    addr = srv.wait_for_line(METRICS_RE).group(1)
    assert addr.startswith("[::1]:")
    host, port = addr.rsplit(":", 1)
    with socket.create_connection(("::1", int(port)), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        reply = recv_until_eof(s)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\nechod_connections_accepted_total 0\n" in reply


def test_metrics_address_checks(run_echod):
    r = run_echod("--metrics", "unix:/tmp/echod-metrics.sock")
    assert r.returncode == 2 and "--metrics needs a TCP address" in r.stderr
    r = run_echod("--metrics", "127.0.0.1:0", "--inetd")
    assert r.returncode == 2 and "--metrics" in r.stderr


def test_metrics_port_in_use(run_echod):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_echod("-l", "127.0.0.1:0", "--metrics", f"127.0.0.1:{port}")
    assert r.returncode == 1 and "--metrics" in r.stderr
    # Nothing told a script waiting for "listening on" that echod was up.
    assert "listening on" not in r.stderr


def test_stops_cleanly_with_metrics(echod):
    import signal
    srv, maddr = start_with_metrics(echod)
    scrape(maddr)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


@pytest.mark.skipif(not PROMTOOL, reason="promtool not installed (Debian: prometheus)")
@pytest.mark.parametrize("model", MODELS)
def test_promtool_accepts_the_text(echod, model):
    srv, maddr = start_with_metrics(echod, "-m", model)
    with srv.connect() as s:
        assert_echo(s)
    text = scrape(maddr)
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    # promtool exits 1 on errors and on lint problems alike, and names them.
    assert r.returncode == 0, r.stdout + r.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prom_query(base, query):
    """The vector result of an instant query, [] when empty or not ready."""
    url = f"{base}/api/v1/query?query={urllib.parse.quote(query)}"
    host, port = base.removeprefix("http://").rsplit(":", 1)
    path = url.removeprefix(base)
    try:
        status, _, body = http(f"{host}:{port}",
                               f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    except OSError:
        return []
    if status != 200:
        return []
    return json.loads(body)["data"]["result"]


@pytest.fixture
def prometheus():
    """Starts prometheus on loopback scraping the given target each second."""
    procs = []
    tmp = tempfile.TemporaryDirectory(prefix="echod-prom-")

    def start(target):
        cfg = os.path.join(tmp.name, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: echod\n"
                    f"    static_configs:\n      - targets: ['{target}']\n")
        port = free_port()
        log = open(os.path.join(tmp.name, "log"), "w")
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={tmp.name}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log))
        return f"http://127.0.0.1:{port}", os.path.join(tmp.name, "log")

    yield start
    for p in procs:
        p.kill()
        p.wait(timeout=10)
    tmp.cleanup()


@pytest.mark.skipif(not PROMETHEUS, reason="prometheus not installed (Debian: prometheus)")
@pytest.mark.parametrize("model", MODELS)
def test_prometheus_scrapes_echod(echod, prometheus, model):
    srv, maddr = start_with_metrics(echod, "-m", model)
    payload = b"counted by prometheus\n" * 10
    with srv.connect() as s:
        assert_echo(s, payload)
    base, log = prometheus(maddr)

    def up():
        return [r for r in prom_query(base, 'up{job="echod"}') if r["value"][1] == "1"]

    assert wait_until(up, timeout=60, interval=0.5), open(log).read()[-3000:]

    def received():
        res = prom_query(base, "echod_bytes_received_total")
        return res and float(res[0]["value"][1]) == len(payload)

    assert wait_until(received, timeout=30, interval=0.5), prom_query(
        base, "echod_bytes_received_total")
    info = prom_query(base, "echod_info")
    assert info and info[0]["metric"]["engine"] == model


def test_udp_answered_and_rate_limited(echod):
    srv = echod("--udp", "--udp-rate", "10", "-w", "1", "--metrics", "127.0.0.1:0", listeners=2)
    maddr = srv.wait_for_line(METRICS_RE).group(1)
    (udp,) = [a for kind, a in srv.listening if kind == "udp"]
    host, port = udp.rsplit(":", 1)
    sent = 40
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        for i in range(sent):
            s.sendto(b"dgram %d" % i, (host, int(port)))
        rate = 'echod_udp_datagrams_dropped_total{reason="rate_limit"}'
        answered = "echod_udp_datagrams_answered_total"
        final = wait_until(lambda: (lambda m: m if m[answered] + m[rate] == sent else None)(
            scraped(maddr)), timeout=10)
        assert final, scraped(maddr)
        replies = 0
        s.setblocking(False)
        while True:
            try:
                s.recv(100)
                replies += 1
            except BlockingIOError:
                break
    # One second's burst (10) is answered, most of the rest dropped and counted.
    assert final[answered] == replies >= 10
    assert final[rate] >= sent - 20
    assert final['echod_udp_datagrams_dropped_total{reason="loop_guard"}'] == 0
