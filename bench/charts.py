"""bench/charts.py - the report's charts as SVG, drawn with matplotlib (python3-matplotlib).

Two kinds: a bar chart with one horizontal bar per server, and HdrHistogram's
latency-by-percentile plot with one line per server.  Each returns one <svg>
element as text, ready to be put inline into an HTML page: no XML declaration,
no metadata, the ids matplotlib makes for its own groups dropped (several
charts share one page, so those would repeat), and the ids that mark a server's
bar or line ("bar.SCENARIO.FIGURE.SERVER", "line.SCENARIO.SERVER") kept, so a
test can find them.

Figures are drawn on matplotlib.figure.Figure directly (no pyplot, no global
state) with the SVG backend, text kept as <text> in DejaVu Sans (the font
python3-matplotlib depends on), and a hash salt per chart so that the same
results always give the same bytes and no two charts share an id.
"""

import io
import xml.etree.ElementTree as ET

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

STYLE = {
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}

# echod's models in one family of blues (and teal for its UDP server); each
# peer in a hue of its own.  Fixed by name, so a server has the same colour in
# every chart and in every run.
COLOURS = {
    "echod-iterative": "#9cc9ea",
    "echod-threads": "#4f9bd9",
    "echod-epoll": "#1b5fa8",
    "echod-uring": "#0b2e5c",
    "echod": "#1aa3b3",
    "socat": "#ff7f0e",
    "socat-listen": "#c9a227",
    "ncat": "#d62728",
    "xinetd": "#9467bd",
    "node": "#2ca02c",
    "go": "#e377c2",
}
# For servers not named above, in the order they first appear.
SPARE = ["#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#843c39", "#637939"]
PROBLEM = "#c00000"
MUTED = "#666666"


def colours(servers):
    """{server: colour}: the fixed colours, then spare ones, never one colour twice."""
    out = {s: COLOURS[s] for s in servers if s in COLOURS}
    spare = [c for c in SPARE if c not in out.values()]
    for s in servers:
        if s not in out:
            out[s] = spare.pop(0) if spare else "#000000"
    return out


def is_echod(server):
    return server == "echod" or server.startswith("echod-")


def number(v):
    """A figure as a reader wants it: 33,548 / 512 / 51.7 / 4.50."""
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def tick(v, _pos=None):
    """An axis label: whole numbers with thousands separated, else as short as exact."""
    return f"{v:,.0f}" if v == int(v) else f"{v:g}"


def ratio(v):
    if v >= 10:
        return f"{v:.0f}×"
    if v < 0.01:
        return "<0.01×"
    return f"{v:.2f}×"


def bar_chart(chart_id, title, axis_label, bars, colour_of, note, name):
    """One horizontal bar per server, top to bottom in the order given.

    bars: dicts with server, value (None: no bar, the reason is printed in its
    place), lo and hi (the spread of repeated runs, or None), label (printed
    after the bar), best, problem (text printed in red; the bar is drawn pale
    with a red edge).  note: a line under the title (what the × figures mean).
    """
    fig = Figure(figsize=(5.0, 0.95 + 0.34 * len(bars)))
    ax = fig.add_subplot()
    top = max([b["hi"] or b["value"] for b in bars if b["value"] is not None] + [0])
    bottom = min([b["lo"] if b["lo"] is not None else b["value"]
                  for b in bars if b["value"] is not None] + [0])
    for y, b in enumerate(bars):
        draw_bar(ax, y, b, colour_of[b["server"]], top, chart_id)
    ax.set_yticks(range(len(bars)), [b["server"] for b in bars])
    ax.set_ylim(len(bars) - 0.5, -0.5)
    # Room on the right for the printed figures.
    ax.set_xlim(bottom * 1.1, top * 1.75 if top > 0 else 1)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.xaxis.set_major_formatter(FuncFormatter(tick))
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="x", color="#e4e4e4", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel(axis_label)
    title_with_note(ax, title, note)
    fig.tight_layout(pad=0.4)
    return svg(fig, chart_id, name)


def title_with_note(ax, title, note):
    ax.set_title(title, pad=18 if note else 6)
    if note:
        ax.text(0, 1.02, note, transform=ax.transAxes, fontsize=9, color=MUTED, va="bottom")


