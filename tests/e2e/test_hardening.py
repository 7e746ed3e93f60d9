"""echod under conditions a hostile client or an unusual start-up creates:
a client that keeps the socket readable forever, standard descriptors closed
by the supervisor, peer names made to forge log lines, a unix socket path that
is taken by a stuck listener, --user with a unix listener, a UDP worker whose
poll(2) fails, and a threads engine that cannot start threads."""

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import ECHOD, MODELS, recv_exactly, recv_until_eof, wait_until

BLOCKING_MODELS = [m for m in MODELS if m in ("iterative", "threads")]
CONN_DRAIN_S = 2.0  # CONN_DRAIN_MS in src/echod/conn.h
MARGIN_S = 3.0      # scheduling slack on a loaded machine
GRACE_S = 0.3       # --grace of the flooding client: long enough to tell a wait from none
FLOOD_MAX_S = 12.0  # a flood never lasts longer than this, fixed or not

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (--user, chown)")


@pytest.fixture
def short_dir():
    """A fresh directory with a short path (unix socket paths are at most 107 bytes)."""
    d = tempfile.mkdtemp(prefix="eh", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Flood:
    """Keeps a connected socket busy from threads: one sends without pause,
    one (with read=True) reads everything that comes back, so the server
    always finds input waiting.  Stops on stop(), on an error, or after
    FLOOD_MAX_S.  send_failed_at is when the server cut the connection."""

    def __init__(self, sock, read):
        self.sock = sock
        self.done = threading.Event()
        self.send_failed_at = None
        self.deadline = time.monotonic() + FLOOD_MAX_S
        sock.settimeout(0.2)
        self.threads = [threading.Thread(target=self._send, daemon=True)]
        if read:
            self.threads.append(threading.Thread(target=self._recv, daemon=True))
        for t in self.threads:
            t.start()

    def _running(self):
        return not self.done.is_set() and time.monotonic() < self.deadline

    def _send(self):
        chunk = b"f" * 65536
        while self._running():
            try:
                self.sock.send(chunk)
            except socket.timeout:
                continue
            except OSError:
                self.send_failed_at = time.monotonic()
                return

    def _recv(self):
        while self._running():
            try:
                if not self.sock.recv(65536):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=5)


# ---------------------------------------------------------------------------
# Deadlines hold while a client keeps the socket readable.

@pytest.mark.parametrize("model", BLOCKING_MODELS)
def test_grace_cuts_off_a_client_that_never_pauses(echod, model):
    srv = echod("-m", model, "--buffer", "1", "--grace", str(GRACE_S))
    s = srv.connect()
    try:
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
        flood = Flood(s, read=True)
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            code = srv.proc.wait(timeout=GRACE_S + MARGIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"echod -m {model} --grace {GRACE_S} still running {GRACE_S + MARGIN_S} s after "
                        "SIGTERM while a client floods")
        finally:
            flood.stop()
        assert code == 0
        assert time.monotonic() - t0 < GRACE_S + MARGIN_S
    finally:
        s.close()


@pytest.mark.parametrize("model", BLOCKING_MODELS)
def test_once_drain_ends_within_its_bound_while_the_client_floods(echod, model):
    srv = echod("-m", model, "--once", "--buffer", "1")
    s = srv.connect()
    try:
        s.sendall(b"x")
        assert recv_until_eof(s) == b"x"
        t0 = time.monotonic()
        flood = Flood(s, read=False)
        wait_until(lambda: flood.send_failed_at is not None, timeout=CONN_DRAIN_S + MARGIN_S)
        flood.stop()
        assert flood.send_failed_at is not None, \
            f"the drain was still open {CONN_DRAIN_S + MARGIN_S} s into the flood"
        assert flood.send_failed_at - t0 < CONN_DRAIN_S + MARGIN_S
    finally:
        s.close()


