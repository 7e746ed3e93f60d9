"""CPU locality (--cpu-affinity): pinned workers, one steered listener each.

Every test makes the machine shape it needs by starting echod with a CPU
affinity of one or two of the CPUs this process may use, so it means the same
on 1, 2 or 128 CPUs; a test that needs two CPUs is skipped on one.
"""

import os
import signal
import socket
import subprocess

import pytest

from activate import activate, needs_socket_activate  # noqa: F401
from conftest import (CONCURRENT_MODELS, ECHOC, MODELS, best_concurrent_model, connect_to,
                      echo_stream, recv_exactly, wait_until)

PINNING_MODELS = [m for m in CONCURRENT_MODELS if m in ("epoll", "uring")]
needs_epoll = pytest.mark.skipif("epoll" not in MODELS, reason="epoll is not among ECHOD_MODELS")
ALLOWED = sorted(os.sched_getaffinity(0))
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2 CPUs to pin 2 workers")


def on_cpus(cpus):
    """Popen keyword arguments that start the process with exactly these CPUs allowed."""
    return {"preexec_fn": lambda: os.sched_setaffinity(0, cpus)}


def thread_cpus(pid):
    """{tid: Cpus_allowed_list} of every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        out[int(tid)] = line.split()[1]
        except OSError:
            pass  # a thread that just ended
    return out


def single_cpu_threads(pid):
    """The CPUs of the threads pinned to one CPU each, sorted."""
    return sorted(int(c) for c in thread_cpus(pid).values() if c.isdigit())


def tcp_listeners(port):
    """How many IPv4 TCP sockets listen on 127.0.0.1:port (from /proc/net/tcp)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return sum(1 for line in f.readlines()[1:]
                   if line.split()[1] == want and line.split()[3] == "0A")


def locality_line(srv):
    return srv.wait_for_line(r"cpu affinity: .*").group(0)


def start_model(echod, model, *args, cpus, listeners=None):
    """echod -m model on 127.0.0.1:0, with exactly cpus allowed."""
    srv = echod("-m", model, *args, listeners=listeners, **on_cpus(cpus))
    if srv.proc.poll() is not None:
        pytest.fail(f"echod exited: {srv.stderr_lines}")
    return srv


@pytest.mark.parametrize("model", PINNING_MODELS)
def test_workers_pinned_when_they_match_the_allowed_cpus(echod, model):
    """Default --workers is the allowed set (not the machine): each worker on its own CPU."""
    cpus = ALLOWED[:2]
    srv = start_model(echod, model, cpus=cpus)
    srv.wait_for_line(rf"engine {model}, {len(cpus)} workers?$")
    line = locality_line(srv)
    want = f"{len(cpus)} workers pinned to CPUs" if len(cpus) > 1 else "the worker pinned to CPU"
    assert want in line, line
    if len(cpus) > 1:
        # Each worker pins itself as it starts: wait for both, bounded.
        assert wait_until(lambda: single_cpu_threads(srv.proc.pid) == cpus, timeout=5), \
            thread_cpus(srv.proc.pid)
    with srv.connect() as s:
        assert echo_stream(s, b"pinned\n") == b"pinned\n"


@needs_two_cpus
@pytest.mark.parametrize("model", PINNING_MODELS)
@pytest.mark.parametrize("args, why", [
    (["-w", "3"], "3 workers, 2 CPUs allowed"),
    (["-w", "1"], "1 worker, 2 CPUs allowed"),
    (["--cpu-affinity", "off"], "--cpu-affinity off"),
])
def test_not_pinned_otherwise(echod, model, args, why):
    """Workers and CPUs that do not match, or off: unpinned, one shared listener, as before."""
    srv = start_model(echod, model, *args, cpus=ALLOWED[:2])
    line = locality_line(srv)
    assert f"workers not pinned ({why}" in line, line
    assert single_cpu_threads(srv.proc.pid) == []
    assert tcp_listeners(srv.port) == 1
    with srv.connect() as s:
        assert echo_stream(s, b"unpinned\n") == b"unpinned\n"


@needs_two_cpus
@pytest.mark.parametrize("model", PINNING_MODELS)
def test_cpu_list_in_its_own_order(echod, model):
    """--cpu-affinity LIST: worker i on the i-th CPU, however the list is ordered."""
    a, b = ALLOWED[0], ALLOWED[1]
    srv = start_model(echod, model, "--cpu-affinity", f"{b},{a}", cpus=ALLOWED)
    assert f"2 workers pinned to CPUs {b},{a}" in locality_line(srv)
    assert wait_until(lambda: single_cpu_threads(srv.proc.pid) == [a, b], timeout=5)
    assert tcp_listeners(srv.port) == 2


