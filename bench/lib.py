#!/usr/bin/python3
"""bench/lib.py - the helpers run.sh needs that are awkward in bash.

  lib.py freeport tcp|udp|both     a free port on 127.0.0.1 (the kernel picks it)
  lib.py waitport tcp|udp PORT S   wait up to S seconds until something listens on PORT
  lib.py proc PID                  "CPU_SECONDS RSS_KB NPROCS" of PID and its descendants
  lib.py sample PID T0 WARM DUR [LOAD_PID]
                                   proc PID at T0+WARM, T0+WARM+DUR/2 and T0+WARM+DUR,
                                   each line followed by the whole system's CPU counters
                                   (sysstat), with LOAD_PID proc's CPU of the load ("-"
                                   without), and kmem
  lib.py kmem                      "TCP_MEM_PAGES SLAB_KB": the kernel's side, machine-wide
  lib.py row JSON_FILE ...         one TSV row of results from echoc bench --json
  lib.py floor JSON_FILE SCENARIO  the TSV row of the latency floor (build/echod-floor --json)

and the Markdown report, for bench/report.py: repeated runs of a server in a
scenario become median [min-max].

Everything is read from /proc; nothing here resolves a name.
"""

import json
import math
import os
import socket
import statistics
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def freeport(kind):
    """Prints a port free on 127.0.0.1; "both": free for TCP and UDP (echod --udp binds both)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                if kind == "both":
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
        print(port)
        return 0
    return 1


def listening(kind, port):
    """True when /proc/net shows a TCP listener (state 0A) or a bound UDP socket on port."""
    for name in (kind, kind + "6"):
        try:
            with open(f"/proc/net/{name}") as f:
                next(f)
                for line in f:
                    local, state = line.split()[1], line.split()[3]
                    if int(local.rsplit(":", 1)[1], 16) == port and (
                            kind == "udp" or state == "0A"):
                        return True
        except FileNotFoundError:
            pass
    return False


def waitport(kind, port, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if listening(kind, int(port)):
            return 0
        time.sleep(0.02)
    return 1


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14.
    return int(fields[1]), [int(x) for x in fields[11:15]]


def children():
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, _ = stat(d)
            except (OSError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    return kids


def rss_kb(pid):
    """A process's VmRSS in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def cpu_seconds(pid):
    """A process's utime+stime (all its threads) in seconds so far (0 once it is gone)."""
    try:
        _, (utime, stime, _, _) = stat(pid)
    except FileNotFoundError:
        return 0.0
    return (utime + stime) / TICK


