#!/usr/bin/python3
"""bench/lib.py - the helpers run.sh needs that are awkward in bash.

  lib.py freeport tcp|udp          a free port on 127.0.0.1 (the kernel picks it)
  lib.py waitport tcp|udp PORT S   wait up to S seconds until something listens on PORT
  lib.py proc PID                  "CPU_SECONDS RSS_KB NPROCS" of PID and its descendants
  lib.py row JSON_FILE ...         one TSV row of results from echoc bench --json
  lib.py report TSV MD PNG FACTS   the Markdown report (and a gnuplot PNG)

Everything is read from /proc; nothing here resolves a name.
"""

import json
import os
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def freeport(kind):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()


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
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc(pid):
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
    print(f"{ticks / TICK:.3f} {rss} {n}")


def row(json_file, scenario, server, conns, cpu0, cpu1, rss0, rss_mid, nprocs, note):
    """scenario server msgs/s p50 p99 cpu_us/msg rss_kb rss_per_conn_kb errors mismatches note"""
    try:
        with open(json_file) as f:
            r = json.load(f)
    except (OSError, ValueError):
        print("\t".join([scenario, server] + ["-"] * 8 + [note or "no result"]))
        return
    msgs = r["messages"]
    cpu = (float(cpu1) - float(cpu0)) * 1e6 / msgs if msgs else 0
    per_conn = (int(rss_mid) - int(rss0)) / int(conns)
    dg = r.get("datagrams", {})
    if r.get("conns_open", int(conns)) < int(conns):
        note = (note + " " if note else "") + f"open at end {r['conns_open']}/{conns}"
    if r.get("udp"):
        note = (note + " " if note else "") + f"lost {dg.get('lost', 0)}"
    print("\t".join([scenario, server, f"{r['messages_per_s']:.0f}",
                     f"{r['latency_us']['p50']:.1f}", f"{r['latency_us']['p99']:.1f}",
                     f"{cpu:.2f}", rss_mid, f"{per_conn:.1f}", str(r["errors"]),
                     str(r["mismatches"]), note + (f" {nprocs} procs" if int(nprocs) > 1 else "")]))


COLS = ["messages/s", "p50 us", "p99 us", "server CPU us/msg", "server RSS KiB",
        "RSS delta KiB/conn", "errors", "mismatches", "notes"]


def number(s):
    try:
        return float(s)
    except ValueError:
        return None


def report(tsv, md, png, facts):
    rows = [l.rstrip("\n").split("\t") for l in open(tsv) if l.strip()]
    scenarios = list(dict.fromkeys(r[0] for r in rows))
    out = [open(facts).read(), ""]
    ratios = []
    for sc in scenarios:
        out += [f"### {sc}", "", "| server | " + " | ".join(COLS) + " |",
                "|---" * (len(COLS) + 1) + "|"]
        best = {"echod": (0, ""), "peer": (0, "")}
        for r in (r for r in rows if r[0] == sc):
            out.append("| " + " | ".join(r[1:]) + " |")
            mps = number(r[2])
            ok = mps and r[8] == "0" and r[9] == "0"
            side = "echod" if r[1].startswith("echod") else "peer"
            if ok and mps > best[side][0]:
                best[side] = (mps, r[1])
        out.append("")
        if best["echod"][0] and best["peer"][0]:
            ratios.append((sc, best["echod"], best["peer"]))
    out += ["## echod's best model against the best peer (messages/s, error-free runs)", "",
            "| scenario | echod best | peer best | ratio |", "|---|---|---|---|"]
    for sc, e, p in ratios:
        out.append(f"| {sc} | {e[1]} {e[0]:.0f} | {p[1]} {p[0]:.0f} | {e[0] / p[0]:.2f} |")
    plot(rows, scenarios, png)
    out += ["", f"![messages per second]({os.path.basename(png)})", ""]
    with open(md, "w") as f:
        f.write("\n".join(out) + "\n")


def plot(rows, scenarios, png):
    """A clustered bar chart of messages/s per scenario, one bar per server (gnuplot)."""
    servers = list(dict.fromkeys(r[1] for r in rows))
    data = png + ".dat"
    with open(data, "w") as f:
        f.write("scenario " + " ".join(s.replace(" ", "_") for s in servers) + "\n")
        for sc in scenarios:
            vals = {r[1]: r[2] for r in rows if r[0] == sc}
            f.write(sc.replace(" ", "_") + " " +
                    " ".join(vals.get(s, "-") if number(vals.get(s, "-")) else "-"
                             for s in servers) + "\n")
    script = (f"set terminal pngcairo size 1400,600 noenhanced\nset output '{png}'\n"
              "set style data histograms\nset style histogram clustered gap 1\n"
              "set style fill solid border -1\nset logscale y\nset ylabel 'messages/s (log)'\n"
              "set datafile missing '-'\nset key outside right\nset xtics rotate by -20\n"
              f"plot for [i=2:{len(servers) + 1}] '{data}' using i:xtic(1) title columnhead\n")
    try:
        subprocess.run(["gnuplot"], input=script.encode(), check=True, timeout=60,
                       capture_output=True)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"bench: gnuplot: {e}", file=sys.stderr)
    finally:
        os.unlink(data)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    rc = {"freeport": freeport, "waitport": waitport, "proc": proc, "row": row,
          "report": report}[cmd](*args)
    sys.exit(rc or 0)
