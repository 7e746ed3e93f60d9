"""echoc bench --mode idle: many connections, spread over --source addresses.

Each connection binds to one of the --source addresses in turn before its
connect; once every connection is up and has had one echo verified, echoc
says so in one line and goes on holding them.  The sockets the kernel shows
must come from those addresses, every echo must be verified, and a
--source echoc cannot use is refused in one line.
"""

import json
import re
import resource
import select
import signal
import subprocess
import time

import pytest

from conftest import ECHOC, best_concurrent_model

RUN_TIMEOUT = 30
UP_RE = re.compile(rb"bench: idle: (\d+) connections up in [\d.]+ s \(\d+/s\), (\d+) errors; "
                   rb"echoc RSS \d+ KiB; waiting for SIGUSR1 to ping")
MILESTONE_RE = re.compile(rb"bench: idle: (\d+) connections up in [\d.]+ s \(\d+/s\), "
                          rb"(\d+) echoed once and verified, (\d+) errors")


def established_from(port):
    """{local IPv4 address: count} of ESTABLISHED sockets connected to 127.0.0.1:port."""
    counts = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state != "01" or remote != "0100007F:%04X" % port:
                continue
            # /proc/net/tcp prints the address as a host-order (little-endian) word.
            ip = ".".join(str(b) for b in reversed(bytes.fromhex(local.split(":")[0])))
            counts[ip] = counts.get(ip, 0) + 1
    return counts


def read_line(proc, pattern, timeout=RUN_TIMEOUT):
    """Reads echoc's stderr until a line matches pattern; returns its match."""
    buf, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = proc.stderr.read1(4096)
        if not chunk:
            break
        buf += chunk
        m = pattern.search(buf)
        if m:
            return m
    raise AssertionError(f"no line matching {pattern.pattern!r} from echoc: {buf!r}")


def test_idle_spreads_connections_over_source_addresses(echod):
    srv = echod("-m", best_concurrent_model(), "-q")
    proc = subprocess.Popen([ECHOC, "bench", "--json", "--mode", "idle", "-c", "300",
                             "--source", "127.0.0.2-127.0.0.4", "--pings", "1", "--ping-on-usr1",
                             "--rate", "3000", "-T", "2", "-d", "60", srv.target],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        m = read_line(proc, UP_RE)
        assert (int(m[1]), int(m[2])) == (300, 0)
        # Held: the kernel shows them, a hundred from each source address.
        assert established_from(srv.port) == {"127.0.0.2": 100, "127.0.0.3": 100,
                                              "127.0.0.4": 100}
        proc.send_signal(signal.SIGUSR1)  # now ping, once each
        m = read_line(proc, MILESTONE_RE)
        assert (int(m[1]), int(m[2]), int(m[3])) == (300, 300, 0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["errors"] == 0 and report["mismatches"] == 0
    assert report["messages"] == 300  # --pings 1: one echo on each connection, no more
    idle = report["idle"]
    assert idle["up"] == 300 and idle["verified"] == 300 and idle["sources"] == 3
    assert idle["setup_per_s"] > 0 and idle["rss_kib"] > 0
    assert 0 < idle["first_echo_us"]["p50"] <= idle["first_echo_us"]["p99"]


def test_idle_raises_its_own_descriptor_limit(echod, run_echoc):
    srv = echod("-m", best_concurrent_model(), "-q")
    res = subprocess.run([ECHOC, "bench", "--json", "--mode", "idle", "-c", "400", "--pings",
                          "1", "--rate", "4000", "-d", "1", srv.target],
                         capture_output=True, timeout=RUN_TIMEOUT,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE,
                                                               (64, 2000)))
    assert res.returncode == 0, res.stderr.decode()
    assert json.loads(res.stdout)["idle"]["verified"] == 400


@pytest.mark.parametrize("args,status,words", [
    (["--source", "127.0.0.x"], 2, "--source 127.0.0.x"),
    (["--source", "127.0.0.9-127.0.0.2"], 2, "--source 127.0.0.9-127.0.0.2"),
    (["--source", "::1"], 2, "not of the target's family"),
    (["--source", "127.0.0.2", "-u"], 2, "--source"),
    (["--pings", "1"], 2, "--pings"),
    (["--ping-on-usr1"], 2, "--ping-on-usr1"),
    (["--mode", "idle", "--source", "192.0.2.1"], 1, "--source 192.0.2.1: bind"),
])
def test_idle_bad_source_one_line(echod, run_echoc, args, status, words):
    srv = echod("-m", best_concurrent_model(), "-q")
    res = run_echoc("bench", "-d", "1", *args, srv.target, timeout=RUN_TIMEOUT)
    err = res.stderr.decode().strip().splitlines()
    assert res.returncode == status
    assert len(err) == 1 and words in err[0], err
