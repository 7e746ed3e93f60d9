"""The sandbox echod enters after start-up: no new privileges, a seccomp
allow-list per engine, Landlock, restricted io_uring rings; --no-sandbox.

That the sandbox is on is read from /proc/PID/task/*/status, for every
thread.  That it refuses what it should is shown from outside, the way code
injected into echod would meet it: the test attaches to the running server
with ptrace(2) and makes one of its threads execute one system call
(x86_64 only).  The same call in a server started with --no-sandbox shows
that the injection itself works, so a refusal is the sandbox's doing.

Every other test file runs with the sandbox on, since it is the default:
the whole suite passing per engine is the proof that the allow-lists are
complete.
"""

import ctypes
import errno
import os
import platform
import pwd
import resource
import signal

import pytest

from conftest import (MODELS, assert_echo, connect_to, proc_status, wait_until)

SANDBOX_LINE = r"^echod: sandbox: (.*)$"


def no_core_dumps():
    """A death by SIGSYS would dump core into the test's directory."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def start(echod, *args, **kwargs):
    """echod with -v, once it says it is confined (or that it is not)."""
    srv = echod("-v", *args, preexec_fn=no_core_dumps, **kwargs)
    srv.wait_for_line(r"^echod: sandbox: ")
    return srv


def seccomp_or_skip(srv):
    said = srv.wait_for_line(SANDBOX_LINE).group(1)
    if "no seccomp" in said:
        pytest.skip(f"echod runs without seccomp here: {said}")


def landlock_or_skip(srv):
    said = srv.wait_for_line(SANDBOX_LINE).group(1)
    if "no Landlock" in said:
        pytest.skip(f"echod runs without Landlock here: {said}")


def thread_status(pid):
    """{tid: {field: value}} of every thread's NoNewPrivs, Seccomp, Seccomp_filters."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in ("NoNewPrivs", "Seccomp", "Seccomp_filters"):
                        fields[key] = int(value)
        except FileNotFoundError:  # the thread has just ended
            continue
        out[int(tid)] = fields
    return out


def own_status():
    return thread_status(os.getpid())[os.getpid()]


# ---------------------------------------------------------------------------
# System call injection with ptrace(2), x86_64.

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

PTRACE_SINGLESTEP, PTRACE_GETREGS, PTRACE_SETREGS, PTRACE_DETACH = 9, 12, 13, 17
PTRACE_SEIZE, PTRACE_INTERRUPT = 0x4206, 0x4207
WALL = 0x40000000  # waitpid: any thread
SYSCALL_INSN = b"\x0f\x05"
NR = {"socket": 41, "unlink": 87, "rt_sigtimedwait": 128, "io_uring_setup": 425}
AF_INET, SOCK_STREAM = 2, 1


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86_64)."""
    _fields_ = [(name, ctypes.c_ulonglong) for name in (
        "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax "
        "rip cs eflags rsp ss fs_base gs_base ds es fs gs").split()]


def ptrace(request, tid, addr=0, data=0):
    if libc.ptrace(request, tid, addr, data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request}, {tid}): {os.strerror(err)}")


def needs_injection():
    if platform.machine() != "x86_64":
        pytest.skip(f"system call injection is written for x86_64, not {platform.machine()}")


def signal_thread(pid):
    """The tid of echod's signal thread, once it waits in sigwait(3)."""
    def find():
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    if f.read().split()[0] == str(NR["rt_sigtimedwait"]):
                        return int(tid)
            except (FileNotFoundError, IndexError):
                continue
        return None
    tid = wait_until(find)
    assert tid, f"no thread of echod {pid} waits for signals"
    return tid


class Died(Exception):
    """The process died of the injected call; status is the waitpid(2) status."""

    def __init__(self, status):
        super().__init__(f"died, status {status:#x}")
        self.status = status


