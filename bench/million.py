#!/usr/bin/python3
"""bench/million.py - `make bench SUITE=million`: how many idle connections echod holds.

  bench/million.py ECHOD ECHOC OUTDIR      (bench/run.sh million calls it)

Environment: MILLION_CONNS (default 1000000), the phase 2 target;
MILLION_ENGINES (default "epoll uring"), the engines of phase 1;
MILLION_PING_RATE (default 5000), phase 2's pings per second over all loads.

Phase 1, one process at its cap: one echod (-w 1) per engine, filled with
idle connections up to the capacity it announces (its RLIMIT_NOFILE less its
own descriptors), from two `echoc bench --mode idle` processes, since echoc
has the same per-process cap.  Phase 2, past it: N echod -m epoll instances
on one port, each given its own SO_REUSEPORT listening socket as descriptor 3
with LISTEN_FDS=1 (systemd's ReusePort= socket activation, docs/scaling.md),
and M echoc processes, each under its own descriptor cap and on its own pair
of source addresses in 127.1.0.0/16, so the default ephemeral port range
suffices (no system setting is changed).  Before phase 2 the memory one
connection took in phase 1 is checked against MemAvailable, keeping 2 GiB
free; if it does not fit the target is lowered and the report says so, and
if MemAvailable falls below 2 GiB during the run the load stops there.

Each echoc says in one line when all its connections are up and holds them
silent (--ping-on-usr1); once every load has said so, the memory figures are
read, then every load gets SIGUSR1 and each connection echoes one 16-byte
message (--pings 1), verified byte for byte, so the ping is measured with
every connection held and none being set up.  The figures:
  - connections held: the sum of the echoc processes' "up" counts
  - set-up rate: connections over the time until the last one was up
  - echod user memory per connection: the growth of echod's RSS (summed over
    instances) over the connections
  - kernel memory per connection: /proc/meminfo Slab growth over the
    connections (both ends of each loopback connection, and the client's
    epoll entries), and /proc/net/sockstat's TCP "mem" pages x 4096 (socket
    buffers only)
  - the p99 of that one ping, merged from every echoc's --hist, and the
    slowest load's own p99
  - while the pings run: how busy all CPUs were (/proc/stat) and the CPU
    echod and echoc used per ping, so a run whose latency is queueing for a
    CPU says so (a note when the CPUs were 90% busy or more), and the TCP
    segments retransmitted then (/proc/net/snmp)
Everything started runs in its own session and is killed, whatever happens
(Ctrl-C included), before the script exits.
"""

import bisect
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

import lib

KEEP_FREE_KIB = 2 * 1024 * 1024  # MemAvailable the run leaves untouched
MEM_MARGIN = 1.25  # phase 1's per-connection memory, times this, for phase 2's plan
# Phase 2's one-ping messages/s over all load processes (MILLION_PING_RATE).  At a
# million connections on two CPUs a ping costs echod and echoc together 140-160 µs of
# CPU (kernel included), so 20,000/s asked for more than two CPUs have: the run was
# overloaded and its latency was the backlog of whichever load fell behind (p99 65 ms
# to 22.7 s).  5,000/s keeps the CPUs about half busy.
PING_RATE_TOTAL = 5000
SATURATED_PCT = 90  # all CPUs this busy while pinging: the latency is queueing for a CPU
SETUP_TIMEOUT = 600  # seconds for every connection to be up and echoed
SPREAD_SIGMAS = 6  # SO_REUSEPORT hashes: room for this many std deviations per instance
ECHOC_SPARE_FDS = 100  # an echoc's own descriptors beside its connections
CAPACITY_RE = re.compile(r"capacity connections=(\d+) .*nofile=(\d+) echod_fds=(\d+)")
LISTEN_RE = re.compile(r"listening on tcp 127\.0\.0\.1:(\d+)")
UP_RE = re.compile(r"bench: idle: (\d+) connections up in ([\d.]+) s .*waiting for SIGUSR1")
VERIFIED_RE = re.compile(r"bench: idle: \d+ connections up .* echoed once and verified")


