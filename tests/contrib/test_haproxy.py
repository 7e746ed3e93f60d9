"""contrib/haproxy/haproxy.cfg: Debian's HAProxy runs it as shipped.

The file takes every address from the environment; here the frontend and the
stats page are sockets this test opened on port 0 and hands over as
"fd@N", and the two servers are small Python listeners that read what HAProxy
sends them (a PROXY v2 header, then echo) instead of echod, whose
--proxy-protocol is not wired in yet.  Checked: the file is valid; health checks
open with a v2 LOCAL header; relayed connections open with a v2 PROXY header
naming the client and the frontend, then carry the bytes both ways; leastconn
puts two connections on two servers; a server that stops listening gets no
new connection (the one refused is retried on the other) and is marked DOWN.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/contrib
"""

import contextlib
import http.client
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "contrib", "haproxy", "haproxy.cfg")
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
CMD_LOCAL, CMD_PROXY = 0x20, 0x21
TCP4 = 0x11
WAIT = 5.0  # seconds: any single expected event (HAProxy checks every second)


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_v2_header(sock):
    """(command, source, destination) of the PROXY v2 header opening sock;
    addresses as (ip, port) for TCP over IPv4, else None."""
    head = recv_exactly(sock, 16)
    assert head[:12] == V2_SIGNATURE, f"not a PROXY v2 header: {head!r}"
    command, family, length = head[12], head[13], struct.unpack("!H", head[14:16])[0]
    block = recv_exactly(sock, length)
    if command != CMD_PROXY or family != TCP4:
        return command, None, None
    src, dst = (str(ipaddress.IPv4Address(block[i:i + 4])) for i in (0, 4))
    sport, dport = struct.unpack("!HH", block[8:12])
    return command, (src, sport), (dst, dport)


class FakeEchod:
    """A listener standing in for echod --proxy-protocol: it reads the header
    of every connection, records it in self.seen, and echoes what follows."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.seen = []  # (command, source, destination) of each connection
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self.threads[0].start()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:  # the listener was closed: stop_listening()
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _record(self, item):
        with self.changed:
            self.seen.append(item)
            self.changed.notify_all()

    def _serve(self, conn):
        with conn:
            try:
                conn.settimeout(WAIT)
                self._record(read_v2_header(conn))
            except (OSError, EOFError, AssertionError) as e:
                self._record(("error", repr(e), None))
                return
            conn.settimeout(0.1)
            # A health check ends with a reset once its header is sent.
            with contextlib.suppress(ConnectionResetError):
                self._echo(conn)

    def _echo(self, conn):
        while not self.stopping.is_set():
            try:
                data = conn.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            conn.sendall(data)

    def wait_for(self, command, source=None, timeout=WAIT):
        """The first connection opened with command (and from source, if
        given), waiting up to timeout seconds; None if there is none."""
        def match():
            for item in self.seen:
                assert item[0] != "error", f"{self.address}: {item[1]}"
                if item[0] == command and source in (None, item[1]):
                    return item
            return None
        with self.changed:
            self.changed.wait_for(match, timeout)
            return match()

    def stop_listening(self):
        """As echod does on SIGTERM: new connections are refused from now on.
        shutdown(), not close(): the accept thread's poll() holds the socket
        open for up to 0.1 s after a close, and the kernel would complete
        connections meanwhile, only to reset them."""
        self.listener.shutdown(socket.SHUT_RD)

    def close(self):
        self.stopping.set()
        self.listener.close()
        for t in self.threads:
            t.join(timeout=WAIT)


def server_of(servers, source):
    """The server that received the connection from source."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for s in servers:
            if s.wait_for(CMD_PROXY, source, timeout=0.05):
                return s
    raise AssertionError(f"no server received the connection from {source}")


def wait_for_checks(servers):
    for s in servers:
        assert s.wait_for(CMD_LOCAL), f"{s.address}: no health check with a v2 LOCAL header"


