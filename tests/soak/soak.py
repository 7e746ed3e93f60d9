#!/usr/bin/python3
"""soak - a bounded run of mixed, hostile clients against every echod engine.

    make soak                      60 s per engine
    SOAK_S=600 make soak           longer
    tests/soak/soak.py [MODEL...]  the same, directly (default: every model)

For each engine, echod runs with 3 workers (where the engine takes workers),
--udp, a --udp-rate, an --idle-timeout and a --max-conns that the floods
exceed, logging with -v in JSON.  Client threads pick, at random, one of:

  echo          ping-pong of random sizes (1 B .. 256 KiB), every byte verified
  halfclose     up to 1 MiB sent while reading, then SHUT_WR; the whole echo, then EOF
  reset         a random amount sent, part of the echo read, then a RST
  noread        sends until TCP pushes back and never reads: echod must close it
                after --idle-timeout
  idle          one verified echo, then silence: echod must close it after --idle-timeout
  flood         more connections at once than --max-conns; each echo verified
  udp_flood     3x the --udp-rate at once from one address; every answer verified,
                no more answered than the limit allows
  udp_guarded   datagrams from well-known service ports (7, 9, 19, ...): never answered
  udp_echo      a few datagrams within the limit, each answer verified

A warm-up of the same mix comes first, until echod's RSS stops rising (2 to
20 s); then, with no client left and echod settled, the baseline is taken:
descriptors (/proc/PID/fd), threads and VmRSS.  After the run, once every client is gone, echod must come back to the same
descriptors and threads exactly, and to the baseline RSS within RSS_MARGIN_KIB.
Other violations: any mismatched byte, a client that hung or was refused
service, more descriptors at once than --max-conns allows, an answered guarded
port, echod not exiting 0 on SIGTERM, and any error line in its log (see
classify_log_line).  A table of the figures is printed; the exit status is 1
on any violation.

The iterative engine serves one client at a time, so it gets 2 client threads
(one served, one waiting in the backlog) and floods of 4 connections; the
others get 8 client threads and floods of --max-conns + 8.

Environment: SOAK_S (seconds per engine, default 60), SOAK_MODELS (else
ECHOD_MODELS), ECHOD_BIN (default build/echod), SOAK_LOGDIR (echod's logs,
default build/soak), SOAK_SEED (the run prints its seed), SOAK_URING_WORKERS,
SOAK_URING_BUFS, SOAK_RSS_MARGIN_KIB (-1: no RSS check, for sanitizer builds).
Standard library only; loopback only (127.0.0.0/8); needs root for the
guarded ports below 1024 (without it that client kind is skipped, and said).
"""

import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ECHOD = os.environ.get("ECHOD_BIN", os.path.join(ROOT, "build", "echod"))
LOGDIR = os.environ.get("SOAK_LOGDIR", os.path.join(ROOT, "build", "soak"))
MODELS = ["iterative", "threads", "epoll", "uring"]

WORKERS = 3
URING_WORKERS = int(os.environ.get("SOAK_URING_WORKERS", str(WORKERS)))
# uring's provided-buffer ring is used in turn, a few pages of a buffer at a
# time, so its RSS rises for tens of seconds until the whole ring (4 MiB per worker by
# default) has been touched: no warm-up of a few seconds reaches that plateau.
# The soak gives it 32 buffers per worker (ECHOD_URING_BUFS, echod's test-only
# knob): the ring is warm within the warm-up, and running dry, with reads
# waiting for buffers, is part of the soak.  SOAK_URING_BUFS=0: the default ring.
URING_BUFS = os.environ.get("SOAK_URING_BUFS", "32")
IDLE_TIMEOUT = 2.0
MAX_CONNS = 16
UDP_RATE = 200
GRACE = 5
# How late echod may close an idle connection, on a loaded 2-CPU machine.
CLOSE_SLACK = 2.0
# Longest a verified exchange may take: a flood waits for slots, which clients
# holding them give back within the idle timeout.
EXCHANGE_TIMEOUT = 20.0
# RSS after the run may exceed the post-warm-up baseline by at most this much:
# allocator caches and page-granular heaps move by a few hundred KiB; a leak
# per connection over thousands of connections shows far above it.
# Sanitizer builds grow by design (ASan's quarantine, TSan's shadow): give them
# SOAK_RSS_MARGIN_KIB=-1 (no RSS check); every other check still holds.
RSS_MARGIN_KIB = int(os.environ.get("SOAK_RSS_MARGIN_KIB", "2048"))
SETTLE_TIMEOUT = 20.0
WARMUP_MIN_S, WARMUP_MAX_S, WARMUP_FLAT_S, WARMUP_STEP_KIB = 2.0, 20.0, 2.0, 64
GUARDED_PORTS = [7, 9, 13, 17, 19, 37]
TCP_CLOSE, TCP_CLOSE_WAIT = 7, 8

