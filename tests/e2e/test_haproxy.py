"""Debian's HAProxy in TCP mode in front of two real echod --proxy-protocol -v
--metrics, with contrib/haproxy/haproxy.cfg as shipped (send-proxy-v2, health
checks with a v2 LOCAL header, leastconn).

Checked: the health checks keep both echod UP, and each echod counts them as
connections it accepted, which end "reset" (HAProxy closes a check with a
RST the moment its header is sent) and never as a PROXY header error;
connections spread over both, each echod's echod_connections_accepted_total
and echod_bytes_received_total grow with the traffic it got, and each logs
the client address HAProxy saw (the PROXY header's) with HAProxy's own as
"via"; an echod stopped with SIGTERM in the middle of an echoc bench cuts
only its own connections (the bench goes on over the other echod, no byte
differs, the cut connections are the bench's errors and the stopped echod's
"grace" lines), and HAProxy marks it DOWN.

Each echod's counters are checked against its own -v end lines, read once
both agree (a health check may be in flight at any moment): the metrics
count what the log says, connection for connection and byte for byte.

The frontend and stats sockets are opened here on port 0 and passed to
HAProxy as fd@N, so no port is guessed.  Needs the haproxy package.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from conftest import (ECHOC, ROOT, assert_echo, recv_until_eof, scraped, start_with_metrics,
                      wait_until)

CONFIG = os.environ.get("HAPROXY_CFG", os.path.join(ROOT, "contrib", "haproxy", "haproxy.cfg"))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
WAIT = 10.0  # seconds for any single expected event (HAProxy checks every second)

END_RE = re.compile(r"^echod: connection ended end=(\S+) (.*)$")
# A PROXY v2 header with the LOCAL command and no address: HAProxy's checks.
V2_LOCAL_HEADER_LEN = 16
# What a connection's end counts under in echod_connections_closed_by_reason_total.
REASONS = ("eof", "reset", "idle_timeout", "grace", "once")
HEADER_ERRORS = ("missing", "malformed", "oversized", "unsupported", "timeout", "truncated")


class HAProxy:
    """haproxy -db -f CONFIG, its frontend and stats sockets opened here."""

    def __init__(self, servers):
        self.frontend = socket.create_server(("127.0.0.1", 0))
        self.stats = socket.create_server(("127.0.0.1", 0))
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ,
                   ECHOD_FRONTEND=f"fd@{self.frontend.fileno()}",
                   HAPROXY_STATS=f"fd@{self.stats.fileno()}",
                   ECHOD_SERVER1=servers[0].target,
                   ECHOD_SERVER2=servers[1].target,
                   HAPROXY_LOG="stderr")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", CONFIG], env=env,
                                     pass_fds=(self.frontend.fileno(), self.stats.fileno()),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    @property
    def target(self):
        host, port = self.frontend.getsockname()
        return f"{host}:{port}"

    def connect(self):
        return socket.create_connection(self.frontend.getsockname(), timeout=WAIT)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def servers(self):
        """{server name: (status, current sessions)} from the stats CSV."""
        conn = http.client.HTTPConnection(*self.stats.getsockname(), timeout=WAIT)
        try:
            conn.request("GET", "/stats;csv")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        header = text.splitlines()[0].lstrip("# ").split(",")
        rows = [dict(zip(header, ln.split(","))) for ln in text.splitlines()[1:] if ln]
        return {r["svname"]: (r["status"], int(r["scur"] or 0))
                for r in rows if r["pxname"] == "echod" and r["svname"].startswith("echod")}

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.frontend.close()
        self.stats.close()
        self.log.close()


@pytest.fixture
def lab(echod):
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed: apt-get install haproxy")
    if not os.path.exists(CONFIG):
        pytest.skip(f"{CONFIG} is not in this tree")
    started = [start_with_metrics(echod, "-m", "epoll", "-w", "1", "--proxy-protocol", "-v",
                                  "--grace", "0.3")
               for _ in range(2)]
    servers = [srv for srv, _ in started]
    metrics = [addr for _, addr in started]
    proxy = HAProxy(servers)
    try:
        assert wait_until(lambda: all(s == "UP" for s, _ in proxy.servers().values()),
                          timeout=WAIT), proxy.servers()
        yield proxy, servers, metrics
        assert proxy.proc.poll() is None, "haproxy exited:\n" + proxy.output()
    finally:
        print("haproxy's log:\n" + proxy.output())  # pytest shows it when a test fails
        proxy.close()


def ends(srv, timeout=0.0):
    """The end lines srv logged so far (reading what is pending for up to timeout)."""
    while srv.read_stderr_line(timeout) is not None:
        pass
    out = []
    for ln in srv.stderr_lines:
        m = END_RE.match(ln)
        if m:
            f = dict(re.findall(r"(\w+)=(\S+)", m.group(2)))
            f["end"] = m.group(1)
            out.append(f)
    return out


def agreeing(srv, maddr):
    """(metrics, end lines) of srv read when the two agree, or None: every
    connection accepted has ended, and the counters are the sums of its end
    lines.  A health check caught between its accept and its end line makes
    them differ for a moment, hence the caller's polling."""
    lines = ends(srv, 0.05)
    m = scraped(maddr)
    by_reason = {r: m[f'echod_connections_closed_by_reason_total{{reason="{r}"}}']
                 for r in REASONS}
    logged = {r: sum(1 for f in lines if f["end"].replace("-", "_") == r) for r in REASONS}
    if (m["echod_connections_accepted_total"] == m["echod_connections_closed_total"] ==
            len(lines) and m["echod_connections_active"] == 0 and by_reason == logged and
            m["echod_bytes_received_total"] == sum(int(f["bytes_in"]) for f in lines)):
        return m, lines
    return None


