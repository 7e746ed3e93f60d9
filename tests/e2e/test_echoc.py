"""echoc end to end: message, pipe and interactive modes against the real echod,
and against small Python peers that misbehave on purpose (never answer,
corrupt a byte, cut the echo short).

Every echoc run is bounded in time and every process is killed in teardown.
Interactive mode is driven through a pseudo-terminal, since echoc only
enters it when standard input is a terminal.
"""

import os
import pty
import re
import select
import socket
import subprocess
import termios
import time

import pytest

from conftest import ECHOC, MODELS, has_ipv6_loopback

BIG_MIB = 200

# echoc runs a thread of its own only in bench mode: these tests (echoc alone,
# against a Python peer or none) leave the ThreadSanitizer run.
no_threads = pytest.mark.no_threads


@pytest.fixture
def spawn_echoc():
    """Factory: spawn_echoc(*args, **popen_kwargs) starts echoc without waiting;
    whatever is still running at teardown is killed."""
    procs = []

    def spawn(*args, **kwargs):
        kwargs.setdefault("stderr", subprocess.PIPE)
        proc = subprocess.Popen([ECHOC] + list(args), **kwargs)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f:
                f.close()


@pytest.fixture
def peer():
    """A Python TCP listener on 127.0.0.1, port 0, playing a misbehaving server.

    The kernel completes connections in the backlog whether or not the test
    accepts them, so a peer that never accepts is a server that never answers.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    s.settimeout(5.0)
    yield s
    s.close()


def target_of(sock):
    return "127.0.0.1:%d" % sock.getsockname()[1]


def recv_n(conn, n, timeout=5.0):
    """Receives n bytes from conn (fails on EOF or timeout)."""
    conn.settimeout(timeout)
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return bytes(buf)


def one_stderr_line(res):
    """The only line echoc wrote to standard error (asserts there is exactly one)."""
    text = res.stderr.decode() if isinstance(res.stderr, bytes) else res.stderr
    lines = text.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert lines[0].startswith("echoc: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------
# Message mode


@pytest.mark.parametrize("model", MODELS)
def test_message_is_echoed_and_exit_0(echod, run_echoc, model):
    srv = echod("-m", model)
    res = run_echoc(srv.target, "hello", "world")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"hello world\n"
    assert res.stderr == b""


@pytest.mark.parametrize("model", MODELS)
def test_no_newline_sends_the_words_only(echod, run_echoc, model):
    srv = echod("-m", model)
    res = run_echoc("-n", srv.target, "hello", "world")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"hello world"


def test_message_words_may_look_like_options(echod, run_echoc):
    srv = echod("-m", "threads")
    res = run_echoc(srv.target, "-n", "--once", "-x")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"-n --once -x\n"


def test_large_message_does_not_deadlock(echod, run_echoc):
    # Bigger than echod's buffer and the socket buffers together, so echoc
    # must read the echo while it is still sending.
    srv = echod("-m", "threads")
    word = "x" * (100 * 1024)
    res = run_echoc("-n", srv.target, *([word] * 10))
    assert res.returncode == 0, res.stderr
    assert res.stdout == " ".join([word] * 10).encode()


@no_threads
def test_connection_refused_is_one_line_and_exit_1(run_echoc):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run_echoc(f"127.0.0.1:{port}", "hello")
    assert res.returncode == 1
    assert res.stdout == b""
    assert one_stderr_line(res) == f"echoc: connect 127.0.0.1:{port}: Connection refused"


@no_threads
def test_silent_server_times_out_with_exit_1(peer, run_echoc):
    start = time.monotonic()
    res = run_echoc("--timeout", "0.5", target_of(peer), "hello", timeout=10)
    elapsed = time.monotonic() - start
    assert res.returncode == 1
    assert one_stderr_line(res) == \
        "echoc: timeout after 0.5 s waiting for the echo (got 0 of 6 bytes)"
    # The asked timeout, not the 5 s default.
    assert 0.4 <= elapsed < 4.0


@no_threads
def test_partial_echo_timeout_says_how_much_came(peer, spawn_echoc):
    proc = spawn_echoc("-t", "0.5", target_of(peer), "hello", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 6)[:3])
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out == b"hel"
    assert err.decode() == \
        "echoc: timeout after 0.5 s waiting for the echo (got 3 of 6 bytes)\n"


@no_threads
def test_corrupted_echo_exits_1(peer, spawn_echoc):
    proc = spawn_echoc(target_of(peer), "hello", "world", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        data = bytearray(recv_n(conn, 12))
        data[4] ^= 0x20
        conn.sendall(data)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out == b"hellO world\n"  # the echo as it came
    assert err.decode() == "echoc: echo differs from what was sent\n"


@no_threads
def test_echo_cut_short_exits_1(peer, spawn_echoc):
    proc = spawn_echoc(target_of(peer), "hello", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 6)[:2])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err.decode() == "echoc: echo ended after 2 of 6 bytes\n"


@no_threads
def test_bytes_after_the_echo_exit_1(peer, spawn_echoc):
    # The echo is right, then the server goes on: the echo is longer than the message.
    proc = spawn_echoc(target_of(peer), "hi", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 3) + b"extra")
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out.startswith(b"hi\n")
    assert err.decode() == "echoc: echo differs from what was sent: it is longer\n"


@no_threads
def test_message_waits_for_the_end_of_the_echo(peer, spawn_echoc):
    # After the echo echoc shuts its side; the server's close ends the run with 0.
    proc = spawn_echoc(target_of(peer), "hi", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 3))
        conn.settimeout(5.0)
        assert conn.recv(1) == b""  # echoc's half-close
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out == b"hi\n"


# ---------------------------------------------------------------------------
# --once


@pytest.mark.parametrize("model", MODELS)
def test_once_against_echod_once(echod, run_echoc, model):
    srv = echod("--once", "-m", model)
    res = run_echoc("--once", srv.target, "hello")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"hello\n"


@no_threads
def test_once_reports_an_echo_longer_than_sent(peer, spawn_echoc):
    proc = spawn_echoc("--once", target_of(peer), "hi", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 3) + b"extra")
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert err.decode().startswith("echoc: echo differs from what was sent")


@no_threads
def test_once_waits_for_the_close(peer, spawn_echoc):
    # The echo is right but the server keeps the connection open: with
    # --once that is a failure after the timeout.
    proc = spawn_echoc("--once", "-t", "0.5", target_of(peer), "hi", stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.sendall(recv_n(conn, 3))
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out == b"hi\n"
    assert err.decode() == \
        "echoc: timeout after 0.5 s waiting for the server to close the connection\n"


@pytest.mark.parametrize("model", MODELS)
def test_once_reports_a_message_longer_than_one_chunk(echod, run_echoc, model):
    # echod --once echoes one read of at most 1024 bytes, then closes.
    srv = echod("--once", "-m", model)
    res = run_echoc("--once", srv.target, "y" * 2000)
    assert res.returncode == 1
    assert re.fullmatch(r"echoc: echo ended after \d+ of 2001 bytes", one_stderr_line(res))
    assert 0 < len(res.stdout) <= 1024


# ---------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize("model", MODELS)
def test_unix_socket_target(echod, run_echoc, tmp_path, model):
    path = str(tmp_path / "echo.sock")
    echod("-l", f"unix:{path}", "-m", model)
    res = run_echoc(f"unix:{path}", "over", "unix")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"over unix\n"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_target(echod, run_echoc):
    srv = echod("-l", "[::1]:0", "-m", "threads")
    res = run_echoc(f"[::1]:{srv.port}", "six")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"six\n"


# ---------------------------------------------------------------------------
# Pipe mode


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """BIG_MIB MiB of random bytes: far more than any socket buffer."""
    path = tmp_path_factory.mktemp("pipe") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(BIG_MIB):
            f.write(os.urandom(1 << 20))
    return path


@pytest.mark.parametrize("model", MODELS)
def test_pipe_streams_a_big_file_unchanged(echod, spawn_echoc, big_file, tmp_path, model):
    srv = echod("-m", model)
    out_path = tmp_path / "echo.bin"
    with open(big_file, "rb") as fin, open(out_path, "wb") as fout:
        proc = spawn_echoc(srv.target, stdin=fin, stdout=fout)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == b""
    assert os.path.getsize(out_path) == BIG_MIB << 20
    assert subprocess.run(["cmp", "-s", str(big_file), str(out_path)],
                          timeout=60).returncode == 0


@pytest.mark.parametrize("model", MODELS)
def test_pipe_with_empty_stdin_exits_0(echod, run_echoc, model):
    srv = echod("-m", model)
    res = run_echoc(srv.target, input=b"")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b""
    assert res.stderr == b""


def test_pipe_from_a_slow_producer(echod, spawn_echoc):
    # Input that trickles in must come back as it goes, before stdin ends:
    # the echo of the first line is read while the second is not written yet.
    srv = echod("-m", "threads")
    proc = spawn_echoc(srv.target, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    for line in (b"one\n", b"two\n"):
        proc.stdin.write(line)
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], 5.0)
        assert ready, f"no echo of {line!r} within 5 s"
        assert os.read(proc.stdout.fileno(), 100) == line
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


@no_threads
def test_pipe_short_echo_exits_1(peer, spawn_echoc, tmp_path):
    data = os.urandom(1000)
    (tmp_path / "in").write_bytes(data)
    with open(tmp_path / "in", "rb") as fin:
        proc = spawn_echoc(target_of(peer), stdin=fin, stdout=subprocess.PIPE)
    conn, _ = peer.accept()
    with conn:
        conn.settimeout(5.0)
        got = bytearray()
        while True:  # until echoc's half-close
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
        assert bytes(got) == data
        conn.sendall(data[:500])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert out == data[:500]
    assert err.decode() == "echoc: echo ended after 500 of 1000 bytes\n"


@no_threads
def test_pipe_times_out_when_the_server_stops_reading(peer, run_echoc):
    # The peer never accepts: echoc fills the socket buffers, then nothing
    # moves while echo bytes are outstanding.
    start = time.monotonic()
    res = run_echoc("-t", "0.5", target_of(peer), input=b"z" * (8 << 20), timeout=20)
    assert res.returncode == 1
    line = one_stderr_line(res)
    assert re.fullmatch(r"echoc: timeout after 0\.5 s waiting for the echo "
                        r"\(got 0 of \d+ bytes\)", line), line
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------------------
# Interactive mode, through a pseudo-terminal


class Terminal:
    """echoc with a pseudo-terminal as standard input and output."""

    def __init__(self, spawn, *args):
        self.master, slave = pty.openpty()
        # The terminal itself must not echo what the test types: only
        # echoc's output should come back.
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        try:
            self.proc = spawn(*args, stdin=slave, stdout=slave)
        finally:
            os.close(slave)
        self.buf = b""

    def type(self, data):
        os.write(self.master, data)

    def read_until(self, want, timeout=5.0):
        """Reads the terminal until want appeared (newlines as \\n); returns the
        text up to and including it."""
        deadline = time.monotonic() + timeout
        while want not in self.buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.master], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"no {want!r} on the terminal; got {self.buf!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: echoc has gone
                chunk = b""
            if not chunk:
                raise AssertionError(f"terminal closed before {want!r}; got {self.buf!r}")
            self.buf += chunk.replace(b"\r\n", b"\n")
        end = self.buf.index(want) + len(want)
        text, self.buf = self.buf[:end], self.buf[end:]
        return text

    def close(self):
        os.close(self.master)


@pytest.fixture
def terminal(spawn_echoc):
    terms = []

    def start(*args):
        t = Terminal(spawn_echoc, *args)
        terms.append(t)
        return t

    yield start
    for t in terms:
        if t.proc.poll() is None:
            t.proc.kill()
            t.proc.wait(timeout=10)
        t.close()


@pytest.mark.parametrize("model", MODELS)
def test_interactive_echoes_each_line_until_ctrl_d(echod, terminal, model):
    srv = echod("-m", model)
    term = terminal(srv.target)
    term.type(b"first line\n")
    assert term.read_until(b"first line\n") == b"first line\n"
    term.type(b"second\n")
    assert term.read_until(b"second\n") == b"second\n"
    term.type(b"\x04")  # Ctrl-D at the start of a line: end of input
    assert term.proc.wait(timeout=5) == 0
    assert term.proc.stderr.read() == b""


@no_threads
def test_interactive_reports_a_corrupted_echo(peer, terminal):
    term = terminal(target_of(peer))
    conn, _ = peer.accept()
    with conn:
        term.type(b"abc\n")
        conn.sendall(b"abd\n" if recv_n(conn, 4) == b"abc\n" else b"")
        assert term.read_until(b"abd\n") == b"abd\n"
        assert term.proc.wait(timeout=5) == 1
    assert term.proc.stderr.read() == b"echoc: echo differs from what was sent\n"


@no_threads
def test_interactive_reports_the_server_hanging_up(peer, terminal):
    term = terminal(target_of(peer))
    conn, _ = peer.accept()
    conn.close()
    # Reported at once, not when the next line is typed.
    assert term.proc.wait(timeout=5) == 1
    assert term.proc.stderr.read().decode() == \
        f"echoc: {target_of(peer)} closed the connection\n"


@pytest.mark.parametrize("model", MODELS)
def test_interactive_once_stops_after_the_first_echo(echod, terminal, model):
    srv = echod("--once", "-m", model)
    term = terminal("--once", srv.target)
    term.type(b"only this\n")
    assert term.read_until(b"only this\n") == b"only this\n"
    assert term.proc.wait(timeout=5) == 0


# ---------------------------------------------------------------------------
# Command line


@pytest.mark.parametrize("args, names", [
    (["--timeout", "abc", "127.0.0.1:1", "x"], "--timeout"),
    (["-t", "0", "127.0.0.1:1", "x"], "--timeout"),
    (["-t"], "--timeout"),
    (["--bogus", "127.0.0.1:1"], "--bogus"),
    (["127.0.0.1:99999", "x"], "99999"),
])
@no_threads
def test_usage_error_names_the_option_and_exits_2(run_echoc, args, names):
    res = run_echoc(*args)
    assert res.returncode == 2
    assert res.stdout == b""
    assert names in one_stderr_line(res)


@no_threads
def test_sub_millisecond_timeout_is_accepted(run_echoc):
    # -t below the 1 ms resolution is rounded up to 1 ms, not refused as 0.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        res = run_echoc("-t", "0.0004", f"127.0.0.1:{port}", "hello")
    assert res.returncode == 1
    assert one_stderr_line(res) == f"echoc: connect 127.0.0.1:{port}: Connection refused"


@no_threads
def test_help_lists_every_option(run_echoc):
    res = run_echoc("--help")
    assert res.returncode == 0
    for opt in ("--timeout", "--once", "--no-newline", "--help", "--version"):
        assert opt.encode() in res.stdout
    assert res.stderr == b""


@no_threads
def test_version(run_echoc):
    res = run_echoc("-V")
    assert res.returncode == 0
    assert re.fullmatch(rb"echoc \d+\.\d+\.\d+\n", res.stdout)
