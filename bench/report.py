#!/usr/bin/python3
"""bench/report.py - a benchmark run's report: Markdown for terminals and diffs, HTML for a browser.

  bench/report.py RUN [--md FILE] [--html FILE] [--screenshot PNG [--size WxH]]

RUN is what bench/run.sh leaves in bench/results/ (SUITE-DATE):
  RUN.tsv              one row per run (bench/lib.py row)
  RUN/environment.md   the machine and the method: the head of both reports
  RUN/runs/N.json      echoc bench --json of the TSV's N-th row (N from 1)
  RUN/runs/N.hgrm      its latency distribution (echoc bench --hist)

Writes RUN.md and RUN/report.html (or --md, --html): one self-contained page,
the environment, then per scenario the charts as inline SVG, then the tables.
No JavaScript, nothing fetched.  The charts need python3-matplotlib; without it
the page has the tables and says what to install.  --screenshot also takes a
picture of the page's top with headless Chromium (the chromium package).
"""

import argparse
import html
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402 (next to this file)

try:
    import charts
except ImportError as e:  # python3-matplotlib missing
    charts = None
    CHARTS_MISSING = f"{e} (in {sys.executable})"

PLOT_PACKAGE = "python3-matplotlib"


# ---------------------------------------------------------------- the runs

class Run:
    """One TSV row with echoc's JSON and latency distribution, when they were kept."""

    def __init__(self, n, row, rundir):
        # Older results have no columns after the notes (10): their cells read as "".
        self.row = row + [""] * (14 - len(row))
        self.scenario, self.server = row[0], row[1]
        base = os.path.join(rundir, "runs", str(n))
        self.json = None
        try:
            with open(base + ".json") as f:
                self.json = json.load(f)
        except (OSError, ValueError):
            pass
        self.hist = base + ".hgrm" if os.path.exists(base + ".hgrm") else None

    def cell(self, i):
        return lib.number(self.row[i])

    @property
    def messages_per_s(self):
        return self.cell(2)

    @property
    def failed(self):
        """No message echoed: none of the run's figures mean anything."""
        return not self.messages_per_s

    def count(self, i):
        return int(self.row[i]) if self.row[i].isdigit() else 0

    @property
    def lost(self):
        return (self.json or {}).get("datagrams", {}).get("lost", 0) if self.udp else 0

    @property
    def udp(self):
        return bool((self.json or {}).get("udp"))

    def why_failed(self):
        """What went wrong, from the note run.sh wrote (echoc's exit status and first line)."""
        m = re.search(r"exit (\d+):(.*)", self.row[10])
        if not m:
            return "no result"
        text = re.sub(r"\s+\d+ procs$", "", m.group(2)).replace("echoc: bench: ", "").strip()
        return f"exit {m.group(1)}" + (f": {text[:60]}" if text else "")


def read_runs(rundir, tsv):
    return [Run(n, row, rundir) for n, row in enumerate(lib.read_tsv(tsv), 1)]


def by_scenario(runs):
    """{scenario: {server: [runs]}}, both in the order they first ran."""
    out = {}
    for r in runs:
        out.setdefault(r.scenario, {}).setdefault(r.server, []).append(r)
    return out


def kind(runs):
    """pingpong, udp, connrate, bulk or idle: the echoc mode of a scenario's runs."""
    for r in runs:
        if r.json:
            return "udp" if r.json.get("udp") else r.json.get("mode", "pingpong")
    return "pingpong"


# ---------------------------------------------------------------- figures

class Metric:
    """A figure drawn as one bar per server: its name, axis, direction and where it comes from."""

    def __init__(self, key, title, axis, higher, get):
        self.key, self.title, self.axis, self.higher, self.get = key, title, axis, higher, get


def json_field(name):
    return lambda r: (r.json or {}).get(name)


def rate(r):
    return r.messages_per_s


THROUGHPUT = {
    "pingpong": Metric("rate", "messages per second", "messages/s", True, rate),
    "udp": Metric("rate", "datagrams per second", "datagrams echoed/s", True, rate),
    "connrate": Metric("rate", "connections per second", "connections/s (one echo each)", True,
                       rate),
    "bulk": Metric("rate", "throughput", "MB/s of echoed payload", True,
                   json_field("mbytes_per_s")),
    "idle": Metric("rss", "memory per idle connection", "RSS growth per connection, KiB", False,
                   lambda r: r.cell(7)),
}
CPU = Metric("cpu", "server CPU per message", "µs of server CPU per message", False,
             lambda r: r.cell(5))