def test_iterative_serves_the_next_client_after_a_flooders_drain_bound(echod):
    if "iterative" not in MODELS:
        pytest.skip("iterative not in ECHOD_MODELS")
    srv = echod("-m", "iterative", "--once", "--buffer", "1")
    first = srv.connect()
    flood = None
    try:
        first.sendall(b"x")
        assert recv_until_eof(first) == b"x"
        flood = Flood(first, read=False)
        with srv.connect() as second:  # completes in the backlog
            second.sendall(b"y")
            try:
                got = recv_exactly(second, 1, timeout=CONN_DRAIN_S + MARGIN_S)
            except (AssertionError, socket.timeout):
                pytest.fail("the second client was not served while the first one floods")
            assert got == b"y"
    finally:
        if flood:
            flood.stop()
        first.close()


# ---------------------------------------------------------------------------
# Standard descriptors closed by whoever started echod.

def _connects(path):
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
        return True
    except OSError:
        return False


@pytest.mark.parametrize("closed", [(1, 2), (0, 1, 2)], ids=["stdout-stderr", "all-three"])
@pytest.mark.parametrize("model", MODELS)
def test_serves_with_standard_descriptors_closed(short_dir, model, closed):
    # As "echod >&- 2>&-" from a supervisor: nothing to log to, but serving.
    path = os.path.join(short_dir, "s")

    def close_std():
        for fd in closed:
            os.close(fd)

    proc = subprocess.Popen([ECHOD, "-m", model, "-l", f"unix:{path}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=close_std)
    try:
        wait_until(lambda: proc.poll() is not None or _connects(path))
        assert proc.poll() is None, f"echod exited at once with status {proc.returncode}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(path)
            c.sendall(b"still here\n")
            assert recv_exactly(c, 11) == b"still here\n"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------
# Peer-controlled strings cannot forge or corrupt log lines.

FORGED = b"echod: listening on tcp 1.2.3.4:1"
# A client socket name with a newline, a forged line, bytes that are not
# UTF-8 and a terminal escape sequence.
EVIL_NAME = b"c\n" + FORGED + b"\xff\xfe\x1b[2J"


def _serve_evil_client(short_dir, model, *extra):
    """Runs echod -v with a unix listener, lets a client bound to EVIL_NAME
    echo once, stops echod; returns its stderr as raw bytes."""
    path = os.path.join(short_dir, "s")
    log = os.path.join(short_dir, "log")
    with open(log, "wb") as logf:
        proc = subprocess.Popen([ECHOD, "-v", "-m", model, "-l", f"unix:{path}", *extra],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=logf)
    try:
        wait_until(lambda: proc.poll() is not None or _connects(path))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.bind(os.path.join(short_dir.encode(), EVIL_NAME))
            c.settimeout(5)
            c.connect(path)
            c.sendall(b"hi\n")
            assert recv_exactly(c, 3) == b"hi\n"
        assert wait_until(lambda: b'peer="' + short_dir.encode() in open(log, "rb").read()
                          or b'"peer":"' + short_dir.encode() in open(log, "rb").read()), \
            "echod -v did not log the connection"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    with open(log, "rb") as f:
        return f.read().splitlines()


@pytest.mark.parametrize("model", MODELS)
def test_text_log_escapes_a_peer_name_that_forges_a_line(short_dir, model):
    lines = _serve_evil_client(short_dir, model)
    assert not [ln for ln in lines if ln.startswith(FORGED)], lines
    for ln in lines:
        assert all(0x20 <= b < 0x7f for b in ln), f"raw control or non-ASCII byte in {ln!r}"
    conn = [ln for ln in lines
            if b"connection ended " in ln and b'peer="' + short_dir.encode() in ln]
    assert len(conn) == 1, lines
    # Quoted, as the name holds spaces.
    assert conn[0].endswith(b"c\\x0a" + FORGED + b"\\xff\\xfe\\x1b[2J\""), conn[0]


@pytest.mark.parametrize("model", MODELS)
def test_json_log_stays_valid_with_a_hostile_peer_name(short_dir, model):
    lines = _serve_evil_client(short_dir, model, "--log-format", "json")
    objs = []
    for ln in lines:
        if ln.startswith(b"echod: listening on "):
            continue  # always plain text, by contract
        assert not ln.startswith(FORGED), lines
        objs.append(json.loads(ln.decode("utf-8")))  # strict: valid UTF-8 and JSON
    conn = [o["peer"] for o in objs
            if o["msg"] == "connection ended" and o["peer"].startswith(short_dir)]
    assert len(conn) == 1, objs
    # Bytes that are not UTF-8 come out as the code point of the same number.
    assert conn[0].endswith("c\n" + FORGED.decode() + "\u00ff\u00fe\u001b[2J"), conn[0]


# ---------------------------------------------------------------------------
# Unix listeners at start-up.

def test_unix_path_held_by_a_listener_with_a_full_backlog_is_in_use(short_dir):
    path = os.path.join(short_dir, "s")
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.bind(path)
    holder.listen(1)  # and never accepts
    queued = []
    try:
        for _ in range(1000):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            queued.append(c)
            try:
                c.connect(path)
            except BlockingIOError:
                break  # the backlog is full: a blocking connect would now wait
        else:
            pytest.fail("could not fill the listener's backlog")
        try:
            r = subprocess.run([ECHOD, "-l", f"unix:{path}"], capture_output=True, text=True,
                               timeout=10, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail("echod hung at start-up checking whether the socket is stale")
        assert r.returncode == 1, r.stderr
        assert path in r.stderr and "in use" in r.stderr, r.stderr
        assert os.path.exists(path), "echod removed a live listener's socket"
    finally:
        for c in queued:
            c.close()
        holder.close()


NOBODY = 65534


def _connect_as_nobody(path):
    """Runs a one-echo unix client as nobody; returns the CompletedProcess."""
    script = ("import socket, sys\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
              "s.settimeout(5)\n"
              f"s.connect({path!r})\n"
              "s.sendall(b'as nobody\\n')\n"
              "sys.stdout.write(s.recv(100).decode())\n")
    return subprocess.run(["/usr/bin/python3", "-c", script], capture_output=True, text=True,
                          timeout=10, user=NOBODY, group=NOBODY, extra_groups=[],
                          stdin=subprocess.DEVNULL)


@needs_root
def test_user_can_connect_to_the_unix_socket_it_serves(echod, short_dir):
    os.chmod(short_dir, 0o755)  # nobody may enter but not write
    path = os.path.join(short_dir, "s")
    srv = echod("-l", f"unix:{path}", "--user", "nobody")
    st = os.lstat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    r = _connect_as_nobody(path)
    assert r.returncode == 0 and r.stdout == "as nobody\n", r.stderr
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


@needs_root
def test_user_removes_its_unix_socket_in_a_directory_it_may_write(echod, short_dir):
    os.chmod(short_dir, 0o1777)  # like /tmp
    path = os.path.join(short_dir, "s")
    srv = echod("-l", f"unix:{path}", "--user", "nobody")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    assert not os.path.exists(path)
    assert not [ln for ln in srv.stderr_lines if "remove" in ln], srv.stderr_lines


@needs_root
def test_user_reports_a_unix_socket_it_cannot_remove(echod, short_dir):
    os.chmod(short_dir, 0o755)
    path = os.path.join(short_dir, "s")
    srv = echod("-l", f"unix:{path}", "--user", "nobody")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    warned = [ln for ln in srv.stderr_lines if "remove" in ln]
    assert len(warned) == 1 and path in warned[0] and "Permission denied" in warned[0], \
        srv.stderr_lines
    # The next start, as root, takes the stale file over.
    again = echod("-l", f"unix:{path}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(path)
        c.sendall(b"again\n")
        assert recv_exactly(c, 6) == b"again\n"
    again.signal(signal.SIGTERM)
    assert again.wait_exit() == 0


# ---------------------------------------------------------------------------
# Failures inside a worker are logged once and survived.

def _udp_echo(port, data, timeout=5.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(timeout)
        u.sendto(data, ("127.0.0.1", port))
        try:
            return u.recv(100)
        except socket.timeout:
            return None


def _assert_serving(srv, udp_port):
    """Both the UDP worker and the TCP engine are past their set-up (which
    opens descriptors) once each has echoed."""
    assert _udp_echo(udp_port, b"before") == b"before"
    with srv.connect() as s:
        s.sendall(b"tcp\n")
        assert recv_exactly(s, 4) == b"tcp\n"


def test_udp_worker_keeps_serving_after_a_poll_error(echod):
    # epoll: its workers wait in epoll_wait(2), which RLIMIT_NOFILE leaves
    # alone, so only the UDP worker's poll(2) (3 descriptors) fails.
    srv = echod("--udp", "-m", "epoll", "-w", "1", "--udp-rate", "0", listeners=2)
    udp_port = int([a for k, a in srv.listening if k == "udp"][0].rsplit(":", 1)[1])
    _assert_serving(srv, udp_port)
    limit = resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (2, limit[1]))
    try:
        _udp_echo(udp_port, b"wake", timeout=1)  # served; the next poll(2) fails
        srv.wait_for_line(r"udp: poll")
        # Measurement window: the failing poll is retried without a line each time.
        time.sleep(0.5)
    finally:
        resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, limit)
    assert srv.proc.poll() is None
    assert _udp_echo(udp_port, b"after") == b"after", "the UDP worker stopped serving"
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    assert len([ln for ln in srv.stderr_lines if "udp: poll" in ln]) == 1, srv.stderr_lines


def _without_leak_check():
    """The environment for an echod that exits under a fault: LeakSanitizer
    needs to open files and start a thread at exit, which the fault forbids
    (every other sanitizer check stays on; plain builds ignore this)."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return dict(os.environ, ASAN_OPTIONS=f"{opts}:detect_leaks=0" if opts else "detect_leaks=0")


def test_udp_worker_stuck_on_poll_errors_still_stops(echod):
    srv = echod("--udp", "-m", "epoll", "-w", "1", "--udp-rate", "0", listeners=2,
                env=_without_leak_check())
    udp_port = int([a for k, a in srv.listening if k == "udp"][0].rsplit(":", 1)[1])
    _assert_serving(srv, udp_port)
    limit = resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(srv.proc.pid, resource.RLIMIT_NOFILE, (2, limit[1]))
    _udp_echo(udp_port, b"wake", timeout=1)
    srv.wait_for_line(r"udp: poll")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


@needs_root
def test_threads_failing_to_start_threads_log_once(echod):
    if "threads" not in MODELS:
        pytest.skip("threads not in ECHOD_MODELS")
    with open(ECHOD, "rb") as f:
        if b"libtsan.so" in f.read():
            pytest.skip("ThreadSanitizer starts threads of its own: RLIMIT_NPROC cannot single "
                        "out the connection threads")
    # RLIMIT_NPROC binds once echod is nobody (root is exempt).  After the
    # drop echod starts one thread of its own, the signal thread (after the
    # sandbox, which must cover it): at 2, that one starts and every
    # connection thread fails to.
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    srv = echod("-m", "threads", "--user", "nobody", env=_without_leak_check(),
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NPROC, (2, hard)))
    for _ in range(10):
        with srv.connect() as s:
            s.sendall(b"x")
            try:
                assert recv_until_eof(s) == b""  # refused, not left in the backlog
            except ConnectionResetError:
                pass
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    refusals = [ln for ln in srv.stderr_lines if "cannot start a connection thread" in ln]
    assert len(refusals) == 1, srv.stderr_lines
