"""bench/report.py renders a fixed set of results into the page a reader opens.

The results are tests/bench/fixtures/mini (see its README): real runs, a few
edited to fail.  The checks are what a reader relies on: the page parses (as
HTML and, since it is written well-formed, as XML with every SVG in it), every
scenario and server is there, a server keeps one colour everywhere and no two
servers share one, a figure that is missing gets no bar or no chart rather than
a zero, and errors are shown next to the figure they spoil.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/bench
"""

import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "..", "..", "bench", "report.py")
FIXTURE = os.path.join(HERE, "fixtures", "mini")
SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "wbr", "source"}


def tsv_rows():
    with open(FIXTURE + ".tsv") as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


SCENARIOS = list(dict.fromkeys(r[0] for r in tsv_rows()))
SERVERS = {sc: list(dict.fromkeys(r[1] for r in tsv_rows() if r[0] == sc)) for sc in SCENARIOS}


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def render(tmp_path, *python_args):
    """Copies the fixture to tmp_path and runs bench/report.py on it; returns (html, md, stderr)."""
    run = tmp_path / "mini"
    shutil.copytree(FIXTURE, run)
    shutil.copy(FIXTURE + ".tsv", str(run) + ".tsv")
    r = subprocess.run([sys.executable, *python_args, REPORT, str(run)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(run / "report.html", encoding="utf-8") as f, open(str(run) + ".md") as m:
        return f.read(), m.read(), r.stderr


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    text, md, _ = render(tmp_path_factory.mktemp("report"))
    return text, ET.fromstring(text), md


class TagChecker(html.parser.HTMLParser):
    """Every element closed, in order; no id twice."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.ids, self.errors = [], set(), []

    def handle_starttag(self, tag, attrs):
        self.note_id(attrs)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.note_id(attrs)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"</{tag}> closes nothing open at {self.getpos()}")

    def note_id(self, attrs):
        for k, v in attrs:
            if k == "id":
                if v in self.ids:
                    self.errors.append(f"id {v} twice")
                self.ids.add(v)


def charts(root):
    """{chart id without the "chart." prefix: <svg> element}."""
    return {s.get("id")[len("chart."):]: s for s in root.iter(SVG + "svg")}


def groups(svg, prefix):
    """{id: <g>} of the groups in svg whose id starts with prefix."""
    return {g.get("id"): g for g in svg.iter(SVG + "g") if g.get("id", "").startswith(prefix)}


def style(el, prop):
    """A property of the first drawn child's style attribute (matplotlib writes colours there)."""
    for child in el.iter():
        m = re.search(rf"(?:^|;)\s*{prop}:\s*([^;]+)", child.get("style", ""))
        if m:
            return m.group(1).strip()
    return None


def texts(svg):
    return ["".join(t.itertext()) for t in svg.iter(SVG + "text")]


def test_the_page_parses_as_html_and_as_xml(page):
    text, root, _ = page
    assert text.startswith("<!DOCTYPE html>")
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.errors == [] and checker.stack == []
    assert root.tag == "html" and root.find("head/meta").get("charset") == "utf-8"
    # Self-contained: nothing to fetch, nothing to run.
    assert "<script" not in text and "http://" not in text.replace(
        "http://www.w3.org/", "") and "https://" not in text


def test_every_chart_is_an_svg_with_a_name(page):
    _, root, _ = page
    found = charts(root)
    # Three bar charts per scenario (the figure, server CPU, total CPU), and a latency plot
    # where there are --hist files.
    assert len(found) == 3 * len(SCENARIOS) + len(SCENARIOS) - 1
    for chart_id, svg in found.items():
        assert svg.get("viewBox") and svg.find(SVG + "title").text, chart_id
        ET.fromstring(ET.tostring(svg))  # on its own too


def test_every_scenario_and_server_is_in_the_charts_and_the_tables(page):
    _, root, md = page
    found = charts(root)
    headings = ["".join(h.itertext()) for h in root.iter("h3")]
    for sc in SCENARIOS:
        assert headings.count(sc) == 2, sc  # once over its charts, once over its table
        assert f"### {sc}" in md
        for fig in ("rate" if not sc.startswith("idle") else "rss", "cpu", "syscpu"):
            svg = found[f"{slug(sc)}.{fig}"]
            drawn = {i.split(".")[-1] for i in groups(svg, "bar.")} | {
                i.split(".")[-1] for i in groups(svg, "missing.")}
            assert drawn == set(SERVERS[sc]), (sc, fig)
    table_servers = {"".join(tr[0].itertext()) for table in root.iter("table")
                     if "".join(table[0][0].itertext()) == "server" for tr in table[1:]}
    assert table_servers == {s for servers in SERVERS.values() for s in servers}


def test_each_server_has_one_colour_and_no_two_share_one(page):
    _, root, _ = page
    colour = {}
    for svg in charts(root).values():
        for gid, g in list(groups(svg, "bar.").items()) + list(groups(svg, "line.").items()):
            server = gid.split(".")[-1]
            c = style(g, "fill" if gid.startswith("bar.") else "stroke")
            assert colour.setdefault(server, c) == c, (gid, c, colour[server])
    every = {s for servers in SERVERS.values() for s in servers}
    assert set(colour) == every
    assert len(set(colour.values())) == len(every), colour


def test_echod_models_share_a_colour_family_and_peers_do_not(page):
    _, root, _ = page
    hue = {}
    for svg in charts(root).values():
        for gid, g in groups(svg, "bar.").items():
            r, g_, b = (int(style(g, "fill")[i:i + 2], 16) for i in (1, 3, 5))
            hue[gid.split(".")[-1]] = (r, g_, b)
    for server, (r, g_, b) in hue.items():
        bluish = b > r and b >= g_ - 40
        assert bluish == server.startswith("echod"), (server, hue[server])


def test_a_missing_figure_gets_no_bar_and_no_chart_never_a_zero(page):
    _, root, _ = page
    found = charts(root)
    # node's connection-rate run gave no result; ncat's bulk run echoed nothing.
    for chart_id, server in (("connection-rate.rate", "node"), ("connection-rate.cpu", "node"),
                             ("bulk-4-conns-x-64-kib.rate", "ncat"),
                             ("bulk-4-conns-x-64-kib.cpu", "ncat")):
        svg = found[chart_id]
        assert f"bar.{chart_id}.{server}" not in groups(svg, "bar.")
        note = "".join(groups(svg, "missing.")[f"missing.{chart_id}.{server}"].itertext()).strip()
        assert note.startswith("no result: exit"), note
    assert "no echo: Connection timed out" in " ".join(texts(found["bulk-4-conns-x-64-kib.rate"]))
    # No --hist files kept for the UDP runs: no latency chart, a note instead.
    assert "udp-4-x-64-b.latency" not in found
    section = next(s for s in root.iter("section") if s.get("id") == "udp-4-x-64-b")
    assert any("No latency distribution" in "".join(p.itertext()) for p in section.iter("p"))


def test_errors_mismatches_and_losses_are_shown_next_to_the_figure(page):
    _, root, _ = page
    found = charts(root)
    rate = found["50-conns-x-128-b.rate"]
    assert "bar.50-conns-x-128-b.rate.socat" in groups(rate, "bar.")
    assert "3 errors, 2 mismatches" in texts(rate)
    line = groups(found["50-conns-x-128-b.latency"], "line.")["line.50-conns-x-128-b.latency.socat"]
    assert style(line, "stroke-dasharray")  # dashed
    assert "5 lost" in texts(found["udp-4-x-64-b.rate"])
    # The tables flag them too.
    bad = ["".join(td.itertext()) for td in root.iter("td") if "bad" in td.get("class", "")]
    assert sorted(bad) == ["2", "3"]


def test_the_best_is_marked_and_values_are_relative_to_the_best_peer(page):
    _, root, _ = page
    labels = texts(charts(root)["1-conn-x-64-b.rate"])
    # echod-uring is fastest; node (16,754) the fastest peer.
    assert "★ 40,114 (2.39×)" in labels and "16,754 (1.00×)" in labels
    assert [t for t in labels if t.startswith("★")] == ["★ 40,114 (2.39×)"]
    # Lower is better for memory per idle connection.
    labels = texts(charts(root)["idle-conns.rss"])
    assert "★ 0.20 (<0.01×)" in labels and "32.8 (1.00×)" in labels
    # Runs with errors are never the best: socat's 50-connection CPU figures are.
    labels = texts(charts(root)["50-conns-x-128-b.cpu"])
    assert not [t for t in labels if t.startswith("★") and "188" in t]


def test_the_same_results_give_the_same_page(page, tmp_path):
    again, _, _ = render(tmp_path)
    assert again == page[0]


def test_without_matplotlib_the_page_has_the_tables_and_says_what_to_install(tmp_path):
    block = ("import runpy, sys; sys.modules['matplotlib'] = None; sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    text, md, err = render(tmp_path, "-c", block)
    root = ET.fromstring(text)
    assert "<svg" not in text
    missing = [p for p in root.iter("p") if p.get("class") == "missing"]
    assert "apt-get install -y python3-matplotlib" in "".join(missing[0].itertext())
    assert "python3-matplotlib" in err
    assert len([t for t in root.iter("table")]) >= len(SCENARIOS)
    assert all(f"### {sc}" in md for sc in SCENARIOS)


# ---------------------------------------------------------------- total CPU (all CPUs)

sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))
import lib  # noqa: E402 (bench/lib.py)


def table(root, scenario):
    """{server: {column: cell}} of a scenario's table in the HTML page."""
    h3 = [h for h in root.iter("h3") if "".join(h.itertext()) == scenario][-1]
    body = list(root.find("body"))
    tab = body[body.index(h3) + 1]
    assert tab.tag == "table", scenario
    header = ["".join(th.itertext()) for th in tab[0]]
    return {"".join(tr[0].itertext()): dict(zip(header, ("".join(td.itertext()) for td in tr)))
            for tr in tab[1:]}


def test_total_cpu_is_a_column_beside_server_cpu_and_a_chart(page):
    _, root, md = page
    total = "total CPU us/msg (all CPUs)"
    cells = table(root, "50 conns x 128 B")["echod-epoll"]
    header = list(cells)
    assert header.index(total) == header.index("server CPU us/msg") + 1
    # Two runs: the median and the spread, as for every figure.
    assert cells[total] == "16.24 [15.69-16.79]" and cells["busy % per CPU"] == "92/70"
    assert "| 7.29 [7.13-7.46] | 16.24 [15.69-16.79] |" in md
    labels = texts(charts(root)["1-conn-x-64-b.syscpu"])
    assert "★ 34.2 (0.35×)" in labels and "96.5 (1.00×)" in labels  # ncat: the best peer
    # Both reports say which figure to compare when.
    assert "Compare it across placements" in md
    assert any("what the host pays" in "".join(p.itertext()) for p in root.iter("p"))


def test_a_missing_total_cpu_is_missing_not_zero(page):
    _, root, _ = page
    # node's idle run has no /proc/stat figures; ncat's bulk run echoed nothing.
    assert table(root, "idle conns")["node"]["total CPU us/msg (all CPUs)"] == "-"
    assert table(root, "idle conns")["node"]["busy % per CPU"] == "-"
    assert table(root, "bulk 4 conns x 64 KiB")["ncat"]["total CPU us/msg (all CPUs)"] == "-"
    svg = charts(root)["idle-conns.syscpu"]
    assert "bar.idle-conns.syscpu.node" not in groups(svg, "bar.")
    note = "".join(groups(svg, "missing.")["missing.idle-conns.syscpu.node"].itertext())
    assert note.strip() == "no result: not measured"
    assert "bar.idle-conns.syscpu.echod-epoll" in groups(svg, "bar.")


def test_results_from_before_total_cpu_still_render(tmp_path):
    run = tmp_path / "mini"
    shutil.copytree(FIXTURE, run)
    with open(str(run) + ".tsv", "w") as f:
        f.writelines("\t".join(r[:11]) + "\n" for r in tsv_rows())
    r = subprocess.run([sys.executable, REPORT, str(run)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with open(run / "report.html", encoding="utf-8") as f:
        root = ET.fromstring(f.read())
    found = charts(root)
    assert not [c for c in found if c.endswith(".syscpu")]
    assert f"{slug(SCENARIOS[0])}.cpu" in found
    cells = table(root, "1 conn x 64 B")["echod-epoll"]
    assert cells["server CPU us/msg"] == "17.87"
    assert cells["total CPU us/msg (all CPUs)"] == "-" and cells["busy % per CPU"] == "-"
    notes = ["".join(p.itertext()) for p in root.iter("p") if p.get("class") == "nochart"]
    assert notes.count("No total CPU per message (all CPUs) figure for any server: no chart.") \
        == len(SCENARIOS)


def stat_words(*cpus):
    """A sysstat() word from (busy, idle) ticks per CPU."""
    return ",".join(f"{b}:{b + i}" for b, i in cpus)


def row(tmp_path, capsys, msgs, sys0, sys1, load=("1.00", "1.10"), server=("2.00", "2.10")):
    result = tmp_path / "r.json"
    result.write_text(json.dumps({
        "messages": msgs, "messages_per_s": msgs / 4, "latency_us": {"p50": 1, "p99": 2},
        "errors": 0, "mismatches": 0}))
    lib.row(str(result), "sc", "srv", "1", server[0], server[1], "100", "100", "1", "",
            sys0, sys1, *load)
    return capsys.readouterr().out.rstrip("\n").split("\t")


def test_total_cpu_counts_every_cpus_busy_ticks_over_the_window(tmp_path, capsys):
    tick = os.sysconf("SC_CLK_TCK")
    # Over the window CPU 0 was busy 4 s of 4, CPU 1 for 1 s of 4: 5 CPU-seconds.
    cells = row(tmp_path, capsys, 100000, stat_words((1000, 50), (7000, 300)),
                stat_words((1000 + 4 * tick, 50), (7000 + tick, 300 + 3 * tick)))
    assert cells[5] == "1.00"  # server: 0.1 s over 100,000 messages
    assert cells[11] == "50.00"  # 5 s over 100,000 messages
    assert cells[12] == "1.00" and cells[13] == "100/25"
    assert "total CPU < server + load" not in cells[10]


PROC_STAT = """cpu  900 90 300 5000 700 10 40 20 100 0
cpu0 500 50 200 2000 300 10 30 20 100 0
cpu1 400 40 100 3000 400 0 10 0 0 0
intr 123456 0 0
ctxt 987654
btime 1764600000
softirq 1000 1 2 3
"""


def test_total_cpu_counts_busy_fields_of_each_cpu_from_proc_stat():
    # user nice system idle iowait irq softirq steal guest guest_nice: busy is user, nice,
    # system, irq, softirq and steal (guest is inside user); idle and iowait are not busy.
    # The aggregate "cpu" line and the other lines (softirq included) are not CPUs.
    assert lib.sysstat(PROC_STAT) == "810:3110,550:3950"
    # This machine's: one pair per CPU line, busy never more than all.
    with open("/proc/stat") as f:
        cpus = [line for line in f if re.match(r"cpu\d+ ", line)]
    pairs = [tuple(map(int, w.split(":"))) for w in lib.sysstat().split(",")]
    assert len(pairs) == len(cpus) and all(0 <= busy <= every for busy, every in pairs)


def test_total_cpu_without_proc_stat_figures_is_missing(tmp_path, capsys):
    cells = row(tmp_path, capsys, 1000, "", "", load=("-", "-"))
    assert cells[11:] == ["-", "-", "-"]
    cells = row(tmp_path, capsys, 1000, stat_words((1, 1)), stat_words((1, 1), (2, 2)))
    assert cells[11] == "-"  # a CPU more at the end: not comparable


def test_a_total_below_server_plus_load_is_flagged(tmp_path, capsys):
    tick = os.sysconf("SC_CLK_TCK")
    # 1 s of busy CPU in all, but the server and the load claim 2 s: the sampling is wrong.
    cells = row(tmp_path, capsys, 1000, stat_words((0, 0), (0, 0)),
                stat_words((tick, 3 * tick), (0, 4 * tick)), load=("0", "1"),
                server=("0", "1"))
    assert "total CPU < server + load" in cells[10]


def test_a_total_within_the_sampling_error_is_not_flagged(tmp_path, capsys):
    tick = os.sysconf("SC_CLK_TCK")
    # Two CPUs half busy over 4 s: 4 s counted where the server and the load say 4.05 s.
    # Sampled every tick, 4 s of half-busy CPU is uncertain by more than that.
    cells = row(tmp_path, capsys, 1000, stat_words((0, 0), (0, 0)),
                stat_words((2 * tick, 2 * tick), (2 * tick, 2 * tick)), load=("0", "2.05"),
                server=("0", "2"))
    assert "total CPU" not in cells[10]
