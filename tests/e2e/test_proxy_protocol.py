"""echod --proxy-protocol: every TCP connection starts with a PROXY header
(HAProxy's proxy-protocol.txt, v1 text or v2 binary).  The header is consumed
and never echoed, the bytes after it are, its address is the one logged, v2
LOCAL is served, and a missing, malformed, oversized, unsupported, truncated
or too slow header closes the connection with its reason in the -v line.

The v2 headers are built here by hand from the spec, not by the code under
test.  Every test runs against every engine.
"""

import ipaddress
import os
import re
import socket
import shutil
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import ECHOD, MODELS, recv_exactly

# The spec's 12-byte v2 signature.
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
# echod's limit on a header (proxy.h), and its deadline for one (seconds).
HEADER_MAX = 1024
# --proxy-timeout for the slow-header test (the default, 5 s, is in test_config.c).
HEADER_TIMEOUT = 0.6


def v1(src="192.0.2.1", dst="198.51.100.7", sport=40000, dport=7, proto="TCP4"):
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


def v2(command=0x21, family=0x11, block=None, src="192.0.2.1", dst="198.51.100.7",
       sport=40000, dport=7, tlvs=b""):
    """A v2 header: version 2 in the high nibble of byte 13 and the command in
    the low one, the family/transport byte, a big-endian block length, the
    block (addresses, then TLVs)."""
    if block is None:
        if family in (0x11, 0x12):
            block = (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed +
                     struct.pack("!HH", sport, dport))
        elif family in (0x21, 0x22):
            block = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed +
                     struct.pack("!HH", sport, dport))
        else:
            block = b""
        block += tlvs
    return V2_SIG + bytes([command, family]) + struct.pack("!H", len(block)) + block


def connect(srv):
    s = srv.connect()
    # Each sendall leaves as its own segment: what the split tests rely on
    # to reach the server in pieces (they pass however the pieces arrive).
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_without_echo(s, timeout=5.0):
    """Reads until the server closes; asserts it sent nothing.  A reset is a
    close too (the server may close with input unread)."""
    s.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    assert got == b"", f"the server echoed {got[:60]!r} of a refused connection"


def end_line(srv, end, timeout=10.0):
    """The -v line of a connection that ended with `end`; a dict of its fields."""
    m = srv.wait_for_line(rf"^echod: connection ended end={re.escape(end)} (.*)$", timeout)
    fields = dict(re.findall(r"(\w+)=(\S+)", m.group(1)))
    fields["line"] = m.group(0)
    return fields


def serve(echod, model, *extra):
    return echod("-m", model, "-v", "--proxy-protocol", *extra)


# ---------------------------------------------------------------------------
# Accepted headers.

@pytest.mark.parametrize("model", MODELS)
def test_v1_header_is_consumed_and_the_rest_of_its_segment_echoed(echod, model):
    srv = serve(echod, model)
    with connect(srv) as s:
        s.sendall(v1() + b"hello in the same segment\n")
        assert recv_exactly(s, 26) == b"hello in the same segment\n"
        s.sendall(b"and after\n")
        assert recv_exactly(s, 10) == b"and after\n"
        local = s.getsockname()
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
    f = end_line(srv, "eof")
    assert f["peer"] == "192.0.2.1:40000"
    assert f["via"] == f"{local[0]}:{local[1]}"
    assert f["bytes_out"] == "36"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("family,src,logged", [
    (0x11, "192.0.2.9", "192.0.2.9:5555"),
    (0x21, "2001:db8::1", "[2001:db8::1]:5555"),
])
def test_v2_header_is_consumed_and_its_address_logged(echod, model, family, src, logged):
    srv = serve(echod, model)
    dst = "198.51.100.7" if family == 0x11 else "2001:db8::7"
    # A TLV (PP2_TYPE_AUTHORITY, 0x02) as balancers add: skipped.
    hdr = v2(family=family, src=src, dst=dst, sport=5555, tlvs=b"\x02\x00\x04host")
    with connect(srv) as s:
        s.sendall(hdr + b"payload")
        assert recv_exactly(s, 7) == b"payload"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
    assert end_line(srv, "eof")["peer"] == logged


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_header_split_over_several_segments(echod, model, version):
    srv = serve(echod, model)
    hdr = v1() if version == "v1" else v2()
    # Pieces that end inside the signature, inside the addresses, and one
    # with the header's last byte and the first payload bytes together.
    cuts = [1, 7, 15, len(hdr) - 1]
    pieces = [hdr[a:b] for a, b in zip([0] + cuts, cuts)] + [hdr[-1:] + b"first", b" second"]
    with connect(srv) as s:
        for p in pieces:
            s.sendall(p)
            time.sleep(0.02)  # separate segments, though the result cannot depend on it
        assert recv_exactly(s, 12) == b"first second"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
    assert end_line(srv, "eof")["peer"] == "192.0.2.1:40000"


