#!/usr/bin/python3
"""bench/locality.py - does pinning and steering (echod --cpu-affinity) pay?

    make bench SUITE=locality [REPS=3] [QUICK=1]      (bench/run.sh calls this)

echod -m epoll and -m uring, with as many workers as this process may use
CPUs, once with --cpu-affinity auto (worker i pinned to CPU i, connections
steered to the worker on the CPU that receives them) and once with
--cpu-affinity off (today's unpinned workers on one shared listener).  The
load is `echoc bench -T N --cpus LIST`: one load thread pinned per CPU, so on
loopback each connection's packets are handled on its load thread's CPU.
Both steering settings run in every repetition, alternating, so drifting
background load falls on both alike.  Pinned workers run SCHED_BATCH (echod's
--worker-sched auto); a third, informational setting runs the unpinned
workers SCHED_BATCH too (--cpu-affinity off --worker-sched batch), so the
report shows how much of the gain the policy alone would give without
pinning and steering.

Figures: messages/s (echoc's measured window) and the TOTAL CPU per message:
the busy time of every CPU (user, nice, system, irq, softirq, steal from
/proc/stat; idle and iowait left out), whoever ran there, over the measured
window, divided by the messages of that window.  Loopback softirq work is
charged to whichever task runs, so only the whole machine's figure is fair.
The report gives the median and [min-max] over the repetitions, and
the ratio steered/unsteered of the medians; the goal is <= 0.7.

Writes bench/results/locality-DATE.md and .tsv, and latest-locality.md.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lib  # noqa: E402 (next to this file): every CPU's busy time, as make bench counts it
ROOT = os.path.dirname(HERE)
B = os.environ.get("B", "build")
ECHOD = os.path.join(ROOT, B, "echod")
ECHOC = os.path.join(ROOT, B, "echoc")
OUT = os.path.join(HERE, "results")
QUICK = bool(os.environ.get("QUICK"))
REPS = int(os.environ.get("REPS") or 3)
DUR, WARM = (1.0, 0.3) if QUICK else (4.0, 1.0)
CONNS = (50, 500)
SIZE = 128
# Settings: steered, not steered (the ratio's two), not steered but SCHED_BATCH.
MODES = ("auto", "off", "off-batch")
ECHOD_ARGS = {"auto": ["--cpu-affinity", "auto"], "off": ["--cpu-affinity", "off"],
              "off-batch": ["--cpu-affinity", "off", "--worker-sched", "batch"]}


def process_seconds(*pids):
    """utime+stime of these processes (all their threads), in seconds."""
    return sum(lib.cpu_seconds(pid) for pid in pids)


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def start_echod(engine, mode):
    """echod on 127.0.0.1, port 0; returns (process, port, its locality line)."""
    proc = subprocess.Popen([ECHOD, "-m", engine, "-w", str(len(allowed_cpus())),
                             *ECHOD_ARGS[mode],
                             "-l", "127.0.0.1:0"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    port, line, deadline = None, "", time.monotonic() + 10
    while time.monotonic() < deadline:
        text = proc.stderr.readline()
        if not text:
            break
        m = re.match(r"echod: listening on tcp 127\.0\.0\.1:(\d+)$", text.strip())
        if m:
            port = int(m.group(1))
        if "cpu affinity:" in text:
            line = text.strip()
            break
    if port is None:
        proc.kill()
        raise SystemExit(f"locality: echod -m {engine} did not start: {line}")
    return proc, port, line


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_one(engine, mode, conns, cpus):
    """One measured run: (messages/s, total CPU µs/msg, echod+echoc CPU µs/msg, echod's line)."""
    proc, port, line = start_echod(engine, mode)
    cpulist = ",".join(map(str, cpus))
    try:
        load = subprocess.Popen([ECHOC, "bench", "-c", str(conns), "-s", str(SIZE),
                                 "-T", str(len(cpus)), "--cpus", cpulist,
                                 "-d", str(DUR), "--warmup", str(WARM), "--json",
                                 f"127.0.0.1:{port}"], stdout=subprocess.PIPE, text=True)
        # echoc's window starts WARM after its start (plus connecting, a few ms).
        time.sleep(WARM)
        s0, p0, t0 = lib.sysstat(), process_seconds(proc.pid, load.pid), time.monotonic()
        time.sleep(DUR)
        s1, p1, t1 = lib.sysstat(), process_seconds(proc.pid, load.pid), time.monotonic()
        out, _ = load.communicate(timeout=60)
    finally:
        stop(proc)
    res = json.loads(out)
    if load.returncode != 0 or res.get("mismatches") or res.get("errors"):
        raise SystemExit(f"locality: echoc failed ({load.returncode}): {out.strip()}")
    rate = res["messages_per_s"]
    msgs = rate * (t1 - t0)
    busy = lib.system_cpu(s0, s1)[0]  # busy seconds of every CPU over the window
    return rate, busy / msgs * 1e6, (p1 - p0) / msgs * 1e6, line


def spread(values, fmt):
    med = statistics.median(values)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]", med