class Abort(Exception):
    """SIGINT or SIGTERM: tear everything down."""


def on_signal(signum, frame):
    raise Abort(signal.Signals(signum).name)


# ---------------------------------------------------------------- /proc

def meminfo_kib(field):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def sockstat_tcp():
    """(sockets in use, pages of socket buffers) from /proc/net/sockstat."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                v = line.split()
                return int(v[v.index("inuse") + 1]), int(v[v.index("mem") + 1])
    return 0, 0


TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "SyncookiesSent", "SyncookiesRecv",
                "TCPTimeouts", "TCPSynRetrans", "TCPLostRetransmit", "RetransSegs")


def tcp_counters():
    """The kernel's TCP counters that say a handshake or a segment was lost
    (/proc/net/netstat TcpExt, /proc/net/snmp Tcp), machine-wide."""
    out = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path) as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            for k, v in zip(head.split()[1:], vals.split()[1:]):
                if k in TCP_COUNTERS:
                    out[k] = int(v)
    return out


def counters_delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in TCP_COUNTERS}


def open_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except FileNotFoundError:
        return 0


def snapshot(pids):
    inuse, pages = sockstat_tcp()
    return {"rss": sum(lib.rss_kb(p) for p in pids), "slab": meminfo_kib("Slab"),
            "free": meminfo_kib("MemFree"), "available": meminfo_kib("MemAvailable"),
            "inuse": inuse, "pages": pages, "t": time.monotonic(), "tcp": tcp_counters(),
            "fds": sum(open_fds(p) for p in pids), "cpu": lib.sysstat()}


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the run starts, each in a session of its own."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.all = []

    def start(self, name, argv, stdin=subprocess.DEVNULL):
        out = open(os.path.join(self.tmp, name + ".out"), "wb")
        err = open(os.path.join(self.tmp, name + ".err"), "wb")
        p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, start_new_session=True)
        p.name, p.out_path, p.err_path = name, out.name, err.name
        out.close()
        err.close()
        self.all.append(p)
        return p

    def stderr(self, p):
        with open(p.err_path, errors="replace") as f:
            return f.read()

    def stop(self, procs, sig, wait_s=60):
        """Sends sig to each group, waits up to wait_s in all, then kills what is left."""
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait_s
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill(procs)

    def kill(self, procs=None):
        for p in procs if procs is not None else self.all:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def wait_for(procs, pattern, p, timeout):
    """Waits for a line matching pattern on p's stderr; the match, or None if p exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, procs.stderr(p))
        if m:
            return m
        if p.poll() is not None:
            return None
        time.sleep(0.05)
    return None


def start_echod(procs, name, echod, args, sock=None):
    """echod with its own listener, or with sock as descriptor 3 (socket activation)."""
    if sock is None:
        return procs.start(name, [echod, "-l", "127.0.0.1:0"] + args)
    # The shell becomes echod (exec keeps the pid), so $$ is echod's LISTEN_PID.
    wrap = 'exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0" "$@"'
    return procs.start(name, ["sh", "-c", wrap, echod] + args, stdin=sock.fileno())


def start_load(procs, name, echoc, conns, source_index, port, rate):
    src, last = f"127.1.{source_index}.1", f"127.1.{source_index}.2"  # index < 256
    hist = os.path.join(procs.tmp, name + ".hgrm")
    p = procs.start(name, [echoc, "bench", "--json", "--mode", "idle", "-c", str(conns),
                           "--pings", "1", "--ping-on-usr1", "--rate", str(max(1, rate)), "-t", "30",
                           "-d", str(SETUP_TIMEOUT + 300), "--source", f"{src}-{last}",
                           "--hist", hist, f"127.0.0.1:{port}"])
    p.hist_path = hist
    return p


# ---------------------------------------------------------------- latency

