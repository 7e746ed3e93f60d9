"""echod raises its descriptor limit and says how many connections it can hold.

At start echod raises the soft RLIMIT_NOFILE to the hard one and logs one
"capacity" line: connections = the limit less the descriptors echod holds
itself.  The figure must be the real one: with a tiny limit, exactly that
many clients are served and the next one waits until one of them leaves.
"""

import json
import re
import resource

import pytest

from conftest import (CONCURRENT_MODELS, assert_echo, assert_silent, connect_to, open_fds,
                      recv_exactly, wait_until)

CAPACITY_RE = re.compile(r"^echod: capacity connections=(\d+) bound_by=(\S+) nofile=(\d+) "
                         r"echod_fds=(\d+) per_connection=(\S+)$")


def limit_nofile(soft, hard):
    """A preexec_fn: the child starts with these descriptor limits."""
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def soft_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no 'Max open files' in /proc/PID/limits")


def capacity(srv):
    m = srv.wait_for_line(CAPACITY_RE)
    return {"connections": int(m[1]), "bound_by": m[2], "nofile": int(m[3]),
            "echod_fds": int(m[4])}


def test_raises_the_soft_limit_to_the_hard_one_and_says_so(echod):
    srv = echod("-m", "epoll", "-w", "2", preexec_fn=limit_nofile(64, 3000))
    cap = capacity(srv)
    assert soft_limit(srv.proc.pid) == 3000
    assert cap["nofile"] == 3000
    assert cap["bound_by"] == "descriptors"
    # What echod counts as its own is what it holds once its workers run.
    assert wait_until(lambda: open_fds(srv.proc.pid) == cap["echod_fds"], timeout=5.0), \
        f"echod holds {open_fds(srv.proc.pid)} descriptors, announced {cap['echod_fds']}"
    assert cap["connections"] == 3000 - cap["echod_fds"]


def test_max_conns_below_the_limit_is_the_capacity_and_json_says_it(echod):
    srv = echod("-m", "epoll", "-w", "1", "--max-conns", "100", "--log-format", "json",
                preexec_fn=limit_nofile(3000, 3000))
    rec = json.loads(srv.wait_for_line(r'"msg":"capacity"').string)
    assert rec["connections"] == 100 and rec["bound_by"] == "max-conns"
    assert rec["nofile"] == 3000


def test_max_conns_above_the_limit_is_warned_about(echod):
    srv = echod("-m", "epoll", "-w", "1", "--max-conns", "5000",
                preexec_fn=limit_nofile(100, 100))
    cap = capacity(srv)
    assert cap["bound_by"] == "descriptors" and cap["connections"] < 100
    srv.wait_for_line(re.compile(r"^echod: --max-conns 5000 is more than the "
                                 rf"{cap['connections']} connections"))


@pytest.mark.parametrize("model", CONCURRENT_MODELS)
def test_a_tiny_limit_holds_exactly_the_capacity_it_announces(echod, model):
    srv = echod("-m", model, *(["-w", "1"] if model in ("epoll", "uring") else []),
                preexec_fn=limit_nofile(48, 48))
    cap = capacity(srv)
    assert 0 < cap["connections"] < 48
    clients = [connect_to(srv.target) for _ in range(cap["connections"])]
    try:
        for i, c in enumerate(clients):
            assert_echo(c, b"client %d\n" % i)
        # One more: the kernel completes its handshake into the backlog, but
        # echod has no descriptor left to accept it with.
        extra = connect_to(srv.target)
        clients.append(extra)
        extra.sendall(b"waiting\n")
        assert_silent(extra, 0.3)
        clients.pop(0).close()
        assert recv_exactly(extra, 8, timeout=5.0) == b"waiting\n"
    finally:
        for c in clients:
            c.close()
