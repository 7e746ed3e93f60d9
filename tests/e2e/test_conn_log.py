"""echod -v: one line per connection when it ends, with the client address,
bytes and messages each way, duration and how it ended (eof, reset,
idle-timeout, grace, once); --log-format json makes it one JSON object with
those fields.  Nothing is logged per message.  Every test runs against every
engine."""

import json
import re
import signal
import socket
import struct
import time

import pytest

from conftest import MODELS, assert_echo, recv_until_eof

END_RE = r"^echod: connection ended end=(\S+) (.*)$"


def fields_of(line):
    m = re.match(END_RE, line)
    assert m, line
    f = dict(re.findall(r"(\w+)=(\S+)", m.group(2)))
    f["end"] = m.group(1)
    return f


def end_lines(srv):
    return [fields_of(ln) for ln in srv.stderr_lines if re.match(END_RE, ln)]


def wait_end(srv, end, timeout=10.0):
    return fields_of(srv.wait_for_line(rf"^echod: connection ended end={end} ", timeout).string)


def addr(sock):
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@pytest.mark.parametrize("model", MODELS)
def test_one_line_at_the_end_with_bytes_messages_and_duration(echod, model):
    srv = echod("-m", model, "-v")
    with srv.connect() as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        for msg in (b"one\n", b"two two\n", b"three three three\n"):
            assert_echo(s, msg)  # each waits for its echo: one read, one send
        time.sleep(0.3)  # a duration to measure, not synchronisation
        me = addr(s)
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == b""
        held = time.monotonic() - start
    f = wait_end(srv, "eof")
    assert f["peer"] == me
    assert (f["bytes_in"], f["bytes_out"]) == ("30", "30")
    assert (f["msgs_in"], f["msgs_out"]) == ("3", "3")
    assert 300 <= int(f["duration_ms"]) <= held * 1000 + 50
    # Nothing else about this connection: no line per message, none at the accept.
    srv.signal(signal.SIGTERM)
    srv.wait_exit()
    assert sum(me in ln for ln in srv.stderr_lines) == 1, srv.stderr_lines


@pytest.mark.parametrize("model", MODELS)
def test_reset_by_the_peer(echod, model):
    srv = echod("-m", model, "-v")
    with srv.connect() as s:
        assert_echo(s, b"x")
        # SO_LINGER 0: close(2) sends a reset instead of a FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_end(srv, "reset")["bytes_in"] == "1"


@pytest.mark.parametrize("model", MODELS)
def test_idle_timeout(echod, model):
    srv = echod("-m", model, "-v", "--idle-timeout", "0.3")
    with srv.connect() as s:
        assert recv_until_eof(s) == b""
    wait_end(srv, "idle-timeout")


@pytest.mark.parametrize("model", MODELS)
def test_grace_expiry_on_stop(echod, model):
    srv = echod("-m", model, "-v", "--grace", "0.3")
    with srv.connect() as s:
        assert_echo(s, b"held open")
        srv.signal(signal.SIGTERM)
        wait_end(srv, "grace")
    assert srv.wait_exit() == 0


@pytest.mark.parametrize("model", MODELS)
def test_once_done(echod, model):
    srv = echod("-m", model, "-v", "--once")
    with srv.connect() as s:
        s.sendall(b"just once")
        assert recv_until_eof(s) == b"just once"
    f = wait_end(srv, "once")
    assert f["bytes_out"] == "9"


@pytest.mark.parametrize("model", MODELS)
def test_json_line_is_one_object_with_the_fields(echod, model):
    srv = echod("-m", model, "-v", "--log-format", "json")
    with srv.connect() as s:
        assert_echo(s, b"json please")
        me = addr(s)
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s) == b""
    line = srv.wait_for_line(r'"msg":"connection ended"').string
    obj = json.loads(line)
    assert obj["msg"] == "connection ended"
    assert obj["level"] == "debug"
    assert obj["end"] == "eof"
    assert obj["peer"] == me
    assert (obj["bytes_in"], obj["bytes_out"], obj["msgs_in"], obj["msgs_out"]) == (11, 11, 1, 1)
    assert isinstance(obj["duration_ms"], int)


@pytest.mark.parametrize("model", MODELS)
def test_without_v_nothing_is_logged_per_connection(echod, model):
    srv = echod("-m", model)
    for _ in range(3):
        with srv.connect() as s:
            assert_echo(s, b"quiet")
    srv.signal(signal.SIGTERM)
    srv.wait_exit()
    assert not end_lines(srv), srv.stderr_lines
    assert not [ln for ln in srv.stderr_lines if "127.0.0.1:" in ln and "listening" not in ln]