def read_hgrm(path):
    """[(value us, count of values <= it)] from an HdrHistogram percentile file."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                v = line.split()
                if len(v) >= 3 and re.match(r"^[\d.]+$", v[0]) and v[2].isdigit():
                    rows.append((float(v[0]), int(v[2])))
    except FileNotFoundError:
        pass
    return rows


def merged_percentile(paths, q):
    """The q-quantile (0..1) of the union of several echoc histograms."""
    hists = [h for h in (read_hgrm(p) for p in paths) if h]
    total = sum(h[-1][1] for h in hists)
    if not total:
        return float("nan")
    values = [[val for val, _ in h] for h in hists]
    for v in sorted({row[0] for h in hists for row in h}):
        below = 0
        for h, vals in zip(hists, values):
            i = bisect.bisect_right(vals, v)
            below += h[i - 1][1] if i else 0
        if below >= q * total:
            return v
    return max(h[-1][0] for h in hists)


# ---------------------------------------------------------------- one fill

def wait_lines(procs, loads, pattern, what):
    """Waits until every load printed a line matching pattern, one exits, the
    time is up or MemAvailable falls below the floor.  Returns ({load: match},
    note); prints progress every 5 s."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    next_line, note, got = time.monotonic() + 5, "", {}
    while time.monotonic() < deadline and len(got) < len(loads):
        for p in loads:
            m = None if p in got else pattern.search(procs.stderr(p))
            if m:
                got[p] = m
            elif p not in got and p.poll() is not None:
                return got, f"{p.name} exited {p.returncode}: {procs.stderr(p).strip()[:300]};"
        if meminfo_kib("MemAvailable") < KEEP_FREE_KIB:
            return got, (f"stopped short: MemAvailable fell below 2 GiB with about "
                         f"{sockstat_tcp()[0] // 2} loopback connections open;")
        if time.monotonic() >= next_line:
            print(f"million:   {sockstat_tcp()[0] // 2} connections open, {len(got)}/"
                  f"{len(loads)} loads {what}, MemAvailable "
                  f"{meminfo_kib('MemAvailable') / 1048576:.1f} GiB", flush=True)
            next_line += 5
        time.sleep(0.2)
    if len(got) < len(loads):
        note = f"only {len(got)} of {len(loads)} loads {what} within {SETUP_TIMEOUT} s;"
    return got, note