def proc_words(pid):
    """CPU (utime+stime of the tree, plus the root's reaped children) and summed VmRSS."""
    pid = int(pid)
    kids, todo, tree = children(), [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(kids.get(p, []))
    ticks = rss = n = 0
    for p in tree:
        try:
            _, t = stat(p)
            ticks += t[0] + t[1] + (t[2] + t[3] if p == pid else 0)
            rss += rss_kb(p)
            n += 1
        except OSError:
            pass
    return f"{ticks / TICK:.3f} {rss} {n}"


def kmem_words():
    """What the kernel holds, machine-wide, so that it is not mistaken for the server's
    memory: the pages of TCP socket buffers (/proc/net/sockstat "mem") and the slab
    caches, socket structures among them (/proc/meminfo "Slab", KiB)."""
    pages = slab = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                pages = int(line.split()[-1])
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                slab = int(line.split()[1])
    return f"{pages} {slab}"


def kmem():
    print(kmem_words())


def proc(pid):
    print(proc_words(pid))


# /proc/stat's fields after the CPU's name: user nice system idle iowait irq
# softirq steal guest guest_nice.  Busy is everything but idle and iowait;
# guest and guest_nice are already counted in user and nice.
BUSY_FIELDS = (0, 1, 2, 5, 6, 7)
IDLE_FIELDS = (3, 4)


def sysstat(text=None):
    """The whole machine's CPU counters, one word: "busy:all" ticks per CPU, comma-separated.

    busy counts user, nice, system, irq, softirq and steal; all adds idle and iowait.
    Every CPU counts, whoever ran on it: the server, the load, kworkers, and the
    softirqs that per-process accounting charges to whichever task was running.
    text: /proc/stat's contents (read now when None).
    """
    if text is None:
        with open("/proc/stat") as f:
            text = f.read()
    out = []
    for line in text.splitlines():
        if line.strip():
            name, *vals = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            v = [int(x) for x in vals] + [0] * 8
            busy = sum(v[i] for i in BUSY_FIELDS)
            out.append(f"{busy}:{busy + sum(v[i] for i in IDLE_FIELDS)}")
    return ",".join(out)


def system_cpu(start, end):
    """(busy CPU seconds of all CPUs, [busy % of each CPU], [seconds of each CPU's window])
    between two sysstat() words.

    None when either word is missing or malformed (an old sampler, an unreadable /proc/stat).
    """
    try:
        a = [tuple(map(int, c.split(":"))) for c in start.split(",")]
        b = [tuple(map(int, c.split(":"))) for c in end.split(",")]
    except (AttributeError, ValueError):
        return None
    if not a or len(a) != len(b):
        return None
    busy = [eb - sb for (sb, _), (eb, _) in zip(a, b)]
    every = [ea - sa for (_, sa), (_, ea) in zip(a, b)]
    pct = [100 * x / t if t > 0 else 0.0 for x, t in zip(busy, every)]
    return sum(busy) / TICK, pct, [t / TICK for t in every]


# The longest kernel tick in use (HZ=100).  /proc/stat's busy time is sampled: at
# each tick the whole tick goes to whatever the CPU was doing.
KERNEL_TICK_MAX = 0.01


def below_parts(window, server_s, load_s):
    """True when all CPUs' busy time together is less than the server's and the load's own CPU.

    It cannot be: their time is part of it (theirs is exact, from the scheduler).
    Allowed: the sampling error of /proc/stat (a CPU busy a fraction p of n ticks is
    counted to within about sqrt(n p (1-p)) ticks; three of those), a 10 ms unit per
    CPU at either end, and two more for the moments between reading /proc/stat and
    the processes.  Past that the sampling is wrong: a window misplaced, a process
    missed.
    """
    _, pct, seconds = window
    variance = sum((p / 100) * (1 - p / 100) * w * KERNEL_TICK_MAX for p, w in zip(pct, seconds))
    slack = 3 * math.sqrt(variance) + (2 * len(pct) + 2) / TICK
    return window[0] + slack < server_s + load_s


def sample(pid, t0, warm, dur, load=None):
    """proc(pid) and sysstat() where the measured window starts, halfway and where it ends.

    Each line is proc's three words, the sysstat word and, with load (the load
    generator's pid), the load's CPU seconds.  t0 is bash's $EPOCHREALTIME when the
    load started: this process's own start-up does not shift the window.
    """
    start = float(t0) + float(warm)
    for at in (start, start + float(dur) / 2, start + float(dur)):
        time.sleep(max(0.0, at - time.time()))
        words = sysstat()
        print(proc_words(pid), words, load_cpu(load), kmem_words())
        sys.stdout.flush()


def load_cpu(pid):
    """The CPU seconds of the load's process tree; "-" once it is gone (it may end as the window
    does), rather than a 0 that would make its CPU over the window negative."""
    if not pid:
        return "-"
    cpu, _, n = proc_words(pid).split()
    return cpu if int(n) else "-"


def row(json_file, scenario, server, conns, cpu0, cpu1, rss0, rss_mid, nprocs, note,
        sys0="", sys1="", load0="-", load1="-"):
    """One TSV row:

    scenario server msgs/s p50 p99 cpu_us/msg rss_kb rss_per_conn_kb errors mismatches note
    total_cpu_us/msg load_cpu_us/msg busy%_per_cpu

    The last three came later: older results stop at note, and a figure that could
    not be measured is "-", never 0.  total is every CPU's busy time over the window
    (sysstat words sys0 and sys1); load is the load generator's own CPU; busy is each
    CPU's busy share of the window, "97/45".
    """
    try:
        with open(json_file) as f:
            r = json.load(f)
    except (OSError, ValueError):
        print("\t".join([scenario, server] + ["-"] * 8 + [note or "no result", "-", "-", "-"]))
        return
    msgs = r["messages"]
    cpu = (float(cpu1) - float(cpu0)) * 1e6 / msgs if msgs else 0
    total, load, busy = "-", "-", "-"
    window = system_cpu(sys0, sys1)
    if window and msgs:
        total = f"{window[0] * 1e6 / msgs:.2f}"
    if window:
        busy = "/".join(f"{p:.0f}" for p in window[1])
    if number(load0) is not None and number(load1) is not None and msgs:
        load = f"{(float(load1) - float(load0)) * 1e6 / msgs:.2f}"
        if window and below_parts(window, float(cpu1) - float(cpu0),
                                  float(load1) - float(load0)):
            note = (note + " " if note else "") + "total CPU < server + load"
    per_conn = (int(rss_mid) - int(rss0)) / int(conns)
    dg = r.get("datagrams", {})
    if r.get("conns_open", int(conns)) < int(conns):
        note = (note + " " if note else "") + f"open at end {r['conns_open']}/{conns}"
    if r.get("udp"):
        note = (note + " " if note else "") + f"lost {dg.get('lost', 0)}"
    print("\t".join([scenario, server, f"{r['messages_per_s']:.0f}",
                     f"{r['latency_us']['p50']:.1f}", f"{r['latency_us']['p99']:.1f}",
                     f"{cpu:.2f}", rss_mid, f"{per_conn:.3f}", str(r["errors"]),
                     str(r["mismatches"]), note + (f" {nprocs} procs" if int(nprocs) > 1 else ""),
                     total, load, busy]))


COLS = ["messages/s", "p50 us", "p99 us", "server CPU us/msg", "total CPU us/msg (all CPUs)",
        "server RSS KiB", "RSS delta KiB/conn", "errors", "mismatches", "busy % per CPU",
        "notes"]
# The TSV columns of the numeric COLS, in COLS's order: total CPU (11) came later,
# after the notes, so that older results keep their layout.
NUMERIC = (2, 3, 4, 5, 11, 6, 7)


def field(row, i):
    """Cell i of a TSV row; "-" (not measured) where an older row has no such column."""
    return row[i] if i < len(row) and row[i] != "" else "-"


def busy_median(runs):
    """Each CPU's median busy % over the runs that have it, "97/45"; "-" if none."""
    per_cpu = [field(r, 13).split("/") for r in runs if field(r, 13) != "-"]
    if not per_cpu or len({len(c) for c in per_cpu}) != 1:
        return "-"
    return "/".join(f"{statistics.median(float(c[i]) for c in per_cpu):.0f}"
                    for i in range(len(per_cpu[0])))


FLOOR = "floor"  # the server name of build/echod-floor's rows: two spinning threads
# The TSV's columns after scenario and server, in order (row() writes them).
TSV_COLS = ["messages/s", "p50 us", "p99 us", "server CPU us/msg", "server RSS KiB",
            "RSS delta KiB/conn", "errors", "mismatches", "notes", "total CPU us/msg (all CPUs)",
            "load CPU us/msg", "busy % per CPU"]


def floor(json_file, scenario):
    """The floor's TSV row: its latency and rate; the server-side columns are "-"."""
    with open(json_file) as f:
        r = json.load(f)
    cells = {"messages/s": f"{r['messages_per_s']:.0f}", "p50 us": f"{r['latency_us']['p50']:.1f}",
             "p99 us": f"{r['latency_us']['p99']:.1f}", "errors": "0", "mismatches": "0",
             "notes": "2 spinning threads, no server logic (bench/floor.c)"}
    print("\t".join([scenario, FLOOR] + [cells.get(c, "-") for c in TSV_COLS]))


def number(s):
    try:
        return float(s)
    except ValueError:
        return None


def spread(cells):
    """The median of the numeric cells, with [min-max] when there are several; '-' if none."""
    vals = sorted(v for v in map(number, cells) if v is not None)
    if not vals:
        return "-", None
    digits = max((len(c.split(".")[1]) for c in cells if "." in c), default=0)
    med = statistics.median(vals)
    text = f"{med:.{digits}f}"
    if len(vals) > 1:
        text += f" [{vals[0]:.{digits}f}-{vals[-1]:.{digits}f}]"
    return text, med


def merge(runs):
    """One report row from the repeated runs of a server in a scenario.

    Returns (cells, median messages/s, median CPU us/msg, clean): clean when every
    run produced a result with no error and no mismatch.
    """
    cells, medians = [runs[0][1]], []
    for i in NUMERIC:
        text, med = spread([field(r, i) for r in runs])
        cells.append(text)
        medians.append(med)
    clean = all(r[8] == "0" and r[9] == "0" for r in runs)
    for i in (8, 9):
        cells.append(str(sum(int(r[i]) for r in runs if r[i].isdigit())))
    cells.append(busy_median(runs))
    notes = list(dict.fromkeys(r[10] for r in runs if len(r) > 10 and r[10].strip()))
    cells.append("; ".join(notes) + (f" ({len(runs)} runs)" if len(runs) > 1 else ""))
    return cells, medians[0], medians[3], clean


def grouped(rows):
    """{scenario: {server: merge(its runs)}}, both in the order they first ran."""
    runs = {}
    for r in rows:
        runs.setdefault(r[0], {}).setdefault(r[1], []).append(r)
    return {sc: {srv: merge(rs) for srv, rs in servers.items()} for sc, servers in runs.items()}


def best_ratios(groups):
    """(title, header, rows): echod's best model against the best peer, per scenario; or None."""
    out = []
    for sc, servers in groups.items():
        best = {"echod": (0, ""), "peer": (0, "")}
        for srv, (_, mps, _, clean) in servers.items():
            if srv == FLOOR:
                continue  # not a server: the bound every server is held to
            side = "echod" if srv.startswith("echod") else "peer"
            if clean and mps and mps > best[side][0]:
                best[side] = (mps, srv)
        e, p = best["echod"], best["peer"]
        if e[0] and p[0]:
            out.append([sc, f"{e[1]} {e[0]:.0f}", f"{p[1]} {p[0]:.0f}", f"{e[0] / p[0]:.2f}"])
    if not out:
        return None
    return ("echod's best model against the best peer (median messages/s, error-free runs)",
            ["scenario", "echod best", "peer best", "ratio"], out)


def uring_vs_epoll(groups):
    """(title, header, rows): uring relative to epoll, where both ran cleanly; or None."""
    out = []
    for sc, servers in groups.items():
        u, e = servers.get("echod-uring"), servers.get("echod-epoll")
        if not (u and e and u[3] and e[3] and u[1] and e[1] and u[2] and e[2]):
            continue
        out.append([sc, f"{u[1] / e[1]:.2f}", f"{100 * (u[2] / e[2] - 1):+.0f}%"])
    if not out:
        return None
    return ("uring against epoll (medians)",
            ["scenario", "messages/s, uring / epoll", "server CPU per message, uring vs epoll"],
            out)


def floor_ratios(groups):
    """(title, header, rows): each server's latency over the floor's, per scenario; or None."""
    out = []
    for sc, servers in groups.items():
        fl = servers.get(FLOOR)
        if not fl:
            continue
        f50, f99 = number(fl[0][2].split()[0]), number(fl[0][3].split()[0])
        for srv, (cells, _, _, _) in servers.items():
            s50, s99 = number(cells[2].split()[0]), number(cells[3].split()[0])
            if srv == FLOOR or not (s50 and s99 and f50 and f99):
                continue
            out.append([sc, srv, cells[2], f"{s50 / f50:.2f}", cells[3], f"{s99 / f99:.2f}"])
    if not out:
        return None
    return ("latency against the floor (two spinning threads, bench/floor.c; medians)",
            ["scenario", "server", "p50 us", "p50 / floor", "p99 us", "p99 / floor"], out)


def summaries(groups):
    """The tables that follow the per-scenario ones, as (title, header, rows)."""
    return [t for t in (best_ratios(groups), uring_vs_epoll(groups), floor_ratios(groups)) if t]


def read_tsv(tsv):
    """The rows of a results TSV, as lists of cells."""
    with open(tsv) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


# Which CPU figure to read, in both reports, over the tables.
CPU_FIGURES = (
    "Two CPU figures per message. **Server CPU** (utime+stime of the server's processes) compares "
    "the servers' own efficiency when the load and the placement are the same for all, as within "
    "one suite. **Total CPU (all CPUs)** is every CPU's busy time over the window from /proc/stat "
    "(user, nice, system, irq, softirq, steal): what the host pays, the load generator included, "
    "and the softirqs and kworkers that per-process accounting misses or charges to whichever "
    "process happened to run (loopback's receive softirq runs on the sending CPU). Compare it "
    "across placements (server and load on one CPU or two, steering, busy polling) and whenever "
    "the server's own figure could hide work moved elsewhere. On a shared machine it also counts "
    "everybody else's work on those CPUs. busy % per CPU tells whether a CPU (the load's, say) "
    "was saturated.")


def markdown(rows, facts, html):
    """The Markdown report: facts, one table per scenario, the ratios, a pointer to the HTML."""
    groups = grouped(rows)
    out = [facts, "", CPU_FIGURES, ""]
    for sc, servers in groups.items():
        out += [f"### {sc}", "", "| server | " + " | ".join(COLS) + " |",
                "|---" * (len(COLS) + 1) + "|"]
        out += ["| " + " | ".join(cells) + " |" for cells, _, _, _ in servers.values()]
        out.append("")
    for title, header, table in summaries(groups):
        out += [f"## {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in table] + [""]
    out += [f"Charts: [{html}]({html}) (open it in a browser).", ""]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    rc = {"freeport": freeport, "waitport": waitport, "proc": proc, "kmem": kmem, "sample": sample,
          "row": row, "floor": floor}[cmd](*args)
    sys.exit(rc or 0)
