"""The tutorial step by step: the first server (--once --model iterative),
its flaw (a second client waits), and the fix (threads, then epoll)."""

import pytest

from conftest import CONCURRENT_MODELS, MODELS, assert_echo, assert_silent, recv_exactly, \
    recv_until_eof

ITERATIVE = [m for m in MODELS if m == "iterative"]


@pytest.mark.skipif(not ITERATIVE, reason="iterative not in ECHOD_MODELS")
def test_tutorial_first_server_echoes_one_chunk_per_client_and_closes(echod):
    srv = echod("--once", "--model", "iterative")
    for msg in (b"hello\n", b"is anybody out there?\n"):
        with srv.connect() as s:
            s.sendall(msg)
            assert recv_until_eof(s, timeout=10) == msg


@pytest.mark.skipif(not ITERATIVE, reason="iterative not in ECHOD_MODELS")
@pytest.mark.parametrize("once", [False, True], ids=["stream", "once"])
def test_iterative_second_client_waits_until_first_disconnects(echod, once):
    srv = echod("--model", "iterative", *(["--once"] if once else []))
    first = srv.connect()
    second = srv.connect()  # completes: the kernel queues it in the backlog
    try:
        if not once:
            assert_echo(first, b"first\n")
        second.sendall(b"second\n")
        # The flaw on purpose: nothing for the second while the first is connected.
        assert_silent(second, 1.0)
        first.close()
        assert recv_exactly(second, 7, timeout=10) == b"second\n"
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_second_client_is_served_while_first_stays_connected(echod, model):
    srv = echod("--model", model)
    with srv.connect() as first, srv.connect() as second:
        assert_echo(first, b"first\n")
        assert_echo(second, b"second\n", timeout=2)
        assert_echo(first, b"first again\n")


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_once_second_client_is_served_while_first_stays_silent(echod, model):
    srv = echod("--once", "--model", model)
    with srv.connect() as first, srv.connect() as second:
        second.sendall(b"second\n")
        assert recv_until_eof(second, timeout=2) == b"second\n"
        first.sendall(b"first\n")
        assert recv_until_eof(first, timeout=5) == b"first\n"