def settled(srv, maddr):
    """agreeing(srv, maddr), polled with a deadline."""
    got = wait_until(lambda: agreeing(srv, maddr), timeout=WAIT)
    assert got, (scraped(maddr), ends(srv))
    return got


def header_errors(m):
    return {r: m[f'echod_proxy_header_errors_total{{reason="{r}"}}'] for r in HEADER_ERRORS}


def checks(lines):
    """The end lines of HAProxy's health checks: those without a client address."""
    return [f for f in lines if "via" not in f]


def test_health_checks_are_accepted_connections_without_header_errors(lab):
    proxy, servers, metrics = lab
    # HAProxy starts its servers UP and checks each every second: two checks
    # on each, and no client yet.
    assert wait_until(lambda: all(scraped(maddr)["echod_connections_accepted_total"] >= 2
                                  for maddr in metrics), timeout=WAIT)
    for srv, maddr in zip(servers, metrics):
        m, lines = settled(srv, maddr)
        assert len(lines) >= 2 and checks(lines) == lines
        # HAProxy sends its 16-byte LOCAL header and closes at once with a RST
        # (SO_LINGER 0): echod has read either nothing or the whole header.
        assert {f["end"] for f in lines} == {"reset"}, lines
        assert {int(f["bytes_in"]) for f in lines} <= {0, V2_LOCAL_HEADER_LEN}, lines
        assert all(f["bytes_out"] == "0" for f in lines), lines
        assert set(header_errors(m).values()) == {0}, m
        print(f"health checks before any client: {len(lines)} accepted, "
              f"{sum(1 for f in lines if f['bytes_in'] != '0')} with the header read")
    assert {s for s, _ in proxy.servers().values()} == {"UP"}


def test_clients_spread_over_both_and_are_logged_with_their_own_address(lab):
    proxy, servers, metrics = lab
    before = [settled(srv, maddr)[0] for srv, maddr in zip(servers, metrics)]
    first, second = b"first client\n", b"second client\n" * 100
    with proxy.connect() as a:
        assert_echo(a, first)
        # b connects once a is relayed: HAProxy runs a thread per CPU, and two
        # connections accepted at once by two threads may both find echod1
        # with the fewest connections.
        with proxy.connect() as b:
            assert_echo(b, second)
            payloads = {"%s:%d" % a.getsockname(): len(first),
                        "%s:%d" % b.getsockname(): len(second)}
            for c in (a, b):
                c.shutdown(socket.SHUT_WR)
                assert recv_until_eof(c) == b""
    clients = set(payloads)

    def relayed():
        return [[f for f in ends(s, 0.05) if f["peer"] in clients] for s in servers]

    assert wait_until(lambda: all(relayed()), timeout=WAIT), [s.stderr_lines for s in servers]
    for lines in relayed():
        # leastconn: one client on each; the balancer is the connection's peer.
        (f,) = lines
        assert f["end"] == "eof"
        assert f["via"].startswith("127.0.0.1:") and f["via"] not in clients
    # Health checks go on meanwhile: end lines without a client address.
    assert all(checks(ends(s)) for s in servers)
    assert {s for s, _ in proxy.servers().values()} == {"UP"}
    # Each echod counted its client: one more accepted connection at least
    # (checks come on top) and the client's bytes (its PROXY header on top).
    for srv, maddr, was, (f,) in zip(servers, metrics, before, relayed()):
        m, lines = settled(srv, maddr)
        sent = payloads[f["peer"]]
        assert m["echod_connections_accepted_total"] - was["echod_connections_accepted_total"] >= 1
        assert m["echod_bytes_received_total"] - was["echod_bytes_received_total"] >= sent
        assert int(f["bytes_in"]) > sent and int(f["bytes_out"]) == sent
        assert set(header_errors(m).values()) == {0}
        print(f"{f['peer']} -> echod on {srv.target}: {sent} bytes echoed, "
              f"{f['bytes_in']} received with the header; accepted "
              f"{was['echod_connections_accepted_total']:.0f} -> "
              f"{m['echod_connections_accepted_total']:.0f}")