def main():
    cpus = allowed_cpus()
    engines = [e for e in ("epoll", "uring")
               if subprocess.run([ECHOD, "-m", e, "--help"], capture_output=True).returncode == 0]
    results = {}  # (engine, conns, mode) -> [(rate, us)]
    lines = {}
    total = REPS * len(engines) * len(CONNS) * len(MODES)
    print(f"bench: locality: {total} runs of {WARM + DUR:.1f} s, CPUs {cpus}", file=sys.stderr)
    for rep in range(REPS):
        for engine in engines:
            for conns in CONNS:
                # Rotate which setting goes first, so none always follows another.
                k = rep % len(MODES)
                for mode in MODES[k:] + MODES[:k]:
                    rate, us, pus, line = run_one(engine, mode, conns, cpus)
                    results.setdefault((engine, conns, mode), []).append((rate, us, pus))
                    lines[(engine, mode)] = line
                    print(f"bench: {engine} {conns} conns {mode}: {rate:.0f} msg/s, "
                          f"{us:.2f} us/msg total, {pus:.2f} us/msg echod+echoc",
                          file=sys.stderr)
    report(engines, cpus, results, lines)


def report(engines, cpus, results, lines):
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    md = [f"# echod benchmark: locality, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
          f"{' (QUICK)' if QUICK else ''}", "",
          f"{len(cpus)} CPUs ({','.join(map(str, cpus))}); echod -w {len(cpus)} "
          f"--cpu-affinity auto (pinned, steered, SCHED_BATCH) against off; load `echoc bench -T {len(cpus)} "
          f"--cpus {','.join(map(str, cpus))} -s {SIZE}`, {DUR:g} s after {WARM:g} s warm-up; "
          f"{REPS} repetitions, median [min-max].  CPU/msg is the busy time of every CPU "
          "(/proc/stat: user nice system irq softirq steal) over the window per message.", "",
          "echod+echoc counts only the two processes' own time (/proc/PID/stat): less",
          "exposed to other load on the machine, but softirq work done while another",
          "task ran is charged to that task instead.", "",
          "| engine | conns | steering | messages/s | total CPU µs/msg | ratio | "
          "echod+echoc µs/msg | ratio |",
          "|---|---|---|---|---|---|---|---|"]
    tsv = ["engine\tconns\tcpu_affinity\trep\tmessages_per_s\ttotal_cpu_us_per_msg"
           "\tprocess_cpu_us_per_msg"]
    for engine in engines:
        for conns in CONNS:
            cells, meds, pmeds = {}, {}, {}
            for mode in MODES:
                runs = results[(engine, conns, mode)]
                rate_s, _ = spread([r for r, _, _ in runs], "{:.0f}")
                us_s, meds[mode] = spread([u for _, u, _ in runs], "{:.2f}")
                pus_s, pmeds[mode] = spread([p for _, _, p in runs], "{:.2f}")
                cells[mode] = (rate_s, us_s, pus_s)
                for i, (r, u, p) in enumerate(runs):
                    tsv.append(f"{engine}\t{conns}\t{mode}\t{i + 1}\t{r:.1f}\t{u:.3f}\t{p:.3f}")
            on, off = cells["auto"], cells["off"]
            md.append(f"| {engine} | {conns} | on (auto) | {on[0]} | {on[1]} | "
                      f"**{meds['auto'] / meds['off']:.2f}** | {on[2]} | "
                      f"{pmeds['auto'] / pmeds['off']:.2f} |")
            md.append(f"| {engine} | {conns} | off | {off[0]} | {off[1]} | | {off[2]} | |")
            ob = cells["off-batch"]
            md.append(f"| {engine} | {conns} | off, SCHED_BATCH | {ob[0]} | {ob[1]} | "
                      f"({meds['auto'] / meds['off-batch']:.2f}) | {ob[2]} | "
                      f"({pmeds['auto'] / pmeds['off-batch']:.2f}) |")
    md += ["", "ratio: steered over unsteered (median over median); goal <= 0.70 for the total.",
           "In brackets: steered over the unsteered workers run SCHED_BATCH as the pinned "
           "ones are (informational).",
           "",
           "echod said:", ""]
    md += [f"- {e} {m}: `{lines[(e, m)]}`" for e in engines for m in MODES if (e, m) in lines]
    os.makedirs(OUT, exist_ok=True)
    base = os.path.join(OUT, f"locality-{stamp}")
    with open(base + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    with open(base + ".tsv", "w") as f:
        f.write("\n".join(tsv) + "\n")
    with open(os.path.join(OUT, "latest-locality.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"bench: wrote {base}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
