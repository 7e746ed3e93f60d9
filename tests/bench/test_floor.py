"""The latency floor (bench/floor.c) and how the report holds servers up to it.

build/echod-floor must measure something and say it in the fields bench/lib.py
reads; lib.py must turn that into a "floor" row, set every server's latency
against it, and never count the floor as a peer echod is compared with.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/bench
"""

import json
import os
import socket
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import lib  # noqa: E402 (bench/lib.py)

FLOOR = os.environ.get("ECHOD_FLOOR_BIN",
                       os.path.join(ROOT, os.environ.get("B", "build"), "echod-floor"))
SCENARIO = "1 conn x 64 B, echoc --busy-poll"


def floor_json(tmp_path, p50, p99):
    path = tmp_path / f"floor-{p50}.json"
    path.write_text(json.dumps({"messages": 1000, "messages_per_s": 100000.0,
                                "latency_us": {"p50": p50, "p99": p99}}))
    return str(path)


def row(server, p50, p99, mps="90000"):
    """A TSV row as lib.row writes it: scenario, server, then the TSV_COLS (the last three unmeasured)."""
    cells = {"messages/s": mps, "p50 us": p50, "p99 us": p99, "server CPU us/msg": "10.00",
             "server RSS KiB": "2400", "RSS delta KiB/conn": "0.0", "errors": "0",
             "mismatches": "0", "notes": ""}
    return [SCENARIO, server] + [cells.get(c, "-") for c in lib.TSV_COLS]


def floor_rows(tmp_path, capsys, *p50s):
    rows = []
    for p50 in p50s:
        lib.floor(floor_json(tmp_path, p50, 2 * p50), SCENARIO)
        rows.append(capsys.readouterr().out.rstrip("\n").split("\t"))
    return rows


@pytest.mark.skipif(not os.access(FLOOR, os.X_OK), reason=f"{FLOOR} not built (make)")
def test_the_floor_program_measures_round_trips_and_says_so_in_json():
    r = subprocess.run([FLOOR, "-n", "2000", "--json"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["messages"] == 2000
    assert 0 < out["latency_us"]["p50"] <= out["latency_us"]["p99"]
    assert out["messages_per_s"] > 0


@pytest.mark.skipif(not os.access(FLOOR, os.X_OK), reason=f"{FLOOR} not built (make)")
def test_the_floor_program_refuses_a_bad_option_in_one_line():
    r = subprocess.run([FLOOR, "-n", "0"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["echod-floor: -n 0: must be 1 to 100000000"]


@pytest.mark.skipif(not os.access(FLOOR, os.X_OK), reason=f"{FLOOR} not built (make)")
def test_the_floor_client_alone_measures_another_server():
    """-p PORT: the spinning client against a server of the caller's (here a Python echo)."""
    lst = socket.create_server(("127.0.0.1", 0))
    lst.settimeout(30)

    def echo():
        conn, _ = lst.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    r = subprocess.run([FLOOR, "-n", "500", "-p", str(lst.getsockname()[1])],
                       capture_output=True, text=True, timeout=60)
    t.join(10)
    lst.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("spinning client against 127.0.0.1, 1 conn x 64 B")
    assert "500 round trips: p50 " in r.stdout


ECHOC = os.path.join(ROOT, os.environ.get("B", "build"), "echoc")


@pytest.mark.skipif(not (os.access(FLOOR, os.X_OK) and os.access(ECHOC, os.X_OK)),
                    reason="echod-floor or echoc not built (make)")
def test_the_floor_server_alone_serves_echoc_bench_and_exits_after_it():
    """-l PORT: the spinning server for a client of the caller's; every echo verified."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = subprocess.Popen([FLOOR, "-l", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        assert lib.waitport("tcp", port, 10) == 0, "echod-floor -l did not listen"
        r = subprocess.run([ECHOC, "bench", "--busy-poll", "--json", "-c", "1", "-d", "0.3",
                            f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["messages"] > 0 and out["errors"] == 0 and out["mismatches"] == 0
        assert srv.wait(timeout=10) == 0, srv.stderr.read()
    finally:
        srv.kill()
        srv.wait()


def test_the_floor_row_has_its_latency_and_no_server_figures(tmp_path, capsys):
    (r,) = floor_rows(tmp_path, capsys, 6.5)
    assert len(r) == 2 + len(lib.TSV_COLS)
    assert r[:2] == [SCENARIO, lib.FLOOR]
    got = dict(zip(lib.TSV_COLS, r[2:]))
    assert (got["p50 us"], got["p99 us"]) == ("6.5", "13.0")
    assert got["server CPU us/msg"] == "-"
    assert got["total CPU us/msg (all CPUs)"] == "-"


def test_every_server_is_set_against_the_median_floor(tmp_path, capsys):
    rows = floor_rows(tmp_path, capsys, 6.0, 7.0, 9.0)
    rows += [row("echod-epoll-busy", "10.5", "28.0"), row("echod-epoll", "70.0", "140.0")]
    title, header, table = lib.floor_ratios(lib.grouped(rows))
    assert "floor" in title
    ratios = {r[1]: (r[header.index("p50 / floor")], r[header.index("p99 / floor")])
              for r in table}
    assert ratios == {"echod-epoll-busy": ("1.50", "2.00"), "echod-epoll": ("10.00", "10.00")}


def test_the_floor_is_never_the_peer_echod_is_compared_with(tmp_path, capsys):
    rows = floor_rows(tmp_path, capsys, 6.0)
    rows += [row("echod-epoll", "70.0", "140.0", mps="14000")]
    assert lib.best_ratios(lib.grouped(rows)) is None  # no peer ran, only the floor
    rows += [row("socat", "80.0", "160.0", mps="12000")]
    (ratio,) = lib.best_ratios(lib.grouped(rows))[2]
    assert ratio[2].startswith("socat")


def test_without_a_floor_there_is_no_floor_table():
    rows = [row("echod-epoll", "70.0", "140.0")]
    assert lib.floor_ratios(lib.grouped(rows)) is None