def hold_and_ping(procs, loads, pids, before, at_hold=lambda: None):
    """Waits until every load holds its connections, measures, then has each
    ping once (SIGUSR1) and waits for every echo.  Returns the figures."""
    t0 = time.monotonic()
    ups, note = wait_lines(procs, loads, UP_RE, "up")
    took = time.monotonic() - t0
    after = snapshot(pids)
    own = pids + [p.pid for p in loads]
    own_cpu = sum(lib.cpu_seconds(p) for p in own)
    server_cpu = sum(lib.cpu_seconds(p) for p in pids)
    at_hold()
    held = sum(int(m[1]) for m in ups.values())
    setup_s = max((float(m[2]) for m in ups.values()), default=0.0)
    ping_s = 0.0
    pinged = after
    if not note:
        t1 = time.monotonic()
        for p in loads:
            p.send_signal(signal.SIGUSR1)
        _, note = wait_lines(procs, loads, VERIFIED_RE, "pinged")
        ping_s = time.monotonic() - t1
        pinged = snapshot(pids)
        own_cpu = sum(lib.cpu_seconds(p) for p in own) - own_cpu
        server_cpu = sum(lib.cpu_seconds(p) for p in pids) - server_cpu
    else:
        held = max(held, (after["inuse"] - before["inuse"]) // 2)
    reports = finish_loads(procs, loads)
    f = figures(before, after, held, setup_s, reports, loads, note)
    cpu = lib.system_cpu(after["cpu"], pinged["cpu"]) if ping_s else None
    busy_s, window_s = (cpu[0], sum(cpu[2])) if cpu else (0.0, 0.0)
    f.update(took_s=took, ping_s=ping_s, server_accepted_at_hold=after["fds"] - before["fds"],
             ping_cpu_busy_pct=100 * busy_s / window_s if window_s else 0.0,
             ping_cpu_us=busy_s * 1e6 / f["verified"] if f["verified"] else 0.0,
             ping_own_cpu_us=own_cpu * 1e6 / f["verified"] if ping_s and f["verified"] else 0.0,
             ping_echod_cpu_us=server_cpu * 1e6 / f["verified"] if ping_s and f["verified"] else 0.0,
             tcp_setup=counters_delta(before["tcp"], after["tcp"]),
             tcp_ping=counters_delta(after["tcp"], pinged["tcp"]),
             per_load=[{"name": p.name, **(r["idle"]["first_echo_us"] if r else {})}
                       for p, r in zip(loads, reports)])
    f["note"] = (f["note"] + " " + saturation_note(f["ping_cpu_busy_pct"])).strip()
    return f


def finish_loads(procs, loads):
    """SIGINT to every load (it prints its results), then their JSON reports."""
    procs.stop(loads, signal.SIGINT, wait_s=120)
    reports = []
    for p in loads:
        try:
            with open(p.out_path) as f:
                reports.append(json.load(f))
        except (ValueError, FileNotFoundError):
            reports.append(None)
    return reports


def saturation_note(busy_pct):
    """A note when the machine had no CPU to spare while the pings ran."""
    if busy_pct < SATURATED_PCT:
        return ""
    return (f"the CPUs were {busy_pct:.0f}% busy while pinging: the ping latency is mostly "
            "time spent waiting for a CPU (a lower MILLION_PING_RATE measures echod);")


def figures(before, after, held, setup_s, reports, loads, note):
    n = max(held, 1)
    ok = [r for r in reports if r]
    return {
        "held": held,
        "setup_s": setup_s,
        "setup_per_s": held / setup_s if setup_s > 0 else 0.0,
        "echod_b_per_conn": (after["rss"] - before["rss"]) * 1024 / n,
        "slab_b_per_conn": (after["slab"] - before["slab"]) * 1024 / n,
        "memfree_b_per_conn": (before["free"] - after["free"]) * 1024 / n,
        "memfree_gib": (before["free"] - after["free"]) / 1048576,
        "sockstat_b_per_conn": (after["pages"] - before["pages"]) * 4096 / n,
        "sockstat_mem_mib": after["pages"] * 4096 / 1048576,
        "echoc_b_per_conn": sum(r["idle"]["rss_kib"] for r in ok) * 1024 / n,
        "verified": sum(r["idle"]["verified"] for r in ok),
        "errors": sum(r["errors"] for r in ok) + len(reports) - len(ok),
        "mismatches": sum(r["mismatches"] for r in ok),
        "p50_us": merged_percentile([p.hist_path for p in loads], 0.50),
        "p99_us": merged_percentile([p.hist_path for p in loads], 0.99),
        "note": note.strip(),
    }


# ---------------------------------------------------------------- the phases

def echoc_max_conns():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1] - ECHOC_SPARE_FDS


