"""Debian's HAProxy in TCP mode in front of two real echod --proxy-protocol -v,
with contrib/haproxy/haproxy.cfg as shipped (send-proxy-v2, health checks
with a v2 LOCAL header, leastconn).

Checked: the health checks keep both echod UP; connections spread over both
and each echod logs the client address HAProxy saw (the PROXY header's) with
HAProxy's own as "via"; an echod stopped with SIGTERM in the middle of an
echoc bench cuts only its own connections (the bench goes on over the other
echod, no byte differs, the cut connections are the bench's errors and the
stopped echod's "grace" lines), and HAProxy marks it DOWN.

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
import time

import pytest

from conftest import ECHOC, ROOT, assert_echo, recv_until_eof, wait_until

CONFIG = os.environ.get("HAPROXY_CFG", os.path.join(ROOT, "contrib", "haproxy", "haproxy.cfg"))
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
WAIT = 10.0  # seconds for any single expected event (HAProxy checks every second)

END_RE = re.compile(r"^echod: connection ended end=(\S+) (.*)$")


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
    servers = [echod("-m", "epoll", "-w", "1", "--proxy-protocol", "-v", "--grace", "0.3")
               for _ in range(2)]
    proxy = HAProxy(servers)
    try:
        assert wait_until(lambda: all(s == "UP" for s, _ in proxy.servers().values()),
                          timeout=WAIT), proxy.servers()
        yield proxy, servers
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


def test_clients_spread_over_both_and_are_logged_with_their_own_address(lab):
    proxy, servers = lab
    with proxy.connect() as a, proxy.connect() as b:
        assert_echo(a, b"first client\n")
        assert_echo(b, b"second client\n" * 100)
        clients = {"%s:%d" % c.getsockname() for c in (a, b)}
        for c in (a, b):
            c.shutdown(socket.SHUT_WR)
            assert recv_until_eof(c) == b""

    def relayed():
        return [[f for f in ends(s, 0.05) if f["peer"] in clients] for s in servers]

    assert wait_until(lambda: all(relayed()), timeout=WAIT), [s.stderr_lines for s in servers]
    for lines in relayed():
        # leastconn: one client on each; the balancer is the connection's peer.
        (f,) = lines
        assert f["end"] == "eof"
        assert f["via"].startswith("127.0.0.1:") and f["via"] not in clients
    # Health checks (v2 LOCAL) are served too, under HAProxy's own address.
    assert all(any("via" not in f for f in ends(s)) for s in servers)
    assert {s for s, _ in proxy.servers().values()} == {"UP"}


def test_sigterm_to_one_echod_mid_bench_cuts_only_its_connections(lab):
    proxy, servers = lab
    conns = 10
    bench = subprocess.Popen([ECHOC, "bench", "-c", str(conns), "-s", "128", "-d", "4",
                              "--json", proxy.target],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Both echod serve part of the bench before one is stopped.
        assert wait_until(lambda: all(n > 0 for _, n in proxy.servers().values()),
                          timeout=WAIT), proxy.servers()
        held = proxy.servers()["echod1"][1]
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
    # The other echod's connections went on to the end of the bench.
    assert not [f for f in ends(servers[1], 0.5) if f["end"] not in ("eof", "reset")]