def grew_by_bench(maddr, was):
    """True once the echod at maddr has received more than checks could send:
    one whole bench message (128 bytes) at least."""
    return scraped(maddr)["echod_bytes_received_total"] - was["echod_bytes_received_total"] >= 128


def test_sigterm_to_one_echod_mid_bench_cuts_only_its_connections(lab):
    proxy, servers, metrics = lab
    before = [settled(srv, maddr)[0] for srv, maddr in zip(servers, metrics)]
    conns = 10
    bench = subprocess.Popen([ECHOC, "bench", "-c", str(conns), "-s", "128", "-d", "4",
                              "--json", proxy.target],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Both echod serve part of the bench before one is stopped.
        assert wait_until(lambda: all(n > 0 for _, n in proxy.servers().values()),
                          timeout=WAIT), proxy.servers()
        assert wait_until(lambda: all(grew_by_bench(maddr, was)
                                      for maddr, was in zip(metrics, before)),
                          timeout=WAIT), [scraped(maddr) for maddr in metrics]
        held = proxy.servers()["echod1"][1]
        # echod1's last word before it stops: it accepted the connections
        # HAProxy holds to it, and none failed its header.
        last = scraped(metrics[0])
        held_grew = (last["echod_connections_accepted_total"] -
                     before[0]["echod_connections_accepted_total"])
        assert held_grew >= held, (held_grew, held)
        assert set(header_errors(last).values()) == {0}
        servers[0].signal(signal.SIGTERM)
        assert servers[0].wait_exit(timeout=WAIT) == 0
        out, err = bench.communicate(timeout=30)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    result = json.loads(out)
    cut = [f for f in ends(servers[0]) if "via" in f and f["end"] == "grace"]
    assert result["mismatches"] == 0, err
    assert 0 < len(cut) < conns and len(cut) == held, (held, cut)
    # The bench's errors are exactly the connections echod1 cut at its grace.
    assert result["errors"] == len(cut), (result, err)
    assert result["conns_open"] == conns - len(cut)
    assert result["messages"] > 0
    assert wait_until(lambda: proxy.servers()["echod1"][0].startswith("DOWN"),
                      timeout=WAIT), proxy.servers()
    assert proxy.servers()["echod2"][0] == "UP"
    # The other echod's connections went on to the end of the bench, and its
    # counters say so: the bench's other connections and their bytes.
    m, lines = settled(servers[1], metrics[1])
    assert not [f for f in lines if f["end"] not in ("eof", "reset")]
    # echoc bench's probe (one connection opened and closed before the run, to
    # fail in one line if no server answers) moves no byte: HAProxy may send it
    # to either echod, so the bench's connections are those that echoed bytes.
    relayed = [f for f in lines if "via" in f and int(f["bytes_out"]) > 0]
    assert len(relayed) == conns - len(cut)
    grew = m["echod_connections_accepted_total"] - before[1]["echod_connections_accepted_total"]
    assert grew >= len(relayed)
    bytes2 = m["echod_bytes_received_total"] - before[1]["echod_bytes_received_total"]
    assert bytes2 >= sum(int(f["bytes_out"]) for f in relayed) > 0
    assert set(header_errors(m).values()) == {0}
    print(f"bench of {conns} connections: echod1 held {held} (accepted +{held_grew:.0f} with "
          f"checks) and cut {len(cut)} at its grace; echod2 served {len(relayed)} to the end "
          f"(accepted +{grew:.0f} with checks, {bytes2:.0f} bytes received); bench: "
          f"{result['messages']} messages, {result['errors']} errors, "
          f"{result['mismatches']} mismatches")
