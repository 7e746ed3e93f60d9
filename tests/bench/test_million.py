"""bench/million.py (make bench SUITE=million) without running a million.

What a user of the script relies on: a bad setting is refused in one line
before anything starts, and the report says how busy the CPUs were while the
pings ran, so a latency that is queueing for a CPU is not taken for echod's.

Run with Debian's interpreter: /usr/bin/python3 -m pytest -q tests/bench
"""

import importlib.util
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MILLION = os.path.join(HERE, "..", "..", "bench", "million.py")


def load_million():
    sys.path.insert(0, os.path.dirname(MILLION))  # million.py imports bench/lib.py
    try:
        spec = importlib.util.spec_from_file_location("million", MILLION)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.pop(0)
    return mod


million = load_million()


@pytest.mark.parametrize("name,value", [("MILLION_PING_RATE", "abc"),
                                        ("MILLION_PING_RATE", "50"),
                                        ("MILLION_PING_RATE", "-1"),
                                        ("MILLION_CONNS", "1e6")])
def test_bad_setting_is_one_line_naming_it(tmp_path, name, value):
    # No echod or echoc is started: the paths given do not even exist.
    env = dict(os.environ, **{name: value})
    r = subprocess.run([sys.executable, MILLION, "/nonexistent/echod", "/nonexistent/echoc",
                        str(tmp_path)], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], r.stderr
    assert not os.listdir(tmp_path)


def phase2_figures(busy_pct, note=""):
    return {"held": 1000000, "instances": 53, "capacity": 19992, "setup_s": 60.0,
            "setup_per_s": 16666.7, "echod_b_per_conn": 94, "slab_b_per_conn": 10100,
            "memfree_gib": 9.5, "memfree_b_per_conn": 10200, "sockstat_mem_mib": 1.0,
            "sockstat_b_per_conn": 0, "echoc_b_per_conn": 276, "verified": 1000000,
            "p50_us": 444.0, "p99_us": 15614.0, "errors": 0, "mismatches": 0,
            "took_s": 62.7, "ping_s": 200.5, "ping_cpu_busy_pct": busy_pct,
            "ping_cpu_us": 262.0, "ping_own_cpu_us": 161.0, "ping_echod_cpu_us": 70.0,
            "per_load": [{"name": "p2-load0", "p99": 12000.0},
                         {"name": "p2-load1", "p99": 16335.0}],
            "tcp_ping": {"RetransSegs": 22}, "note": note}


def test_report_shows_cpu_while_pinging_and_slowest_load():
    text = "\n".join(million.report_lines([], phase2_figures(67.0)))
    row = next(line for line in text.splitlines() if line.startswith("| while pinging"))
    assert "67%" in row and "262 µs" in row and "(161; 70 µs)" in row
    row = next(line for line in text.splitlines() if line.startswith("| slowest load"))
    assert "16,335 µs" in row and "22" in row


def test_saturated_cpus_get_a_note_and_idle_ones_none():
    assert million.saturation_note(67.0) == ""
    note = million.saturation_note(98.0)
    assert "98%" in note and "MILLION_PING_RATE" in note
    text = "\n".join(million.report_lines([], phase2_figures(98.0, note.strip())))
    assert "Note (phase 2):" in text and "waiting for a CPU" in text


def test_tcp_counters_are_read_from_this_kernel():
    c = million.tcp_counters()
    assert set(c) == set(million.TCP_COUNTERS)
    assert all(v >= 0 for v in c.values())
