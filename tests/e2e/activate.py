"""Helpers for the socket activation and inetd tests (test_systemd.py, test_inetd.py).

systemd-socket-activate (Debian package systemd) binds the sockets, waits for
the first connection or datagram, and then execs echod with them (or, with
--accept, forks one per connection).  It cannot bind port 0, so a free port is
taken from the OS and the start retried when another process takes it first.
Each run is in a session of its own: teardown kills the whole group, with
any per-connection child, by the group id of the process it started.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ECHOD, START_TIMEOUT, Server

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
needs_socket_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None, reason="systemd-socket-activate not installed (Debian package systemd)")

BOUND_RE = re.compile(r"^Listening on (.+) as (\d+)\.$")
START_TRIES = 5
SANITIZER_VARS = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS")


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 free a moment ago (for a tool that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Activated(Server):
    """systemd-socket-activate [activate_args] -l ADDR... echod [echod_args].

    Reads the tool's "Listening on ... as N." lines, then echod's own, through
    the same stderr pipe (echod inherits it).
    """

    def __init__(self, activate_args, listen, echod_args, env=None, program=ECHOD):
        # The tool passes on only what it is told to: the sanitizers' settings too.
        passed = [f"--setenv={v}" for v in SANITIZER_VARS if v in (env or os.environ)]
        self.args = ([SOCKET_ACTIVATE] + passed + list(activate_args) +
                     [f"--listen={a}" for a in listen] + [program] + list(echod_args))
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True)
        self.stderr_lines = []
        self.listening = []
        self._buf = b""

    def wait_bound(self, count):
        """Waits until the tool has bound count sockets; False if it failed to."""
        bound = 0
        deadline = time.monotonic() + START_TIMEOUT
        while bound < count:
            line = self.read_stderr_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                return False
            bound += bool(BOUND_RE.match(line))
        return True

    def kill(self):
        """Kills the tool, or echod it became, and any child it spawned."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture
def activate():
    """Factory: activate(activate_args, listen, echod_args, env=None, program=ECHOD) -> Activated.

    listen is a list of addresses; "127.0.0.1:{port}" in one of them takes a
    free port (the same one in each, TCP or UDP as --datagram says), retried
    on collision.  Returns once every socket is bound; killed at teardown.
    """
    started = []

    def start(activate_args, listen, echod_args, env=None, program=ECHOD):
        kind = socket.SOCK_DGRAM if "--datagram" in activate_args else socket.SOCK_STREAM
        for _ in range(START_TRIES):
            port = free_port(kind)
            run = Activated(activate_args, [a.format(port=port) for a in listen],
                            [a.format(port=port) for a in echod_args], env=env, program=program)
            started.append(run)
            if run.wait_bound(len(listen)):
                run.port_asked = port
                return run
            run.kill()
        raise AssertionError(f"systemd-socket-activate could not bind: {run.stderr_lines}")

    yield start
    for run in started:
        run.kill()


# Runs argv[2:] with descriptor argv[1] moved to 3 and LISTEN_PID/LISTEN_FDS
# set for the process itself, as systemd does (the pid is known only after fork).
_SHIM = """
import os, sys
fd = int(sys.argv[1])
os.dup2(fd, 3)
if fd != 3:
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[2] == "self" else sys.argv[2]
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[3], sys.argv[3:])
"""


def run_with_listen_fd(sock, echod_args, listen_pid="self", names=None, timeout=10):
    """Runs echod with sock as systemd's descriptor 3 (named names, LISTEN_FDNAMES);
    returns CompletedProcess (text)."""
    env = dict(os.environ, LISTEN_FDNAMES=names) if names else None
    return subprocess.run([sys.executable, "-c", _SHIM, str(sock.fileno()), listen_pid, ECHOD] +
                          list(echod_args), pass_fds=[sock.fileno()], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env=env)


def start_with_listen_fd(sock, echod_args, listen_pid="self"):
    """Starts echod with sock as systemd's descriptor 3; returns a conftest Server."""
    srv = Server.__new__(Server)
    srv.args = [sys.executable, "-c", _SHIM, str(sock.fileno()), listen_pid, ECHOD] + list(echod_args)
    srv.proc = subprocess.Popen(srv.args, pass_fds=[sock.fileno()], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    srv.stderr_lines, srv.listening, srv._buf = [], [], b""
    return srv