def draw_bar(ax, y, b, colour, top, chart_id):
    gid = f"{chart_id}.{b['server']}"
    if b["value"] is None:
        ax.text(0, y, "  " + b["problem"], va="center", ha="left", fontsize=9,
                color=PROBLEM, style="italic", gid="missing." + gid)
        return
    problem = bool(b["problem"])
    rect = ax.barh(y, b["value"], height=0.7, color=colour, alpha=0.45 if problem else 1,
                   edgecolor=PROBLEM if problem else ("#000000" if b["best"] else colour),
                   linewidth=1.4 if problem or b["best"] else 0,
                   linestyle="--" if problem else "-")[0]
    rect.set_gid("bar." + gid)
    end = b["value"]
    if b["lo"] is not None and b["hi"] is not None and b["hi"] > b["lo"]:
        ax.errorbar(b["value"], y, xerr=[[b["value"] - b["lo"]], [b["hi"] - b["value"]]],
                    fmt="none", ecolor="#333333", elinewidth=1, capsize=3)
        end = b["hi"]
    text = ("★ " if b["best"] else "") + b["label"]
    ax.text(max(end, 0) + top * 0.02, y, text, va="center", ha="left", fontsize=9,
            fontweight="bold" if b["best"] else "normal")
    if problem:
        # Under the figure, so the two never overlap however long the problem text.
        ax.annotate(b["problem"], (max(end, 0), y), xytext=(6, -9), textcoords="offset points",
                    va="center", ha="left", fontsize=7.5, color=PROBLEM)


PERCENTILE_TICKS = [(2, "50%"), (10, "90%"), (100, "99%"), (1000, "99.9%"), (10000, "99.99%")]


def latency_chart(chart_id, title, lines, colour_of, note, name):
    """HdrHistogram's plot: x = percentile on a log scale of 1/(1-p), p50 to p99.99.

    lines: dicts with server, points ([(1/(1-p), latency µs)], p >= 0.5) and
    label (the legend entry); a line with a problem is dashed.  note: a line
    under the title; name: the chart's accessible name.  The latency axis turns logarithmic when the
    servers differ more than tenfold, else one slow server would flatten all
    the others.
    """
    # The legend goes under the plot (inside, it would hide the lines it
    # names), in two columns unless a label is long.
    columns = 1 if max(len(line["label"]) for line in lines) > 30 else 2
    fig = Figure(figsize=(5.0, 3.2 + 0.17 * -(-len(lines) // columns)))
    ax = fig.add_subplot()
    ys = [v for line in lines for x, v in line["points"] if x <= 10000 and v > 0]
    xmax = max(x for line in lines for x, _ in line["points"])
    for line in lines:
        xs = [x for x, _ in line["points"]]
        vs = [v for _, v in line["points"]]
        art = ax.plot(xs, vs, color=colour_of[line["server"]], label=line["label"],
                      linewidth=2.2 if is_echod(line["server"]) else 1.6,
                      linestyle="--" if line["problem"] else "-", drawstyle="steps-post")[0]
        art.set_gid(f"line.{chart_id}.{line['server']}")
    ax.set_xscale("log")
    ax.set_xlim(2, min(max(xmax, 10), 10000))
    ticks = [t for t in PERCENTILE_TICKS if t[0] <= max(xmax, 10)]
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    log = ys and max(ys) > 10 * min(ys)
    if log:
        ax.set_yscale("log")
        # 1-2-5 steps over a range of a few decades; one label a decade above that.
        few = max(ys) < 300 * min(ys)
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if few else (1.0,)))
    else:
        ax.set_ylim(0, max(ys) * 1.08 if ys else 1)
    ax.yaxis.set_major_formatter(FuncFormatter(tick))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.grid(which="major", color="#e4e4e4", linewidth=0.8)
    ax.set_xlabel("percentile (log scale of 1/(1−p))")
    ax.set_ylabel("latency, µs" + (" (log scale)" if log else ""))
    title_with_note(ax, title, note)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.2), ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(pad=0.4)
    return svg(fig, chart_id, name)


def svg(fig, chart_id, name):
    """The figure as one inline <svg> element, with an id and name as its title."""
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    root = ET.fromstring(buf.getvalue())
    for meta in root.findall(f"{{{SVG_NS}}}metadata"):
        root.remove(meta)
    keep_needed_ids(root)
    root.set("id", "chart." + chart_id)
    root.set("class", "chart")
    root.set("role", "img")
    root.set("aria-label", name)
    for dim in ("width", "height"):  # the page sizes it, from the viewBox
        root.attrib.pop(dim, None)
    label = ET.Element(f"{{{SVG_NS}}}title")
    label.text = name
    root.insert(0, label)
    return ET.tostring(root, encoding="unicode")


def keep_needed_ids(root):
    """Drops the ids nothing refers to, except those of our bars, lines and notes."""
    text = ET.tostring(root, encoding="unicode")
    for el in root.iter():
        i = el.get("id")
        if i is None or i.split(".")[0] in ("bar", "line", "missing"):
            continue
        if f"#{i})" not in text and f'"#{i}"' not in text:
            del el.attrib["id"]


# The style matplotlib draws with (only the keys the charts need).
matplotlib.rcParams.update(STYLE)