# Warnings the clients above provoke on purpose; every other warning is an error line.
EXPECTED_WARNINGS = [
    re.compile(r"^udp: not answering 127\.\d+\.\d+\.\d+:\d+: "
               r"(source port is a well-known UDP service \(loop guard\)|over --udp-rate)"
               r"( \(and \d+ more like it since the last report\))?$"),
]
# Defects known and being fixed elsewhere: (model, pattern of the violation,
# the defect).  Such a violation is printed as KNOWN and does not fail the run;
# delete the entry with the fix, so that the soak guards it from then on.
KNOWN_DEFECTS = []
LISTENING_RE = re.compile(r"^echod: listening on (tcp|udp) (\S+)$")


# ---------------------------------------------------------------------------
# Reading the server's state.

def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def snapshot(pid):
    return {"fds": open_fds(pid), "threads": proc_status(pid, "Threads"),
            "rss": proc_status(pid, "VmRSS")}


def classify_log_line(line):
    """"ok", or why the line is an error line.

    Fine: echod's plain "listening on" lines, and JSON lines at level debug or
    info, or at level warn when they match EXPECTED_WARNINGS.  Error lines:
    every line at level error, every other warning, and any line that is not
    one of echod's own (a crash, a sanitizer report, a torn line).
    """
    if LISTENING_RE.match(line):
        return "ok"
    try:
        rec = json.loads(line)
        level, msg = rec["level"], rec["msg"]
    except (ValueError, KeyError, TypeError):
        return "not an echod log line"
    if level in ("debug", "info"):
        return "ok"
    if level == "warn" and any(p.match(msg) for p in EXPECTED_WARNINGS):
        return "ok"
    return f"level {level}"


# ---------------------------------------------------------------------------
# Figures the clients add to, shared by every client thread.

class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.failures = []

    def add(self, **kv):
        with self.lock:
            for k, v in kv.items():
                self.counts[k] = self.counts.get(k, 0) + v

    def fail(self, kind, what):
        with self.lock:
            self.counts["failures"] = self.counts.get("failures", 0) + 1
            if len(self.failures) < 20:
                self.failures.append(f"{kind}: {what}")

    def get(self, k):
        return self.counts.get(k, 0)


def mismatched(expected, got):
    """Bytes of got that differ from expected, plus the missing or extra ones."""
    n = min(len(expected), len(got))
    diff = sum(1 for a, b in zip(expected[:n], got[:n]) if a != b) if expected[:n] != got[:n] else 0
    return diff + abs(len(expected) - len(got))


class Hang(Exception):
    pass


# ---------------------------------------------------------------------------
# TCP clients.