class HAProxy:
    """haproxy -f contrib/haproxy/haproxy.cfg in the foreground, with the
    frontend and stats sockets opened here (port 0) and passed as fd@N."""

    def __init__(self, servers):
        self.frontend = socket.create_server(("127.0.0.1", 0))
        self.stats = socket.create_server(("127.0.0.1", 0))
        self.log = tempfile.TemporaryFile()
        env = dict(os.environ,
                   ECHOD_FRONTEND=f"fd@{self.frontend.fileno()}",
                   HAPROXY_STATS=f"fd@{self.stats.fileno()}",
                   ECHOD_SERVER1=servers[0].address,
                   ECHOD_SERVER2=servers[1].address,
                   HAPROXY_LOG="stderr")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", CONFIG], env=env,
                                     pass_fds=(self.frontend.fileno(), self.stats.fileno()),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def connect(self):
        return socket.create_connection(self.frontend.getsockname(), timeout=WAIT)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def get(self, path):
        conn = http.client.HTTPConnection(*self.stats.getsockname(), timeout=WAIT)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def server_status(self):
        """{server name: status} from the stats page's CSV."""
        status, text = self.get("/stats;csv")
        assert status == 200, text
        header = text.splitlines()[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in text.splitlines()[1:] if line]
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "echod"}

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
def lab():
    if not os.path.exists(HAPROXY):
        pytest.fail("haproxy is not installed: apt-get install haproxy")
    servers = [FakeEchod(), FakeEchod()]
    proxy = HAProxy(servers)
    try:
        yield proxy, servers
        assert proxy.proc.poll() is None, "haproxy exited:\n" + proxy.output()
    finally:
        print("haproxy's log:\n" + proxy.output())  # pytest shows it when a test fails
        proxy.close()
        for s in servers:
            s.close()


def echo_through(client, payload):
    client.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = client.recv(65536)
        assert chunk, f"EOF after {len(got)} bytes"
        got += chunk
    assert got == payload


def test_configuration_is_valid():
    for env in ({}, {"ECHOD_FRONTEND": "127.0.0.1:17127", "ECHOD_SERVER1": "192.0.2.1:7127",
                     "ECHOD_SERVER2": "[2001:db8::2]:7127", "HAPROXY_STATS": "[::1]:18404"}):
        out = subprocess.run([HAPROXY, "-c", "-f", CONFIG], env=dict(os.environ, **env),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "warning" not in (out.stdout + out.stderr).lower(), out.stdout + out.stderr


def test_health_checks_open_with_a_v2_local_header(lab):
    proxy, servers = lab
    wait_for_checks(servers)
    assert set(proxy.server_status().values()) == {"UP"}


def test_connections_carry_the_client_address_and_spread_over_both(lab):
    proxy, servers = lab
    wait_for_checks(servers)
    with proxy.connect() as a, proxy.connect() as b:
        echo_through(a, b"first client\n")
        echo_through(b, b"second client\n" * 1000)
        # leastconn: the second connection goes where the first did not.
        assert {server_of(servers, a.getsockname()), server_of(servers, b.getsockname())} == \
            set(servers)
        for s, c in ((s, c) for s in servers for c in (a, b)):
            item = s.wait_for(CMD_PROXY, c.getsockname(), timeout=0)
            assert item is None or item[2] == proxy.frontend.getsockname()
        # Half-close: the echo of what is left still arrives, then EOF.
        a.sendall(b"last words")
        a.shutdown(socket.SHUT_WR)
        assert recv_exactly(a, len(b"last words")) == b"last words"
        assert a.recv(1) == b""


def test_a_server_that_stops_listening_gets_no_new_connections(lab):
    proxy, servers = lab
    wait_for_checks(servers)
    with proxy.connect() as held:
        echo_through(held, b"held\n")
        serving = server_of(servers, held.getsockname())
        (idle,) = [s for s in servers if s is not serving]
        idle.stop_listening()
        # leastconn picks the idle server first; its refusal sends each
        # connection on to the other, until the checks mark it DOWN.
        for i in range(5):
            with proxy.connect() as c:
                echo_through(c, b"after the stop %d\n" % i)
                assert server_of([serving], c.getsockname()) is serving
        echo_through(held, b"still served\n")
        name = "echod1" if idle is servers[0] else "echod2"
        deadline = time.monotonic() + WAIT
        while not proxy.server_status()[name].startswith("DOWN") and time.monotonic() < deadline:
            time.sleep(0.1)
        status = proxy.server_status()
        assert status[name].startswith("DOWN"), status
        assert status["echod1" if name == "echod2" else "echod2"] == "UP", status


def test_prometheus_metrics_name_both_servers(lab):
    proxy, servers = lab
    wait_for_checks(servers)
    status, text = proxy.get("/metrics")
    assert status == 200
    for name in ("echod1", "echod2"):
        assert f'haproxy_server_status{{proxy="echod",server="{name}",state="UP"}} 1' in text