TOTAL_CPU = Metric("syscpu", "total CPU per message (all CPUs)",
                   "µs of every CPU's busy time per message", False, lambda r: r.cell(11))


def problems(runs):
    """What a reader must see next to a server's figure: errors, mismatches, losses, failures."""
    out = []
    errors, mismatches = sum(r.count(8) for r in runs), sum(r.count(9) for r in runs)
    lost = sum(r.lost for r in runs)
    if errors:
        out.append(f"{errors} error{'s' if errors > 1 else ''}")
    if mismatches:
        out.append(f"{mismatches} mismatch{'es' if mismatches > 1 else ''}")
    if lost:
        out.append(f"{lost} lost")
    failed = [r for r in runs if r.failed]
    if failed and len(failed) < len(runs):
        out.append(f"{len(failed)} of {len(runs)} runs failed ({failed[0].why_failed()})")
    return ", ".join(out)


def bars(metric, servers):
    """(bars, the line explaining them) for one chart; (None, "") when no server has the figure."""
    out = []
    for srv, runs in servers.items():
        vals = sorted(v for v in (metric.get(r) for r in runs if not r.failed) if v is not None)
        if not vals:
            reason = runs[0].why_failed() if all(r.failed for r in runs) else "not measured"
            out.append({"server": srv, "value": None, "problem": "no result: " + reason})
            continue
        problem = problems(runs)
        out.append({"server": srv, "value": statistics.median(vals),
                    "lo": vals[0] if len(vals) > 1 else None,
                    "hi": vals[-1] if len(vals) > 1 else None,
                    "problem": problem, "best": False, "label": ""})
    measured = [b for b in out if b["value"] is not None]
    if not measured:
        return None, ""
    return out, label_bars(metric, measured)


def label_bars(metric, measured):
    """Marks the best clean bar, prints each value and its ratio to the best clean peer.

    Returns the line that explains the ratios.
    """
    pick = max if metric.higher else min
    clean = [b for b in measured if not b["problem"]]
    # The floor (bench/floor.c) is no server: neither the best nor what others are set against.
    servers = [b for b in clean if b["server"] != lib.FLOOR]
    if servers:
        pick(servers, key=lambda b: b["value"])["best"] = True
    peers = [b for b in servers if not charts.is_echod(b["server"])]
    ref = pick(peers, key=lambda b: b["value"]) if peers else None
    what = "best peer"
    if ref is None and servers:
        ref, what = pick(servers, key=lambda b: b["value"]), "best server"
    for b in measured:
        b["label"] = charts.number(b["value"])
        if ref and ref["value"] > 0:
            b["label"] += f" ({charts.ratio(b['value'] / ref['value'])})"
    better = "higher is better" if metric.higher else "lower is better"
    if not ref or ref["value"] <= 0:
        return f"{better};  ★ best"
    return f"{better};  ★ best;  (×) against {ref['server']}, the {what}"


def read_hist(path):
    """[(1/(1-p), latency µs)] for 0.5 <= p < 1, from a file in HdrHistogram's text format."""
    points = []
    with open(path) as f:
        for line in f:
            cols = line.split()
            if len(cols) != 4 or line.lstrip().startswith("#"):
                continue
            try:
                value, p = float(cols[0]), float(cols[1])
            except ValueError:
                continue  # the header
            if 0.5 <= p < 1:
                points.append((1 / (1 - p), value))
    return points