SCHED_NORMAL, SCHED_BATCH = 0, 3


def thread_policies(pid):
    """{tid: scheduling policy} of every thread of pid (/proc/PID/task/TID/stat field 41)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[38])
        except OSError:
            pass  # a thread that just ended
    return out


def pinned_policies(pid):
    """The policies of the threads pinned to one CPU each (the workers), sorted."""
    cpus = thread_cpus(pid)
    return sorted(p for tid, p in thread_policies(pid).items() if cpus.get(tid, "").isdigit())


@needs_two_cpus
@pytest.mark.parametrize("model", PINNING_MODELS)
@pytest.mark.parametrize("args, policy", [
    ([], SCHED_BATCH),
    (["--worker-sched", "normal"], SCHED_NORMAL),
])
def test_pinned_workers_run_sched_batch(echod, model, args, policy):
    """Pinned workers are SCHED_BATCH by default (the sandbox lets them), normal on request."""
    srv = start_model(echod, model, *args, cpus=ALLOWED[:2])
    line = locality_line(srv)
    assert ("workers SCHED_BATCH" in line) == (policy == SCHED_BATCH), line
    assert wait_until(lambda: pinned_policies(srv.proc.pid) == [policy, policy], timeout=5), \
        (thread_cpus(srv.proc.pid), thread_policies(srv.proc.pid))
    with srv.connect() as s:
        assert echo_stream(s, b"batched\n") == b"batched\n"
    assert srv.proc.poll() is None


@pytest.mark.parametrize("model", PINNING_MODELS)
def test_unpinned_workers_keep_the_normal_policy_unless_asked(echod, model):
    """auto leaves unpinned workers alone; --worker-sched batch applies to them too."""
    srv = start_model(echod, model, "--cpu-affinity", "off", cpus=ALLOWED)
    assert "SCHED_BATCH" not in locality_line(srv)
    assert set(thread_policies(srv.proc.pid).values()) == {SCHED_NORMAL}
    srv = start_model(echod, model, "--cpu-affinity", "off", "--worker-sched", "batch",
                      cpus=ALLOWED)
    assert "workers SCHED_BATCH" in locality_line(srv)
    assert wait_until(lambda: SCHED_BATCH in thread_policies(srv.proc.pid).values(), timeout=5)
    with srv.connect() as s:
        assert echo_stream(s, b"batched\n") == b"batched\n"


def test_bad_worker_sched_refused(run_echod):
    res = run_echod("--worker-sched", "fast", "-m", "epoll", "-l", "127.0.0.1:0")
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "--worker-sched" in lines[0], lines


@pytest.mark.parametrize("value, says", [
    ("", "is not a CPU number"),
    ("x", "is not a CPU number"),
    ("0,0", "CPU 0 is named twice"),
    ("3-1", "range 3-1 goes down"),
    ("1023", "CPU 1023 is not one echod may run on"),
])
def test_bad_cpu_lists_refused(run_echod, value, says):
    res = run_echod(f"--cpu-affinity={value}", "-m", "epoll", "-l", "127.0.0.1:0")
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "--cpu-affinity" in lines[0] and says in lines[0], lines


@pytest.mark.parametrize("args, says", [
    (["--cpu-affinity", str(ALLOWED[0]), "-w", "2", "-l", "127.0.0.1:0"],
     "names 1 CPU for 2 workers"),
    (["--cpu-affinity", str(ALLOWED[0]), "-m", "threads", "-l", "127.0.0.1:0"],
     "applies to the epoll and uring models"),
    (["--cpu-affinity", "off", "--inetd"], "cannot use --cpu-affinity with --inetd"),
])
def test_cpu_affinity_clashes_refused(run_echod, args, says):
    res = run_echod(*args)
    assert res.returncode == 2
    assert says in res.stderr and res.stderr.count("\n") == 1, res.stderr


def many_echoes(target, conns=40, size=3000):
    """conns connections at once, each from its own source port, each echoed byte-exact."""
    socks = [connect_to(target) for _ in range(conns)]
    try:
        payloads = [os.urandom(size) for _ in socks]
        for s, p in zip(socks, payloads):
            s.sendall(p)
        for s, p in zip(socks, payloads):
            assert recv_exactly(s, len(p)) == p
    finally:
        for s in socks:
            s.close()


@needs_two_cpus
@pytest.mark.parametrize("model", PINNING_MODELS)
def test_one_steered_listener_per_worker(echod, model):
    """Two workers on two CPUs: two listeners on the port, steered; every byte comes back.

    The load runs one thread pinned to each CPU (echoc bench --cpus), so both
    workers' listeners take connections; echoc verifies every echoed byte.
    """
    cpus = ALLOWED[:2]
    srv = start_model(echod, model, "--udp", cpus=cpus, listeners=2)
    assert [k for k, _ in srv.listening] == ["tcp", "udp"]  # one line per address
    line = locality_line(srv)
    assert "each connection steered to the worker on the CPU that receives it" in line, line
    assert tcp_listeners(srv.port) == 2
    many_echoes(srv.target)
    res = subprocess.run([ECHOC, "bench", "-c", "32", "-T", "2", "--cpus",
                          ",".join(map(str, cpus)), "-s", "300", "-d", "0.3", srv.target],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"udp too", ("127.0.0.1", srv.port))
        assert u.recvfrom(100)[0] == b"udp too"
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


@needs_two_cpus
@pytest.mark.parametrize("model", PINNING_MODELS)
def test_max_conns_across_worker_listeners(echod, model):
    """--max-conns counts over every worker's listener: the next waits, then is served."""
    srv = start_model(echod, model, "--max-conns", "2", cpus=ALLOWED[:2])
    a, b = srv.connect(), srv.connect()
    try:
        assert echo_stream(a, b"a", shut_wr=False) == b"a"
        assert echo_stream(b, b"b", shut_wr=False) == b"b"
        with srv.connect() as c:
            c.sendall(b"c")
            c.settimeout(0.3)
            with pytest.raises(socket.timeout):
                c.recv(1)
            a.close()
            assert recv_exactly(c, 1) == b"c"
    finally:
        a.close()
        b.close()