def phase1(procs, echod, echoc, engine):
    """One echod filled to its descriptor cap by two echoc processes."""
    srv = start_echod(procs, f"p1-{engine}-echod", echod, ["-m", engine, "-w", "1"])
    cap = wait_for(procs, CAPACITY_RE, srv, 10)
    port = wait_for(procs, LISTEN_RE, srv, 1)
    if not cap or not port:
        procs.stop([srv], signal.SIGTERM)
        return None, f"echod -m {engine} did not start: {procs.stderr(srv).strip()[:200]}"
    capacity, port = int(cap[1]), int(port[1])
    time.sleep(0.2)  # the worker's descriptors are opened right after the line
    before = snapshot([srv.pid])
    halves = [capacity // 2, capacity - capacity // 2]
    loads = [start_load(procs, f"p1-{engine}-load{i}", echoc, c, 200 + i, port, 5000)
             for i, c in enumerate(halves)]
    fds = []
    f = hold_and_ping(procs, loads, [srv.pid], before,
                      at_hold=lambda: fds.append(len(os.listdir(f"/proc/{srv.pid}/fd"))))
    procs.stop([srv], signal.SIGTERM)
    fds = fds[0] if fds else 0
    f.update(engine=engine, instances=1, capacity=capacity, nofile=int(cap[2]), echod_open_fds=fds)
    return f, None


def reuseport_sockets(n):
    socks, port = [], 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        port = s.getsockname()[1]
        s.listen(4096)
        socks.append(s)
    return socks, port


def plan(target, per_echod, per_conn_b):
    """(connections, echod instances, load processes, note) within memory."""
    note = ""
    room_kib = meminfo_kib("MemAvailable") - KEEP_FREE_KIB
    fits = int(room_kib * 1024 / (per_conn_b * MEM_MARGIN)) // 1000 * 1000
    if fits < target:
        note = (f"stopped short of {target}: MemAvailable "
                f"{meminfo_kib('MemAvailable') / 1048576:.1f} GiB less 2 GiB fits {fits} "
                f"connections at {per_conn_b * MEM_MARGIN / 1024:.1f} KiB each;")
        target = fits
    n = 1
    while target / n + SPREAD_SIGMAS * math.sqrt(target / n) > per_echod:
        n += 1
    m = math.ceil(target / echoc_max_conns())
    return target, n, m, note


def phase2(procs, echod, echoc, target, per_echod, per_conn_b, ping_rate):
    target, n, m, note = plan(target, per_echod, per_conn_b)
    print(f"million: phase 2: {target} connections over {n} echod -m epoll on one port "
          f"(SO_REUSEPORT), {m} echoc load processes", flush=True)
    socks, port = reuseport_sockets(n)
    servers = [start_echod(procs, f"p2-echod{i}", echod, ["-m", "epoll", "-w", "1"], sock=s)
               for i, s in enumerate(socks)]
    for s in socks:
        s.close()  # each echod holds its own
    for p in servers:
        if not wait_for(procs, CAPACITY_RE, p, 10):
            raise RuntimeError(f"{p.name} did not start: {procs.stderr(p).strip()[:200]}")
    time.sleep(0.2)
    before = snapshot([p.pid for p in servers])
    per_load = [target * (i + 1) // m - target * i // m for i in range(m)]
    loads = [start_load(procs, f"p2-load{i}", echoc, c, i, port, ping_rate // m)
             for i, c in enumerate(per_load)]
    f = hold_and_ping(procs, loads, [p.pid for p in servers], before)
    procs.stop(servers, signal.SIGTERM)
    f["note"] = (note + " " + f["note"]).strip()
    f.update(target=target, instances=n, capacity=per_echod, loads=m, ping_rate=ping_rate // m * m)
    return f


# ---------------------------------------------------------------- report

def report_lines(p1, p2):
    out = ["| figure | " + " | ".join(f"one echod, {f['engine']}" for f in p1) +
           (" | N echod, one port" if p2 else "") + " |",
           "| --- |" + " --- |" * (len(p1) + bool(p2))]
    rows = [
        ("connections held", lambda f: f"{f['held']:,}"),
        ("echod instances x announced capacity", lambda f: f"{f['instances']} x "
         f"{f['capacity']:,}"),
        ("set-up rate", lambda f: f"{f['setup_per_s']:,.0f}/s ({f['setup_s']:.1f} s)"),
        ("echod user memory / conn", lambda f: f"{f['echod_b_per_conn']:,.0f} B"),
        ("kernel Slab / conn (both ends)", lambda f: f"{f['slab_b_per_conn']:,.0f} B"),
        ("MemFree drop (whole machine)", lambda f: f"{f['memfree_gib']:.2f} GiB, "
         f"{f['memfree_b_per_conn']:,.0f} B/conn"),
        ("TCP socket buffers (sockstat)", lambda f: f"{f['sockstat_mem_mib']:.1f} MiB, "
         f"{f['sockstat_b_per_conn']:,.0f} B/conn"),
        ("echoc memory / conn", lambda f: f"{f['echoc_b_per_conn']:,.0f} B"),
        ("one ping each once all are up, verified", lambda f: f"{f['verified']:,} conns, p50 {f['p50_us']:,.0f} "
         f"µs, p99 {f['p99_us']:,.0f} µs"),
        ("errors, mismatches", lambda f: f"{f['errors']}, {f['mismatches']}"),
    ]
    rows.append(("echod descriptors open at hold", lambda f: f"{f['echod_open_fds']:,} of "
                 f"{f['nofile']:,}" if "echod_open_fds" in f else "-"))
    rows.append(("time until all held; all pinged", lambda f: f"{f['took_s']:.1f} s; "
                 f"{f['ping_s']:.1f} s"))
    rows.append(("while pinging: all CPUs busy; CPU per ping, all (echod + echoc; echod)",
                 lambda f: f"{f['ping_cpu_busy_pct']:.0f}%; {f['ping_cpu_us']:,.0f} µs "
                 f"({f['ping_own_cpu_us']:,.0f}; {f.get('ping_echod_cpu_us', 0):,.0f} µs)"))
    rows.append(("slowest load's p99; retransmitted segments", lambda f:
                 f"{max((x.get('p99', 0) for x in f['per_load']), default=0):,.0f} µs; "
                 f"{f['tcp_ping']['RetransSegs']}"))
    for title, fmt in rows:
        cells = [fmt(f) for f in p1] + ([fmt(p2)] if p2 else [])
        out.append(f"| {title} | " + " | ".join(cells) + " |")
    for f in p1 + ([p2] if p2 else []):
        if f["note"]:
            out.append(f"\nNote ({f.get('engine', 'phase 2')}): {f['note']}")
    return out


def env_count(name, default, low):
    """An environment variable's whole number, at least low; exits with one line if not."""
    text = os.environ.get(name, str(default))
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < low:
        sys.exit(f"million: {name}={text!r}: must be a whole number, at least {low}")
    return int(text)


def main():
    echod, echoc, outdir = sys.argv[1:4]
    target = env_count("MILLION_CONNS", 1000000, 0)
    ping_rate = env_count("MILLION_PING_RATE", PING_RATE_TOTAL, 100)
    engines = os.environ.get("MILLION_ENGINES", "epoll uring").split()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="echod-million.") as tmp:
        procs = Procs(tmp)
        try:
            p1, skipped = [], []
            for engine in engines:
                print(f"million: phase 1: one echod -m {engine} to its descriptor cap", flush=True)
                f, why = phase1(procs, echod, echoc, engine)
                if f:
                    p1.append(f)
                else:
                    skipped.append(why)
            if not p1:
                print("million: " + "; ".join(skipped), file=sys.stderr)
                return 1
            epoll = next((f for f in p1 if f["engine"] == "epoll"), p1[0])
            per_conn_b = max(epoll["slab_b_per_conn"], 0) + max(epoll["echod_b_per_conn"], 0) + \
                max(epoll["echoc_b_per_conn"], 0)
            if not epoll["held"]:
                print(f"million: phase 1 held no connection: {epoll['note']}", file=sys.stderr)
                return 1
            p2 = phase2(procs, echod, echoc, target, epoll["capacity"], per_conn_b, ping_rate) \
                if target > 0 else None
        except Abort as e:
            print(f"million: {e}: stopping every process", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            procs.kill()
    lines = [f"# echod benchmark: million, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "",
             f"RLIMIT_NOFILE hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]} per "
             f"process; MemTotal {meminfo_kib('MemTotal') / 1048576:.1f} GiB; "
             f"{os.cpu_count()} CPUs; run took {time.monotonic() - t_start:.0f} s; "
             "no system setting changed.", ""] + report_lines(p1, p2) + \
            [f"\nSkipped: {s}" for s in skipped]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(outdir, exist_ok=True)
    for name in (f"million-{stamp}.md", "latest-million.md"):
        with open(os.path.join(outdir, name), "w") as f:
            f.write(text)
    with open(os.path.join(outdir, f"million-{stamp}.json"), "w") as f:
        json.dump({"phase1": p1, "phase2": p2}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