def connect(port, timeout=EXCHANGE_TIMEOUT):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def set_linger_reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def duplex(sock, payload, want, shut_wr, timeout=EXCHANGE_TIMEOUT):
    """Sends payload while reading; stops after want bytes (or EOF with
    shut_wr, after a SHUT_WR once everything is sent).  Returns the bytes
    received and whether EOF was seen.  Raises Hang past timeout."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    view, sent, out, eof = memoryview(payload), 0, bytearray(), False
    while not eof and (len(out) < want or (shut_wr and sent == len(payload) and not eof)):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Hang(f"sent {sent} of {len(payload)}, received {len(out)} in {timeout} s")
        r, w, _ = select.select([sock], [sock] if sent < len(payload) else [], [], left)
        if w:
            try:
                sent += sock.send(view[sent:sent + 262144])
            except BlockingIOError:
                pass
            if sent == len(payload) and shut_wr:
                sock.shutdown(socket.SHUT_WR)
        if r:
            chunk = sock.recv(262144)
            eof = not chunk
            out += chunk
    sock.setblocking(True)
    return bytes(out), eof


def random_size(rng, top):
    """Sizes spread evenly over orders of magnitude, 1 B to top."""
    return max(1, int(2 ** rng.uniform(0, top.bit_length() - 1)))


def client_echo(ctx, rng):
    with connect(ctx.port) as s:
        ctx.tally.add(conns=1)
        for _ in range(rng.randint(1, 6)):
            payload = rng.randbytes(random_size(rng, 256 * 1024))
            got, _ = duplex(s, payload, len(payload), shut_wr=False)
            ctx.verified(payload, got)


def client_halfclose(ctx, rng):
    payload = rng.randbytes(random_size(rng, 1 << 20))
    with connect(ctx.port) as s:
        ctx.tally.add(conns=1)
        got, eof = duplex(s, payload, len(payload), shut_wr=True)
        ctx.verified(payload, got)
        if not eof:
            ctx.tally.fail("halfclose", "no EOF after the echo of a half-closed connection")


def client_reset(ctx, rng):
    payload = rng.randbytes(rng.randint(10_000, 500_000))
    with connect(ctx.port) as s:
        ctx.tally.add(conns=1)
        got, _ = duplex(s, payload, rng.randint(1, len(payload) // 2), shut_wr=False)
        ctx.verified(payload[:len(got)], got)  # what came back so far is the echo
        set_linger_reset(s)


def tcp_state(sock):
    return struct.unpack("B", sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1))[0]


def wait_closed_by_server(ctx, sock, kind, since):
    """Waits (bounded) until echod has closed sock: FIN or RST received."""
    limit = IDLE_TIMEOUT + CLOSE_SLACK
    while time.monotonic() - since < limit:
        if tcp_state(sock) in (TCP_CLOSE, TCP_CLOSE_WAIT):
            ctx.tally.add(closed_by_idle_timeout=1)
            return
        time.sleep(0.05)  # polling a state, bounded by limit
    ctx.tally.fail(kind, f"still open {limit:.1f} s after its last byte (--idle-timeout "
                         f"{IDLE_TIMEOUT})")


def client_noread(ctx, rng):
    with connect(ctx.port) as s:
        ctx.tally.add(conns=1)
        # One echo first: the connection is being served, not waiting in the
        # backlog, so echod's idle timer runs from the last byte it takes.
        ping = rng.randbytes(16)
        got, _ = duplex(s, ping, len(ping), shut_wr=False)
        ctx.verified(ping, got)
        s.setblocking(False)
        chunk, pushed, last = rng.randbytes(65536), 0, time.monotonic()
        deadline = last + EXCHANGE_TIMEOUT
        while time.monotonic() - last < 0.3 and time.monotonic() < deadline:
            try:
                pushed += s.send(chunk)
                last = time.monotonic()
            except BlockingIOError:
                select.select([], [s], [], 0.05)
            except (ConnectionResetError, BrokenPipeError):
                break  # echod closed it already: the idle timeout counts from `last`
        if time.monotonic() >= deadline:
            ctx.tally.fail("noread", f"TCP never pushed back ({pushed} bytes taken)")
            return
        wait_closed_by_server(ctx, s, "noread", last)
        set_linger_reset(s)


def client_idle(ctx, rng):
    with connect(ctx.port) as s:
        ctx.tally.add(conns=1)
        msg = rng.randbytes(rng.randint(1, 100))
        got, _ = duplex(s, msg, len(msg), shut_wr=False)
        ctx.verified(msg, got)
        last = time.monotonic()
        s.settimeout(IDLE_TIMEOUT + CLOSE_SLACK)
        try:
            rest = s.recv(1)
        except socket.timeout:
            ctx.tally.fail("idle", f"not closed within {IDLE_TIMEOUT + CLOSE_SLACK:.1f} s")
            return
        except ConnectionResetError:
            rest = b""
        waited = time.monotonic() - last
        if rest:
            ctx.tally.fail("idle", f"unexpected byte {rest!r}")
        elif waited < IDLE_TIMEOUT * 0.9:
            ctx.tally.fail("idle", f"closed after {waited:.2f} s, before --idle-timeout")
        else:
            ctx.tally.add(closed_by_idle_timeout=1)


def client_flood(ctx, rng):
    """ctx.flood connections at once, more than --max-conns: each keeps its
    connection after its echo, so the last ones are served only when echod's
    idle timeout frees the slots of the first ones."""
    socks = []
    try:
        for _ in range(ctx.flood):
            socks.append(connect(ctx.port))
        ctx.tally.add(conns=len(socks))
        msgs = {s: rng.randbytes(64) for s in socks}
        for s in socks:
            s.sendall(msgs[s])
        got = {s: b"" for s in socks}
        deadline = time.monotonic() + EXCHANGE_TIMEOUT
        while got and time.monotonic() < deadline:
            ready, _, _ = select.select(list(got), [], [], deadline - time.monotonic())
            for s in ready:
                chunk = s.recv(64 - len(got[s]))
                got[s] += chunk
                if not chunk or len(got[s]) == 64:
                    ctx.verified(msgs[s], got.pop(s))
        if got:
            raise Hang(f"{len(got)} of {len(socks)} flood connections never echoed")
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------
# UDP clients.  Each client thread has source addresses of its own, so the
# per-source rate limit of one does not count another's datagrams.

def udp_socket(source, port=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, port))
    return s


def datagram(rng, seq):
    return struct.pack("!I", seq) + rng.randbytes(rng.randint(4, 1200))


def collect_answers(ctx, s, sent, quiet):
    """Reads answers until none came for quiet seconds; verifies each."""
    answered = 0
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([s], [], [], quiet)
        if not ready:
            break
        data = s.recv(65536)
        seq = struct.unpack("!I", data[:4])[0] if len(data) >= 4 else -1
        ctx.verified(sent.get(seq, b""), data)
        answered += 1
    return answered


def client_udp_flood(ctx, rng):
    n = 3 * UDP_RATE
    with udp_socket(ctx.source("flood")) as s:
        start = time.monotonic()
        sent = {}
        for seq in range(n):
            sent[seq] = datagram(rng, seq)
            try:
                s.sendto(sent[seq], ("127.0.0.1", ctx.port))
            except OSError:
                pass  # a full socket buffer: that datagram is simply lost
        answered = collect_answers(ctx, s, sent, quiet=0.3)
        elapsed = time.monotonic() - start
    ctx.tally.add(udp_sent=n, udp_answered=answered)
    # A burst of one second's worth, then UDP_RATE a second (+10% for timing).
    allowed = int(UDP_RATE + UDP_RATE * elapsed * 1.1) + 1
    if answered > allowed:
        ctx.tally.fail("udp_flood", f"{answered} of {n} answered in {elapsed:.2f} s; "
                                    f"--udp-rate {UDP_RATE} allows {allowed}")


def client_udp_guarded(ctx, rng):
    if not ctx.can_bind_low:
        return
    port = rng.choice(GUARDED_PORTS)
    try:
        s = udp_socket(ctx.source("guarded"), port)
    except OSError:
        return  # taken by someone else on this machine
    with s:
        for seq in range(20):
            s.sendto(datagram(rng, seq), ("127.0.0.1", ctx.port))
        ctx.tally.add(udp_guarded_sent=20)
        # A measurement window: an answer must NOT come.
        ready, _, _ = select.select([s], [], [], 0.3)
        if ready:
            ctx.tally.fail("udp_guarded", f"answered a datagram from guarded port {port}")


def client_udp_echo(ctx, rng):
    with udp_socket(ctx.source("echo")) as s:
        sent = {}
        for seq in range(5):
            sent[seq] = datagram(rng, seq)
            s.sendto(sent[seq], ("127.0.0.1", ctx.port))
        answered = collect_answers(ctx, s, sent, quiet=1.0)
    ctx.tally.add(udp_sent=5, udp_answered=answered)
    if answered < 5:
        ctx.tally.fail("udp_echo", f"{answered} of 5 datagrams answered, within the rate limit")


CLIENTS = [  # (kind, function, weight)
    ("echo", client_echo, 30),
    ("halfclose", client_halfclose, 15),
    ("reset", client_reset, 10),
    ("noread", client_noread, 4),
    ("idle", client_idle, 4),
    ("flood", client_flood, 5),
    ("udp_flood", client_udp_flood, 3),
    ("udp_guarded", client_udp_guarded, 3),
    ("udp_echo", client_udp_echo, 10),
]


class Context:
    """What a client thread needs: the server's port, the tally, its addresses."""

    def __init__(self, port, tally, index, flood, can_bind_low):
        self.port, self.tally, self.index = port, tally, index
        self.flood, self.can_bind_low = flood, can_bind_low
        self.doing = ("nothing", time.monotonic())

    def source(self, role):
        # 127.0.R.I: one address per client thread and role (rate limits are per address).
        r = {"flood": 2, "guarded": 3, "echo": 4}[role]
        return f"127.0.{r}.{self.index + 1}"

    def verified(self, expected, got):
        bad = mismatched(expected, got)
        self.tally.add(bytes_verified=len(got), mismatched_bytes=bad)
        if bad:
            self.tally.fail("mismatch", f"{bad} bytes of {len(expected)} differ")


