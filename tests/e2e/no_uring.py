#!/usr/bin/env python3
"""Runs a program with io_uring disabled, as a container runtime's seccomp profile does.

    no_uring.py [--errno EPERM|ENOSYS] PROGRAM [ARGS...]

Installs a seccomp filter that makes io_uring_setup(2) fail with the given
errno (default EPERM), then execs PROGRAM.  Needs no privileges: the filter
is installed after PR_SET_NO_NEW_PRIVS.  Linux only; io_uring_setup is
syscall 425 on every architecture that uses the generic syscall table
(x86_64, aarch64, ...).
"""

import ctypes
import errno
import os
import struct
import sys

NR_IO_URING_SETUP = 425
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000

BPF_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_JEQ_K = 0x15     # BPF_JMP | BPF_JEQ | BPF_K
BPF_RET_K = 0x06     # BPF_RET | BPF_K
OFFSET_NR = 0        # struct seccomp_data: int nr comes first


def insn(code, jt, jf, k):
    return struct.pack("HBBI", code, jt, jf, k)


def install(err):
    prog = b"".join([
        insn(BPF_LD_W_ABS, 0, 0, OFFSET_NR),
        insn(BPF_JEQ_K, 0, 1, NR_IO_URING_SETUP),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | err),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ])
    filt = ctypes.create_string_buffer(prog, len(prog))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog) // 8, ctypes.addressof(filt))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p,
                           ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def main(argv):
    err = errno.EPERM
    if len(argv) > 2 and argv[1] == "--errno":
        err = getattr(errno, argv[2])
        argv = argv[2:]
    if len(argv) < 2:
        sys.exit("usage: no_uring.py [--errno EPERM|ENOSYS] PROGRAM [ARGS...]")
    install(err)
    os.execv(argv[1], argv[1:])


if __name__ == "__main__":
    main(sys.argv)
