"""--once, the tutorial's first server: echo one chunk of up to --buffer bytes
(1024 by default), then end the stream cleanly, never with a reset."""

import os
import select
import socket
import threading

import pytest

from conftest import MODELS, recv_exactly, recv_until_eof


@pytest.mark.parametrize("model", MODELS)
def test_once_echoes_one_message_then_clean_eof(echod, model):
    srv = echod("--once", "-m", model)
    with srv.connect() as s:
        s.sendall(b"hello, world\n")
        assert recv_until_eof(s, timeout=10) == b"hello, world\n"


@pytest.mark.parametrize("model", MODELS)
def test_once_oversized_send_gets_its_first_chunk_then_eof_never_reset(echod, model):
    srv = echod("--once", "-m", model)
    for _ in range(20):
        payload = os.urandom(8192)
        with srv.connect() as s:
            s.sendall(payload)
            try:
                got = recv_until_eof(s, timeout=10)
            except ConnectionResetError:
                pytest.fail("the server reset the connection instead of ending it cleanly")
        assert 0 < len(got) <= 1024
        assert payload.startswith(got)


@pytest.mark.parametrize("model", MODELS)
def test_once_keeps_sending_client_still_gets_clean_eof(echod, model):
    # The client goes on sending after its echo: the server drains that input
    # rather than closing on it, which would turn the end into a reset.
    srv = echod("--once", "-m", model)
    with srv.connect() as s:
        s.sendall(b"first\n")
        assert recv_exactly(s, 6, timeout=10) == b"first\n"
        s.sendall(os.urandom(64 * 1024))
        try:
            rest = recv_until_eof(s, timeout=10)
        except ConnectionResetError:
            pytest.fail("the server reset the connection instead of ending it cleanly")
    assert rest == b""


@pytest.mark.parametrize("model", MODELS)
def test_once_buffer_option_sets_the_chunk_size(echod, model):
    srv = echod("--once", "--buffer", "10", "-m", model)
    with srv.connect() as s:
        s.sendall(b"0123456789abcdefghij")
        got = recv_until_eof(s, timeout=10)
    assert 0 < len(got) <= 10
    assert b"0123456789abcdefghij".startswith(got)


@pytest.mark.parametrize("model", MODELS)
def test_once_serves_one_client_after_another(echod, model):
    srv = echod("--once", "-m", model)
    for i in range(10):
        with srv.connect() as s:
            msg = b"client %d\n" % i
            s.sendall(msg)
            assert recv_until_eof(s, timeout=10) == msg


@pytest.mark.parametrize("model", MODELS)
def test_once_half_closed_client_gets_echo_then_eof(echod, model):
    srv = echod("--once", "-m", model)
    with srv.connect() as s:
        s.sendall(b"bye\n")
        s.shutdown(socket.SHUT_WR)
        assert recv_until_eof(s, timeout=10) == b"bye\n"


@pytest.mark.parametrize("model", MODELS)
def test_once_echo_not_yet_delivered_survives_the_close(echod, model):
    # The client's small window holds most of the echo in the server's send
    # queue when the server is done.  Closing with the client's extra input
    # unread would turn that into a reset and drop the queued echo; the
    # server must shut its write side and drain instead.
    srv = echod("--once", "--buffer", "65536", "-m", model)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", srv.port))
    payload = os.urandom(512 * 1024)
    sender = threading.Thread(target=lambda: _sendall_quietly(s, payload), daemon=True)
    try:
        sender.start()
        # A slow reader: it looks at its socket only after a moment.
        select.select([], [], [], 0.3)
        try:
            got = recv_until_eof(s, timeout=10)
        except ConnectionResetError:
            pytest.fail("the echo was cut by a reset")
        assert 0 < len(got) <= 65536
        assert payload.startswith(got)
    finally:
        s.close()
        sender.join(10)


def _sendall_quietly(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass  # the server may stop reading (and draining) before all of it
