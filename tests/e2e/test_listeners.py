"""Listeners: -l repeatable, IPv4, IPv6, unix:PATH; the "listening on" and
"engine" lines exactly as the contract gives them."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest

from conftest import (ECHOD, MODELS, assert_echo, connect_to, has_ipv6_loopback,
                      uring_unavailable)

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here")

ENGINE_LINE = {
    "iterative": (["-m", "iterative"], "echod: engine iterative, 1 worker"),
    "threads": (["-m", "threads"], "echod: engine threads, one thread per connection"),
    "epoll": (["-m", "epoll", "-w", "2"], "echod: engine epoll, 2 workers"),
    "uring": (["-m", "uring", "-w", "2"], "echod: engine uring, 2 workers"),
}


@pytest.fixture
def tmpdir_short():
    # unix socket paths are limited to 107 bytes: keep them short.
    d = tempfile.mkdtemp(prefix="echod-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("model", MODELS)
def test_listening_line_gives_the_real_port(echod, model):
    srv = echod("-m", model)
    first = srv.stderr_lines[0]
    m = re.fullmatch(r"echod: listening on tcp 127\.0\.0\.1:(\d+)", first)
    assert m, first
    port = int(m.group(1))
    assert port != 0
    with connect_to(f"127.0.0.1:{port}") as s:
        assert_echo(s)


@pytest.mark.parametrize("model", MODELS)
def test_engine_line_follows_the_listening_lines(echod, model):
    args, expected = ENGINE_LINE[model]
    srv = echod("-l", "127.0.0.1:0", "-l", "127.0.0.1:0", *args)
    srv.wait_for_line(r"^echod: engine ")
    lines = srv.stderr_lines
    last_listen = max(i for i, l in enumerate(lines) if l.startswith("echod: listening on "))
    engine = lines.index(expected)
    # Between them only what the start-up found: the CPU placement and the capacity.
    between = lines[last_listen + 1:engine]
    assert engine > last_listen, lines
    assert all(re.match(r"echod: (cpu affinity:|capacity) ", l) for l in between), lines


def test_auto_model_runs_uring_or_epoll_with_one_worker_per_cpu(echod):
    srv = echod("-m", "auto")
    m = srv.wait_for_line(r"^echod: engine (\S+), (\d+) workers?$")
    assert m.group(1) == ("epoll" if uring_unavailable() else "uring")
    assert int(m.group(2)) == len(os.sched_getaffinity(0)) or int(m.group(2)) == os.cpu_count()
    with srv.connect() as s:
        assert_echo(s)


@pytest.mark.parametrize("model", MODELS)
def test_quiet_drops_engine_line_but_keeps_listening_lines(echod, model):
    args, _ = ENGINE_LINE[model]
    srv = echod("-q", *args)
    assert re.fullmatch(r"echod: listening on tcp 127\.0\.0\.1:\d+", srv.stderr_lines[0])
    with srv.connect() as s:
        assert_echo(s)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    assert not [l for l in srv.stderr_lines if "engine" in l], srv.stderr_lines
    assert len(srv.stderr_lines) == 1, srv.stderr_lines


@needs_ipv6
@pytest.mark.parametrize("model", MODELS)
def test_ipv6_listener_serves_echo(echod, model):
    srv = echod("-l", "[::1]:0", "-m", model)
    m = re.fullmatch(r"echod: listening on tcp \[::1\]:(\d+)", srv.stderr_lines[0])
    assert m and int(m.group(1)) != 0, srv.stderr_lines
    with connect_to(srv.listening[0][1]) as s:
        assert s.family == socket.AF_INET6
        assert_echo(s, b"over IPv6\n")


@pytest.mark.parametrize("model", MODELS)
def test_repeated_listen_serves_every_address(echod, model, tmpdir_short):
    path = os.path.join(tmpdir_short, "sock")
    args = ["-l", "127.0.0.1:0", "-l", "127.0.0.1:0", "-l", f"unix:{path}"]
    if has_ipv6_loopback():
        args += ["-l", "[::1]:0"]
    srv = echod(*args, "-m", model)
    assert srv.listening[0][0] == "tcp" and srv.listening[1][0] == "tcp"
    assert srv.listening[0][1] != srv.listening[1][1]
    assert srv.listening[2] == ("unix", path)
    assert f"echod: listening on unix {path}" in srv.stderr_lines
    for kind, addr in srv.listening:
        with connect_to(addr) as s:
            assert_echo(s, f"via {kind} {addr}\n".encode())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("model", MODELS)
def test_unix_socket_file_is_removed_on_exit(echod, model, sig, tmpdir_short):
    path = os.path.join(tmpdir_short, "echo.sock")
    srv = echod("-l", f"unix:{path}", "-m", model)
    assert os.path.exists(path)
    with connect_to(path) as s:
        assert_echo(s)
    srv.signal(sig)
    assert srv.wait_exit() == 0
    assert not os.path.exists(path)


def test_stale_unix_socket_file_is_replaced(echod, tmpdir_short):
    # A socket file left by a server that died (no one listens on it).
    path = os.path.join(tmpdir_short, "stale.sock")
    with socket.socket(socket.AF_UNIX) as old:
        old.bind(path)
    assert os.path.exists(path)
    srv = echod("-l", f"unix:{path}")
    with connect_to(path) as s:
        assert_echo(s)


def test_live_unix_socket_is_not_stolen(run_echod, tmpdir_short):
    path = os.path.join(tmpdir_short, "live.sock")
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(path)
        live.listen()
        r = run_echod("-l", f"unix:{path}")
        assert r.returncode == 1
        assert path in r.stderr and "Address already in use" in r.stderr
        assert os.path.exists(path)


@needs_ipv6
def test_port_only_listens_on_every_ipv4_and_ipv6_address(echod):
    srv = echod("-l", "0", listeners=2)
    lines = [l for l in srv.stderr_lines if l.startswith("echod: listening on ")]
    m4 = re.fullmatch(r"echod: listening on tcp 0\.0\.0\.0:(\d+)", lines[0])
    m6 = re.fullmatch(r"echod: listening on tcp \[::\]:(\d+)", lines[1])
    assert m4 and m6, lines
    assert m4.group(1) == m6.group(1) != "0"
    port = m4.group(1)
    for addr in (f"127.0.0.1:{port}", f"[::1]:{port}"):
        with connect_to(addr) as s:
            assert_echo(s, addr.encode() + b"\n")


# Run inside a private network namespace, where port 7127 is free whatever
# else runs on this machine: echod with no -l must serve 127.0.0.1:7127 and
# [::1]:7127.  Exit 77: cannot set up the namespace.
DEFAULT_LISTEN_PROBE = textwrap.dedent(r"""
    import os, select, socket, subprocess, sys, time
    if subprocess.run(["ip", "link", "set", "lo", "up"]).returncode != 0:
        sys.exit(77)
    p = subprocess.Popen([sys.argv[1]], stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        buf, lines = b"", []
        deadline = time.monotonic() + 10
        while len(lines) < 2:
            if b"\n" not in buf:
                if not select.select([p.stderr], [], [], max(0, deadline - time.monotonic()))[0]:
                    sys.exit("echod did not start: %r %r" % (lines, buf))
                chunk = os.read(p.stderr.fileno(), 4096)
                if not chunk:
                    sys.exit("echod exited: %r %r" % (lines, buf))
                buf += chunk
                continue
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"echod: listening on "):
                lines.append(line.decode())
        print("\n".join(lines))
        for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(fam) as s:
                s.settimeout(5)
                s.connect((host, 7127))
                s.sendall(b"default\n")
                got = b""
                while len(got) < 8:
                    chunk = s.recv(64)
                    if not chunk:
                        break
                    got += chunk
                print(host, got)
    finally:
        p.kill()
        p.wait()
""")


def test_default_listen_is_every_address_port_7127():
    unshare = shutil.which("unshare")
    if not unshare or not shutil.which("ip") or not has_ipv6_loopback():
        pytest.skip("needs unshare(1), ip(8) and IPv6 to try port 7127 in a private namespace")
    r = subprocess.run([unshare, "--net", sys.executable, "-c", DEFAULT_LISTEN_PROBE, ECHOD],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode == 77 or "unshare failed" in r.stderr or "unshare:" in r.stderr:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:2] == ["echod: listening on tcp 0.0.0.0:7127",
                       "echod: listening on tcp [::]:7127"], out
    assert "127.0.0.1 b'default\\n'" in out and "::1 b'default\\n'" in out, out