def client_thread(ctx, seed, until, kinds):
    rng = random.Random(seed)
    names, weights = [k[:2] for k in kinds], [k[2] for k in kinds]
    while not until():
        kind, fn = rng.choices(names, weights)[0]
        ctx.doing = (kind, time.monotonic())
        try:
            fn(ctx, rng)
            ctx.tally.add(**{f"runs_{kind}": 1})
        except Hang as e:
            ctx.tally.fail(kind, f"hang: {e}")
        except OSError as e:
            ctx.tally.fail(kind, repr(e))
        except Exception as e:  # a bug of the soak itself: say so, go on
            ctx.tally.fail(kind, f"soak client error: {e!r}")


def start_clients(port, tally, until, nthreads, flood, seed):
    """nthreads client threads, each running client kinds until until()."""
    can_bind_low = os.geteuid() == 0
    threads = []
    for i in range(nthreads):
        ctx = Context(port, tally, i, flood, can_bind_low)
        t = threading.Thread(target=client_thread, args=(ctx, seed * 1000 + i, until, CLIENTS),
                             daemon=True)
        t.start()
        threads.append((t, ctx))
    return threads


def join_clients(threads, tally, end):
    # Every client kind ends within EXCHANGE_TIMEOUT (+ its idle wait) of the end.
    deadline = max(end, time.monotonic()) + 2 * EXCHANGE_TIMEOUT
    for t, ctx in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            kind, since = ctx.doing
            tally.fail(kind, f"client thread {ctx.index} still running {kind} after "
                             f"{time.monotonic() - since:.0f} s: a hang in the client or server")