@needs_epoll
@needs_two_cpus
def test_unix_listener_stays_shared(echod, tmp_path):
    """A unix socket has no reuseport group: its one listener serves every worker."""
    path = str(tmp_path / "s")
    srv = start_model(echod, "epoll", "-l", f"unix:{path}", "-l", "127.0.0.1:0",
                      cpus=ALLOWED[:2])
    assert "steered" in locality_line(srv)
    for _ in range(4):
        with connect_to(path) as s:
            assert echo_stream(s, b"unix\n") == b"unix\n"
    many_echoes(srv.target, conns=8, size=100)


@needs_epoll
@needs_socket_activate
@needs_two_cpus
def test_socket_activation_falls_back_to_the_shared_listener(activate):  # noqa: F811
    """systemd's one socket cannot be split per worker: pinned, not steered, still serving."""
    cpus = ",".join(map(str, ALLOWED[:2]))
    run = activate([], ["127.0.0.1:{port}"], ["-m", "epoll", "--cpu-affinity", cpus])
    target = f"127.0.0.1:{run.port_asked}"
    with connect_to(target) as s:  # the first connection makes the tool exec echod
        run.wait_listening(1)
        assert echo_stream(s, b"first\n") == b"first\n"
    line = run.wait_for_line(r"cpu affinity: .*").group(0)
    assert "connections not steered (systemd passed one listening socket" in line, line
    assert tcp_listeners(run.port_asked) == 1
    many_echoes(target, conns=8, size=100)
    run.signal(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_bench_cpus_pins_the_load_threads(echod):
    """echoc bench --cpus: each load thread on its CPU (seen from /proc while it runs)."""
    srv = echod("-m", best_concurrent_model())
    cpu = ALLOWED[-1]
    load = subprocess.Popen([ECHOC, "bench", "-c", "2", "-T", "2", "--cpus", str(cpu),
                             "-d", "1", srv.target], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pinned = wait_until(lambda: len([c for c in thread_cpus(load.pid).values()
                                         if c == str(cpu)]) >= 2, timeout=5)
        assert pinned, thread_cpus(load.pid)
    finally:
        out, err = load.communicate(timeout=30)
    assert load.returncode == 0, out + err


def test_bench_cpus_refuses_bad_lists():
    res = subprocess.run([ECHOC, "bench", "--cpus", "1023", "127.0.0.1:1"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 2
    assert "--cpus 1023: CPU 1023 is not one this process may run on" in res.stderr


@needs_epoll
@needs_two_cpus
def test_second_echod_on_a_steered_port_is_refused(echod, run_echod):
    """The per-worker listeners use SO_REUSEPORT, yet a second echod may not join them."""
    srv = start_model(echod, "epoll", cpus=ALLOWED[:2])
    assert tcp_listeners(srv.port) == 2
    res = run_echod("-m", "epoll", "-l", srv.target)
    assert res.returncode == 1
    assert res.stderr.strip() == f"echod: bind {srv.target}: Address already in use"
    assert tcp_listeners(srv.port) == 2