def inject(pid, tid, nr, *args, data=None):
    """Makes thread tid, stopped in a system call, execute system call nr once.

    args go to the argument registers; with data (bytes), data is written
    below the thread's stack pointer and its address is the first argument.
    Returns the call's result (a negative errno on failure), after putting
    the thread back where it was; raises Died if the process died of it.
    """
    try:
        ptrace(PTRACE_SEIZE, tid)
    except PermissionError as e:
        pytest.skip(f"cannot trace echod here: {e}")
    saved = Regs()
    try:
        ptrace(PTRACE_INTERRUPT, tid)
        _, status = os.waitpid(tid, WALL)
        assert os.WIFSTOPPED(status), f"{status:#x}"
        ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(saved))
        regs = Regs.from_buffer_copy(saved)
        # The thread sleeps in a system call: the instruction before rip is
        # the syscall instruction to run again, with other registers.
        with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
            mem.seek(saved.rip - 2)
            assert mem.read(2) == SYSCALL_INSN, "thread not stopped in a system call"
            if data is not None:
                addr = (saved.rsp - 4096) & ~15
                mem.seek(addr)
                mem.write(data)
                args = (addr,) + args
        regs.rip, regs.rax, regs.orig_rax = saved.rip - 2, nr, 2**64 - 1  # no restart
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args):
            setattr(regs, name, value)
        ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(regs))
        ptrace(PTRACE_SINGLESTEP, tid)
        _, status = os.waitpid(tid, WALL)
        if not os.WIFSTOPPED(status):
            raise Died(status)
        ptrace(PTRACE_GETREGS, tid, 0, ctypes.addressof(regs))
        result = ctypes.c_longlong(regs.rax).value
        ptrace(PTRACE_SETREGS, tid, 0, ctypes.addressof(saved))
        ptrace(PTRACE_DETACH, tid)
        return result
    except Died:
        raise
    except BaseException:
        try:
            ptrace(PTRACE_DETACH, tid)
        except OSError:
            pass
        raise


def assert_killed_by_sigsys(srv, call):
    assert srv.wait_exit(10) == -signal.SIGSYS, (
        f"{call} did not kill echod by SIGSYS: {srv.stderr_lines}")


# ---------------------------------------------------------------------------


def test_help_offers_no_sandbox(run_echod):
    r = run_echod("--help")
    assert "--no-sandbox" in r.stdout


@pytest.mark.parametrize("model", MODELS)
def test_every_thread_is_confined_by_default(echod, model):
    srv = start(echod, "-m", model, "--udp")
    seccomp_or_skip(srv)
    with srv.connect() as s:
        assert_echo(s)  # the engine runs: its workers (threads: this connection's) exist

        def confined():
            st = thread_status(srv.proc.pid)
            return all(t.get("NoNewPrivs") == 1 and t.get("Seccomp") == 2 and
                       t.get("Seccomp_filters", 0) > own_status().get("Seccomp_filters", 0)
                       for t in st.values()) and st
        assert wait_until(confined), thread_status(srv.proc.pid)
        # main (the engine's), signal, UDP worker, at least
        assert len(thread_status(srv.proc.pid)) >= 3
        assert_echo(s)


def test_no_sandbox_leaves_the_process_as_it_was(echod):
    srv = start(echod, "--no-sandbox", "--udp")
    assert "off (--no-sandbox)" in srv.wait_for_line(SANDBOX_LINE).group(1)
    mine = own_status()
    for tid, st in thread_status(srv.proc.pid).items():
        assert st == mine, f"thread {tid}: {st}, not as started ({mine})"
    with srv.connect() as s:
        assert_echo(s)


@pytest.mark.parametrize("model", MODELS)
def test_a_call_outside_the_allow_list_kills_the_server(echod, model):
    needs_injection()
    srv = start(echod, "-m", model)
    seccomp_or_skip(srv)
    with srv.connect() as s:
        assert_echo(s)
    with pytest.raises(Died):
        inject(srv.proc.pid, signal_thread(srv.proc.pid), NR["socket"], AF_INET, SOCK_STREAM, 0)
    assert_killed_by_sigsys(srv, "socket(2)")