def run_clients(port, tally, seconds, nthreads, flood, seed):
    end = time.monotonic() + seconds
    join_clients(start_clients(port, tally, lambda: time.monotonic() >= end, nthreads, flood,
                               seed), tally, end)


def warm_up(pid, port, tally, nthreads, flood, seed):
    """The same mix until echod's RSS made no new high (by more than
    WARMUP_STEP_KIB) for WARMUP_FLAT_S, within WARMUP_MIN_S .. WARMUP_MAX_S:
    buffer pools, rings and allocator arenas fill up in the first seconds.
    Returns how long it took."""
    start = time.monotonic()
    state = {"high": 0, "since": start}

    def enough():
        now = time.monotonic()
        rss = proc_status(pid, "VmRSS")
        if rss > state["high"] + WARMUP_STEP_KIB:
            state["high"], state["since"] = rss, now
        flat = now - state["since"] >= WARMUP_FLAT_S
        return now - start >= WARMUP_MAX_S or (now - start >= WARMUP_MIN_S and flat)

    stop = threading.Event()
    threads = start_clients(port, tally, stop.is_set, nthreads, flood, seed)
    while not enough():
        time.sleep(0.1)  # sampling RSS, bounded by WARMUP_MAX_S
    stop.set()
    join_clients(threads, tally, time.monotonic())
    return time.monotonic() - start