@pytest.mark.parametrize("model", MODELS)
def test_header_alone_then_data_later(echod, model):
    srv = serve(echod, model)
    with connect(srv) as s:
        s.sendall(v2())
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(1)  # the header is never echoed
        s.sendall(b"data")
        assert recv_exactly(s, 4) == b"data"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("hdr", [
    v2(command=0x20, family=0x00),
    # LOCAL: the family and the block are ignored, as the spec says.
    v2(command=0x20, family=0x11),
    b"PROXY UNKNOWN\r\n",
    b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
], ids=["v2-local", "v2-local-with-block", "v1-unknown", "v1-unknown-with-rest"])
def test_health_checks_are_served_under_the_real_peer(echod, model, hdr):
    srv = serve(echod, model)
    with connect(srv) as s:
        s.sendall(hdr + b"check")
        assert recv_exactly(s, 5) == b"check"
        local = s.getsockname()
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
    f = end_line(srv, "eof")
    assert f["peer"] == f"{local[0]}:{local[1]}"
    assert "via" not in f


@pytest.mark.parametrize("model", MODELS)
def test_a_header_of_the_largest_accepted_size(echod, model):
    srv = serve(echod, model)
    # 16 + 12 address bytes + one TLV filling the rest: exactly HEADER_MAX.
    pad = HEADER_MAX - 16 - 12 - 3
    hdr = v2(tlvs=b"\xee" + struct.pack("!H", pad) + b"x" * pad)
    assert len(hdr) == HEADER_MAX
    with connect(srv) as s:
        s.sendall(hdr + b"z" * 3000)
        assert recv_exactly(s, 3000) == b"z" * 3000


@pytest.mark.parametrize("model", MODELS)
def test_once_echoes_the_chunk_after_the_header(echod, model):
    srv = serve(echod, model, "--once")
    with connect(srv) as s:
        s.sendall(v2() + b"only this")
        assert recv_exactly(s, 9) == b"only this"
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""
    assert end_line(srv, "once")["peer"] == "192.0.2.1:40000"


