"""Stream echo (RFC 862): every byte comes back, in order, until the client
closes; half-close flushes what is pending, then EOF."""

import os
import select
import socket
import threading
import time

import pytest

from conftest import (MODELS, assert_echo, echo_stream, recv_exactly, recv_until_eof)


@pytest.mark.parametrize("model", MODELS)
def test_large_payload_comes_back_byte_exact_and_in_order(echod, model):
    srv = echod("-m", model)
    payload = os.urandom(8 << 20)
    with srv.connect() as s:
        got = echo_stream(s, payload, timeout=90)
    assert len(got) == len(payload)
    assert got == payload


@pytest.mark.parametrize("model", MODELS)
def test_each_line_is_echoed_before_the_next_is_sent(echod, model):
    # telnet-style use: the echo arrives while the connection stays open.
    srv = echod("-m", model)
    with srv.connect() as s:
        for i in range(200):
            assert_echo(s, b"line %d of a conversation\n" % i)


@pytest.mark.parametrize("size", [5, 1 << 20])
@pytest.mark.parametrize("model", MODELS)
def test_half_close_flushes_pending_echo(echod, model, size):
    srv = echod("-m", model)
    payload = os.urandom(size)
    with srv.connect(timeout=30) as s:
        failure = []

        def send_then_shut():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                failure.append(e)

        sender = threading.Thread(target=send_then_shut, daemon=True)
        sender.start()
        got = recv_until_eof(s, timeout=30)
        sender.join(30)
        assert not sender.is_alive() and not failure, failure
    assert len(got) == size
    assert got == payload


@pytest.mark.parametrize("model", MODELS)
def test_half_close_keeps_echo_flowing_until_all_is_returned(echod, model):
    # The client stops sending before it reads anything: the server must keep
    # the connection open after the EOF until every byte has been echoed.
    srv = echod("-m", model)
    payload = os.urandom(100_000)
    with srv.connect() as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        assert recv_exactly(s, len(payload), timeout=20) == payload
        assert s.recv(1) == b""


@pytest.mark.parametrize("model", MODELS)
def test_many_concurrent_clients_each_get_their_own_bytes(echod, model):
    srv = echod("-m", model)
    nclients, size = 50, 64 * 1024
    socks, payloads, got, sent = [], [], {}, {}
    try:
        for _ in range(nclients):
            s = srv.connect(timeout=10)
            s.setblocking(False)
            socks.append(s)
            payloads.append(os.urandom(size))
        for s in socks:
            got[s], sent[s] = bytearray(), 0
        done = set()
        deadline = time.monotonic() + 60
        while len(done) < nclients:
            left = deadline - time.monotonic()
            assert left > 0, f"{nclients - len(done)} clients still waiting for their echo"
            pending = [s for s in socks if s not in done]
            writers = [s for s in pending if sent[s] < size]
            r, w, _ = select.select(pending, writers, [], left)
            for s in w:
                p = payloads[socks.index(s)]
                try:
                    sent[s] += s.send(p[sent[s]:sent[s] + 16384])
                except BlockingIOError:
                    pass
                if sent[s] == size:
                    s.shutdown(socket.SHUT_WR)
            for s in r:
                chunk = s.recv(65536)
                if not chunk:
                    done.add(s)
                got[s] += chunk
        for s, p in zip(socks, payloads):
            assert bytes(got[s]) == p
    finally:
        for s in socks:
            s.close()