# ---------------------------------------------------------------------------
# The server under test.

class Unavailable(Exception):
    pass


class Echod:
    def __init__(self, model, logpath):
        workers = {"epoll": WORKERS, "uring": URING_WORKERS}.get(model)
        self.workers = workers or 1
        self.args = [ECHOD, "-m", model, "-l", "127.0.0.1:0", "--udp",
                     "--udp-rate", str(UDP_RATE), "--idle-timeout", str(IDLE_TIMEOUT),
                     "--max-conns", str(MAX_CONNS), "--grace", str(GRACE),
                     "-v", "--log-format", "json"]
        if workers:
            self.args += ["-w", str(workers)]
        self.logpath = logpath
        self.log = open(logpath, "w+b")
        env = dict(os.environ)
        env.pop("ECHOD_URING_BUFS", None)
        if model == "uring" and URING_BUFS != "0":
            env["ECHOD_URING_BUFS"] = URING_BUFS
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, env=env,
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        self.port = None

    def lines(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace").splitlines()

    def wait_listening(self, timeout=10.0):
        try:
            self._wait_listening(timeout)
        except RuntimeError:
            # uring refuses to start where the kernel or the build cannot run
            # it, with its reason: that skips the engine rather than fails it.
            if "uring" in self.args and self.proc.poll() == 1 and not any(
                    LISTENING_RE.match(ln) for ln in self.lines()):
                raise Unavailable((self.lines() or ["no reason given"])[-1])
            raise

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            kinds = {}
            for line in self.lines():
                m = LISTENING_RE.match(line)
                if m:
                    kinds[m.group(1)] = int(m.group(2).rsplit(":", 1)[1])
            if "tcp" in kinds and "udp" in kinds:
                self.port = kinds["tcp"]
                return
            time.sleep(0.05)  # polling the log file for the start-up lines, bounded
        raise RuntimeError(f"echod did not start: {' '.join(self.args)}: {self.lines()[-5:]}")

    def stop(self):
        """SIGTERM, then a bounded wait; returns the exit status (None: killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(GRACE + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None
        finally:
            self.log.close()


class Monitor(threading.Thread):
    """Samples the server's descriptors and threads, to catch their peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak_fds, self.peak_threads = pid, 0, 0
        self.rss = []  # one sample a second, to show a trend
        # How late this thread woke: a machine (or VM) stalled longer than the
        # idle timeout makes echod close active connections, rightly.
        self.max_lag = 0.0
        self.stopping = threading.Event()

    def run(self):
        while True:
            t0 = time.monotonic()
            if self.stopping.wait(0.1):
                return
            self.max_lag = max(self.max_lag, time.monotonic() - t0 - 0.1)
            try:
                snap = snapshot(self.pid)
            except (OSError, RuntimeError):
                return
            self.peak_fds = max(self.peak_fds, snap["fds"])
            self.peak_threads = max(self.peak_threads, snap["threads"])
            self.samples = getattr(self, "samples", 0) + 1
            if self.samples % 10 == 0:
                self.rss.append(snap["rss"])


def settle(pid, done, timeout=SETTLE_TIMEOUT):
    """Polls echod's state until done(state) or the deadline; returns the last state."""
    deadline = time.monotonic() + timeout
    history = []
    while True:
        history.append(snapshot(pid))
        if done(history) or time.monotonic() >= deadline:
            return history[-1]
        time.sleep(0.1)  # polling /proc, bounded by the deadline


def steady(history, samples=10):
    """True when descriptors and threads did not change over the last samples (1 s)."""
    last = history[-samples:]
    return len(last) == samples and all((s["fds"], s["threads"]) ==
                                        (last[0]["fds"], last[0]["threads"]) for s in last)


# ---------------------------------------------------------------------------

def soak_engine(model, seconds, seed):
    iterative = model == "iterative"
    nthreads, flood = (2, 4) if iterative else (8, MAX_CONNS + 8)
    os.makedirs(LOGDIR, exist_ok=True)
    srv = Echod(model, os.path.join(LOGDIR, f"echod-{model}.log"))
    r = {"model": model, "workers": srv.workers, "violations": []}
    tally, warm = Tally(), Tally()
    try:
        srv.wait_listening()
        pid = srv.proc.pid
        r["warmup_s"] = warm_up(pid, srv.port, warm, nthreads, flood, seed)
        base = settle(pid, steady)
        monitor = Monitor(pid)
        monitor.start()
        run_clients(srv.port, tally, seconds, nthreads, flood, seed + 1)
        monitor.stopping.set()
        monitor.join(5)
        end = settle(pid, lambda h: (h[-1]["fds"], h[-1]["threads"]) ==
                     (base["fds"], base["threads"]))
        r.update(base=base, end=end, peak_fds=monitor.peak_fds, peak_threads=monitor.peak_threads,
                 max_lag=monitor.max_lag,
                 rss_trend=[monitor.rss[len(monitor.rss) * q // 4] for q in range(4)]
                 if monitor.rss else [])
    finally:
        r["status"] = srv.stop()
    r["tally"] = tally
    r["conns"] = tally.get("conns") + warm.get("conns")
    tally.failures[:0] = [f"warm-up: {f}" for f in warm.failures]
    judge(r, srv.lines(), iterative)
    return r


def judge(r, lines, iterative):
    v, t = r["violations"], r["tally"]
    base, end = r["base"], r["end"]
    if end["fds"] != base["fds"]:
        v.append(f"descriptors {base['fds']} -> {end['fds']}")
    if end["threads"] != base["threads"]:
        v.append(f"threads {base['threads']} -> {end['threads']}")
    if RSS_MARGIN_KIB >= 0 and end["rss"] - base["rss"] > RSS_MARGIN_KIB:
        v.append(f"RSS grew {end['rss'] - base['rss']} KiB (margin {RSS_MARGIN_KIB})")
    held = 1 if iterative else MAX_CONNS
    if r["peak_fds"] > base["fds"] + held:
        v.append(f"{r['peak_fds'] - base['fds']} connection descriptors at once, "
                 f"--max-conns {MAX_CONNS} allows {held}")
    if t.get("mismatched_bytes"):
        v.append(f"{t.get('mismatched_bytes')} mismatched bytes")
    v.extend(t.failures)
    if r["status"] != 0:
        v.append(f"echod exit status {r['status']} after SIGTERM")
    r["error_lines"] = [ln for ln in lines if classify_log_line(ln) != "ok"]
    v.extend(f"log: {ln[:200]}" for ln in r["error_lines"][:10])
    r["known"] = [(what, why) for what in v for m, pat, why in KNOWN_DEFECTS
                  if m == r["model"] and pat.search(what)]
    known = {what for what, _ in r["known"]}
    v[:] = [what for what in v if what not in known]
    served = [re.search(r"served (\d+) connections", ln) for ln in lines]
    r["accepted"] = next((int(m.group(1)) for m in served if m), None)


def verdict(r):
    if r["violations"]:
        return "FAIL"
    return "ok, known defect" if r["known"] else "ok"


def print_table(results, seconds):
    cols = ["engine", "w", "conns", "accepted", "verified MB", "mismatch", "fds base/end/peak",
            "threads base/end/peak", "RSS KiB base/end", "err lines", "verdict"]
    rows = []
    for r in results:
        t, b, e = r["tally"], r["base"], r["end"]
        rows.append([r["model"], str(r["workers"]), str(r["conns"]), str(r["accepted"]),
                     f"{t.get('bytes_verified') / 1e6:.1f}", str(t.get("mismatched_bytes")),
                     f"{b['fds']}/{e['fds']}/{r['peak_fds']}",
                     f"{b['threads']}/{e['threads']}/{r['peak_threads']}",
                     f"{b['rss']}/{e['rss']} ({e['rss'] - b['rss']:+d})",
                     str(len(r["error_lines"])), verdict(r)])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    margin = f"RSS margin {RSS_MARGIN_KIB} KiB" if RSS_MARGIN_KIB >= 0 else "RSS not checked"
    print(f"\nsoak: {seconds:g} s per engine, after a warm-up; {margin}")
    for row in [cols] + rows:
        print("  ".join(x.rjust(w) for x, w in zip(row, widths)))
    for r in results:
        t = r["tally"]
        kinds = ", ".join(f"{k[5:]} {n}" for k, n in sorted(t.counts.items())
                          if k.startswith("runs_"))
        print(f"\n{r['model']}: warm-up {r['warmup_s']:.1f} s; {kinds}; "
              f"idle closes {t.get('closed_by_idle_timeout')}; "
              f"udp answered {t.get('udp_answered')} of {t.get('udp_sent')}, "
              f"guarded sent {t.get('udp_guarded_sent')}; RSS KiB during the run "
              f"{' '.join(map(str, r['rss_trend']))}; longest scheduling lag {r['max_lag']:.2f} s")
        if r["violations"] and r["max_lag"] >= IDLE_TIMEOUT:
            print(f"  NOTE: the soak's own threads were stalled for {r['max_lag']:.1f} s, longer "
                  f"than --idle-timeout: an overloaded or paused machine; resets and hangs "
                  f"below may be its doing")
        for what in r["violations"]:
            print(f"  VIOLATION: {what}")
        for what, why in r["known"]:
            print(f"  KNOWN DEFECT: {what}: {why}")
        shown = {why for _, why in r["known"]}
        for model, _, why in KNOWN_DEFECTS:
            if model == r["model"] and why not in shown:
                print(f"  NOTE: known defect did not show in this run (fixed? then delete its "
                      f"KNOWN_DEFECTS entry): {why}")


def main(argv):
    models = argv or (os.environ.get("SOAK_MODELS") or os.environ.get("ECHOD_MODELS")
                      or " ".join(MODELS)).split()
    seconds = float(os.environ.get("SOAK_S", "60"))
    seed = int(os.environ.get("SOAK_SEED", str(random.randrange(1 << 30))))
    print(f"soak: {ECHOD}, models {' '.join(models)}, {seconds:g} s each, seed {seed}"
          f"{'' if os.geteuid() == 0 else '; not root: no datagrams from guarded ports'}",
          flush=True)
    results = []
    bad = []
    for model in models:
        print(f"soak: {model} ...", flush=True)
        try:
            results.append(soak_engine(model, seconds, seed))
        except Unavailable as e:
            print(f"soak: {model} skipped: cannot run here: {e}", flush=True)
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            print(f"soak: {model}: could not run: {e}", flush=True)
            bad.append(model)
    print_table(results, seconds)
    bad += [r["model"] for r in results if r["violations"]]
    print(f"\nsoak: {'FAILED on ' + ' '.join(bad) if bad else 'passed'} (logs in {LOGDIR})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