@pytest.mark.parametrize("model", MODELS)
def test_unix_stream_connections_need_the_header_too(echod, model):
    d = tempfile.mkdtemp(prefix="pp", dir="/tmp")
    try:
        path = os.path.join(d, "s")
        srv = echod("-m", model, "-v", "--proxy-protocol", "-l", f"unix:{path}")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(v1() + b"over unix")
            assert recv_exactly(s, 9) == b"over unix"
        assert end_line(srv, "eof")["peer"] == "192.0.2.1:40000"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"no header")
            closed_without_echo(s)
        end_line(srv, "proxy-missing")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_inetd_connection_with_a_header(tmp_path):
    """echod --inetd --proxy-protocol: the one connection on standard input."""
    with socket.create_server(("127.0.0.1", 0)) as lsn, \
            socket.create_connection(lsn.getsockname(), timeout=5) as client:
        conn, _ = lsn.accept()
        with conn, open(tmp_path / "err", "wb") as err:
            proc = subprocess.Popen([ECHOD, "--inetd", "--proxy-protocol", "-v"],
                                    stdin=conn.fileno(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            client.sendall(v2()[:9])
            client.sendall(v2()[9:] + b"via inetd")
            assert recv_exactly(client, 9) == b"via inetd"
            client.shutdown(socket.SHUT_WR)
            assert client.recv(1) == b""
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = (tmp_path / "err").read_text()
    assert re.search(r"connection ended end=eof .*peer=192\.0\.2\.1:40000$", log, re.M), log


def test_without_the_option_a_header_is_echoed_like_any_data(echod):
    srv = echod("-m", "epoll")
    with connect(srv) as s:
        s.sendall(v1())
        assert recv_exactly(s, len(v1())) == v1()


# ---------------------------------------------------------------------------
# Refused headers: closed, nothing echoed, the reason in the -v line.

BAD = {
    "missing": b"GET / HTTP/1.0\r\n\r\n",
    "missing-echo-data": b"hello\n",
    "malformed": b"PROXY TCP4 256.0.0.1 198.51.100.7 1 2\r\n",
    "malformed-port": b"PROXY TCP4 192.0.2.1 198.51.100.7 080 2\r\n",
    "malformed-v2-tlv": v2(tlvs=b"\x02\x00\x09abc"),
    "oversized": b"PROXY UNKNOWN " + b"x" * 200,
    "oversized-v2": V2_SIG + b"\x21\x11" + struct.pack("!H", 4000),
    "unsupported": V2_SIG + b"\x11\x11\x00\x0c",  # version 1 in a v2 block
    "unsupported-command": V2_SIG + b"\x22\x11\x00\x0c",
    "unsupported-family": V2_SIG + b"\x21\x41\x00\x0c",
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_header_closes_the_connection_with_its_reason(echod, model, case):
    srv = serve(echod, model)
    reason = case.split("-")[0]
    with connect(srv) as s:
        s.sendall(BAD[case])
        closed_without_echo(s)
    f = end_line(srv, f"proxy-{reason}")
    assert f["bytes_out"] == "0"
    assert "detail=" in f["line"]
    # The server goes on serving.
    with connect(srv) as s:
        s.sendall(v1() + b"still up")
        assert recv_exactly(s, 8) == b"still up"


@pytest.mark.parametrize("model", MODELS)
def test_peer_closing_inside_the_header_is_truncated(echod, model):
    srv = serve(echod, model)
    with connect(srv) as s:
        s.sendall(v2()[:20])
        s.shutdown(socket.SHUT_WR)
        closed_without_echo(s)
    end_line(srv, "proxy-truncated")


@pytest.mark.parametrize("model", MODELS)
def test_too_slow_header_is_closed_after_the_timeout(echod, model):
    srv = serve(echod, model, "--proxy-timeout", str(HEADER_TIMEOUT))
    with connect(srv) as s:
        start = time.monotonic()
        s.sendall(v1()[:10])  # half a header, then nothing
        closed_without_echo(s, timeout=HEADER_TIMEOUT + 5)
        took = time.monotonic() - start
    # Deadline from the accept: not before it, and within a scan's margin.
    assert HEADER_TIMEOUT - 0.05 <= took <= HEADER_TIMEOUT + 3, took
    end_line(srv, "proxy-timeout")


@pytest.mark.parametrize("model", ["epoll"])
def test_refusals_are_logged_without_v_at_most_once_a_minute(echod, model):
    srv = echod("-m", model, "--proxy-protocol")
    for _ in range(3):
        with connect(srv) as s:
            s.sendall(b"nope\n")
            closed_without_echo(s)
    srv.wait_for_line(r"PROXY header refused \(no PROXY protocol header\) from 127\.0\.0\.1:")
    srv.signal(2)
    srv.wait_exit()
    assert sum("PROXY header refused" in ln for ln in srv.stderr_lines) == 1, srv.stderr_lines


def test_proxy_protocol_needs_a_buffer_that_holds_a_header(run_echod):
    r = run_echod("--proxy-protocol", "--buffer", "512", "-l", "127.0.0.1:0")
    assert r.returncode != 0
    assert "--proxy-protocol needs --buffer of at least 1024" in r.stderr