def latency_lines(servers):
    """One line per server: the run with the median messages/s among those with a distribution."""
    out = []
    for srv, runs in servers.items():
        with_hist = sorted((r for r in runs if r.hist and not r.failed),
                           key=lambda r: r.messages_per_s)
        if not with_hist:
            continue
        run = with_hist[(len(with_hist) - 1) // 2]
        points = read_hist(run.hist)
        if not points:
            continue
        problem = problems(runs)
        label = srv + (f" ({problem})" if problem else "")
        out.append({"server": srv, "points": points, "label": label, "problem": problem})
    return out


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def scenario_charts(scenario, servers, colour_of):
    """[(svg or None, note)] for one scenario: throughput (or memory), CPU, total CPU, latency."""
    out = []
    all_runs = [r for rs in servers.values() for r in rs]
    sid = slug(scenario)
    for fig in (THROUGHPUT.get(kind(all_runs), THROUGHPUT["pingpong"]), CPU, TOTAL_CPU):
        chart_bars, note = bars(fig, servers)
        if chart_bars is None:
            out.append((None, f"No {fig.title} figure for any server: no chart."))
            continue
        out.append((charts.bar_chart(f"{sid}.{fig.key}", fig.title, fig.axis, chart_bars,
                                     colour_of, note, f"{scenario}: {fig.title}"), ""))
    lines = latency_lines(servers)
    if lines:
        reps = max(len(rs) for rs in servers.values())
        note = f"of each server's {reps} runs, the one with the median messages/s" if reps > 1 \
            else ""
        name = f"{scenario}: latency by percentile"
        out.append((charts.latency_chart(f"{sid}.latency", "latency by percentile", lines,
                                         colour_of, note, name), ""))
    else:
        out.append((None, "No latency distribution (no echoc --hist file) for this scenario: "
                          "no chart."))
    return out


# ---------------------------------------------------------------- HTML

CSS = """
body { font: 15px/1.45 "DejaVu Sans", system-ui, sans-serif; color: #1a1a1a; margin: 0 auto;
       max-width: 1500px; padding: 1em 1.5em 3em; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.5em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin: 1.6em 0 0.4em; }
ul.env { padding-left: 1.2em; margin: 0.3em 0; }
ul.env li { margin: 0.1em 0; }
.notes li { color: #6b4e00; }
.key { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; margin: 0.8em 0; padding: 0;
       list-style: none; }
.key span { display: inline-block; width: 1.6em; height: 0.9em; vertical-align: -0.1em;
            margin-right: 0.35em; border-radius: 2px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr));
          gap: 1em 1.5em; align-items: start; }
svg.chart { width: 100%; max-width: 620px; height: auto; }
p.nochart { color: #666; font-style: italic; border: 1px dashed #bbb; padding: 0.6em; margin: 0; }
p.missing { color: #a00; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d5d5d5; padding: 0.2em 0.55em; }
th { background: #f2f2f2; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.bad { background: #fde2e2; color: #900; font-weight: bold; }
nav a { margin-right: 1em; }
footer { margin-top: 3em; color: #666; font-size: 0.85em; }
"""


def esc(text):
    return html.escape(str(text), quote=True)


CPU_FIGURES = lib.CPU_FIGURES


def markdown_bold(text):
    """Escaped text with Markdown's **bold** as <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(text))


def environment_html(facts):
    """The Markdown head run.sh writes (a title, "- key: value" lines, paragraphs) as HTML."""
    title, items, notes, paras = "echod benchmark", [], [], []
    for line in facts.splitlines():
        if line.startswith("# "):
            title = line[2:]
        elif line.startswith("- note: "):
            notes.append(f"<li>{esc(line[8:])}</li>")
        elif line.startswith("- "):
            key, sep, rest = line[2:].partition(": ")
            items.append(f"<li><b>{esc(key)}</b>{sep}{esc(rest)}</li>" if sep else
                         f"<li>{esc(line[2:])}</li>")
        elif line.strip():
            paras.append(f"<p>{esc(line)}</p>")
    out = [f"<h1>{esc(title)}</h1>", '<ul class="env">'] + items + ["</ul>"]
    if notes:
        out += ['<ul class="env notes">'] + notes + ["</ul>"]
    return title, out + paras


def colour_key(colour_of):
    items = [f'<li><span style="background: {c}"></span>{esc(s)}</li>'
             for s, c in colour_of.items()]
    return ['<ul class="key" aria-label="colour of each server">'] + items + ["</ul>"]


def table_html(header, rows, numeric_from=1, bad=()):
    """A table; cells from column numeric_from on are right-aligned unless they are words."""
    out = ["<table>", "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            cls = []
            if i >= numeric_from and re.match(r"^[-+]?[\d.]+", c) and header[i] != "notes":
                cls.append("n")
            if i in bad and c not in ("0", "-"):
                cls.append("bad")
            attr = f' class="{" ".join(cls)}"' if cls else ""
            cells.append(f"<td{attr}>{esc(c)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return out + ["</table>"]


def page(rows, runs, facts, run):
    """The whole report as one HTML document (also well-formed XML, so it parses either way)."""
    source = os.path.basename(run)
    title, env = environment_html(facts)
    scenarios = by_scenario(runs)
    servers = list(dict.fromkeys(r.server for r in runs))
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8"/>',
           '<meta name="viewport" content="width=device-width, initial-scale=1"/>',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>"]
    out += env
    links = [f'<a href="#{slug(sc)}">{esc(sc)}</a>' for sc in scenarios]
    out.append("<nav>Scenarios: " + " ".join(links) + ' <a href="#tables">tables</a></nav>')
    out.append('<h2 id="charts">Charts</h2>')
    if charts is None:
        out.append(f'<p class="missing">No charts: {esc(CHARTS_MISSING)}. They need the Debian '
                   f"package {PLOT_PACKAGE} (apt-get install -y {PLOT_PACKAGE}); then run "
                   f"bench/report.py {esc(run)} again.</p>")
    else:
        colour_of = charts.colours(servers)
        out += ["<p>One bar per server, the median of its runs (a whisker spans min to max when "
                "it ran more than once). A pale bar with a red dashed edge had errors, mismatches "
                "or lost datagrams; a server without a figure has no bar and says why. Latency: "
                "HdrHistogram's percentile plot from each server's echoc --hist file.</p>"]
        out.append(f'<p class="cpu">{markdown_bold(CPU_FIGURES)}</p>')
        out += colour_key(colour_of)
        for sc, srvs in scenarios.items():
            out += [f'<section id="{slug(sc)}">', f"<h3>{esc(sc)}</h3>", '<div class="charts">']
            for svg, note in scenario_charts(sc, srvs, colour_of):
                out.append(svg if svg else f'<p class="nochart">{esc(note)}</p>')
            out += ["</div>", "</section>"]
    out.append('<h2 id="tables">Tables</h2>')
    if charts is None:
        out.append(f'<p class="cpu">{markdown_bold(CPU_FIGURES)}</p>')
    groups = lib.grouped(rows)
    bad = tuple(1 + lib.COLS.index(c) for c in ("errors", "mismatches"))
    for sc, srvs in groups.items():
        out.append(f"<h3>{esc(sc)}</h3>")
        out += table_html(["server"] + lib.COLS, [cells for cells, _, _, _ in srvs.values()],
                          bad=bad)
    for t, header, table in lib.summaries(groups):
        out.append(f"<h3>{esc(t)}</h3>")
        out += table_html(header, table)
    out += [f"<footer>Made by bench/report.py from {esc(source)}.tsv and {esc(source)}/runs/."
            "</footer>",
            "</body>", "</html>"]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

def screenshot(html_path, png, size):
    """A picture of the page's top, size "WxH" CSS pixels, with headless Chromium."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        print("bench: no chromium for the screenshot: apt-get install -y chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="echod-report-") as profile:
        cmd = [browser, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               f"--user-data-dir={profile}", f"--window-size={size.replace('x', ',')}",
               f"--screenshot={os.path.abspath(png)}", "file://" + os.path.abspath(html_path)]
        if os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if r.returncode or not os.path.exists(png):
        print(f"bench: chromium failed ({r.returncode}): {r.stderr.strip()[-500:]}",
              file=sys.stderr)
        return 1
    print(f"bench: wrote {png}", file=sys.stderr)
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="bench/results/SUITE-DATE (the .tsv is RUN.tsv)")
    ap.add_argument("--md", help="Markdown report (default RUN.md)")
    ap.add_argument("--html", help="HTML report (default RUN/report.html)")
    ap.add_argument("--screenshot", metavar="PNG", help="also a picture of the page (chromium)")
    ap.add_argument("--size", default="1400x2000", help="screenshot size WxH (default %(default)s)")
    a = ap.parse_args(argv)
    run = a.run.rstrip("/")
    for ext in (".tsv", ".md", ".html"):
        run = run[:-len(ext)] if run.endswith(ext) else run
    md, page_path = a.md or run + ".md", a.html or os.path.join(run, "report.html")
    rows = lib.read_tsv(run + ".tsv")
    with open(os.path.join(run, "environment.md")) as f:
        facts = f.read()
    rel = os.path.relpath(page_path, os.path.dirname(os.path.abspath(md)) or ".")
    with open(md, "w") as f:
        f.write(lib.markdown(rows, facts, rel))
    os.makedirs(os.path.dirname(os.path.abspath(page_path)), exist_ok=True)
    with open(page_path, "w") as f:
        f.write(page(rows, read_runs(run, run + ".tsv"), facts, run))
    if charts is None:
        print(f"bench: no charts in the HTML report: {CHARTS_MISSING}; install {PLOT_PACKAGE}",
              file=sys.stderr)
    print(f"bench: wrote {md} and {page_path}", file=sys.stderr)
    return screenshot(page_path, a.screenshot, a.size) if a.screenshot else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