def test_without_sandbox_the_same_call_runs_and_the_server_goes_on(echod):
    needs_injection()
    srv = start(echod, "--no-sandbox")
    fd = inject(srv.proc.pid, signal_thread(srv.proc.pid), NR["socket"], AF_INET, SOCK_STREAM, 0)
    assert fd >= 0, os.strerror(-fd)
    assert os.path.exists(f"/proc/{srv.proc.pid}/fd/{fd}")
    with srv.connect() as s:
        assert_echo(s)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


def wait_rings_forbidden(srv):
    """The uring engine adds a second filter once every ring is started."""
    assert wait_until(lambda: proc_status(srv.proc.pid, "Seccomp_filters") >=
                      own_status().get("Seccomp_filters", 0) + 2), thread_status(srv.proc.pid)


@pytest.mark.skipif("uring" not in MODELS, reason="uring not among ECHOD_MODELS")
def test_uring_no_new_ring_can_be_created(echod):
    needs_injection()
    srv = start(echod, "-m", "uring", "-w", "2")
    seccomp_or_skip(srv)
    wait_rings_forbidden(srv)
    with srv.connect() as s:
        assert_echo(s)
    with pytest.raises(Died):
        inject(srv.proc.pid, signal_thread(srv.proc.pid), NR["io_uring_setup"], 8, 0)
    assert_killed_by_sigsys(srv, "io_uring_setup(2)")


@pytest.mark.skipif("uring" not in MODELS, reason="uring not among ECHOD_MODELS")
def test_uring_without_sandbox_a_ring_can_be_created(echod):
    needs_injection()
    srv = start(echod, "-m", "uring", "--no-sandbox")
    # A NULL io_uring_params: the kernel got the call, and says so.
    assert inject(srv.proc.pid, signal_thread(srv.proc.pid),
                  NR["io_uring_setup"], 8, 0) == -errno.EFAULT
    with srv.connect() as s:
        assert_echo(s)


def test_landlock_lets_echod_remove_files_only_beside_its_socket(echod, tmp_path):
    needs_injection()
    (tmp_path / "run").mkdir()
    (tmp_path / "data").mkdir()
    sock = tmp_path / "run" / "echod.sock"
    beside, elsewhere = tmp_path / "run" / "stale", tmp_path / "data" / "precious"
    beside.write_text("x")
    elsewhere.write_text("x")
    srv = start(echod, "-l", f"unix:{sock}", "-l", "127.0.0.1:0")
    landlock_or_skip(srv)
    tid = signal_thread(srv.proc.pid)
    path = str(elsewhere).encode() + b"\0"
    assert inject(srv.proc.pid, tid, NR["unlink"], data=path) == -errno.EACCES
    assert elsewhere.exists()
    assert inject(srv.proc.pid, tid, NR["unlink"], data=str(beside).encode() + b"\0") == 0
    assert not beside.exists()
    with connect_to(str(sock)) as s:
        assert_echo(s)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0
    assert not sock.exists(), "the socket was not removed at exit"


def test_without_sandbox_echod_could_remove_any_file(echod, tmp_path):
    needs_injection()
    victim = tmp_path / "precious"
    victim.write_text("x")
    srv = start(echod, "--no-sandbox", "-l", f"unix:{tmp_path / 'echod.sock'}")
    path = str(victim).encode() + b"\0"
    assert inject(srv.proc.pid, signal_thread(srv.proc.pid), NR["unlink"], data=path) == 0
    assert not victim.exists()


def test_user_drops_privileges_then_the_sandbox_applies(echod):
    if os.geteuid() != 0:
        pytest.skip("--user needs root")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody")
    srv = start(echod, "--user", "nobody")
    seccomp_or_skip(srv)
    assert proc_status(srv.proc.pid, "Uid") == nobody.pw_uid
    assert proc_status(srv.proc.pid, "NoNewPrivs") == 1
    assert proc_status(srv.proc.pid, "Seccomp") == 2
    with srv.connect() as s:
        assert_echo(s)
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit() == 0


def test_verbose_says_what_confines_echod(echod):
    said = start(echod).wait_for_line(SANDBOX_LINE).group(1)
    assert said.startswith("no new privileges, "), said
    assert "Landlock" in said and "seccomp" in said, said
