"""No new processes from the sandbox, even when the app runs as root: a seccomp filter.

``RLIMIT_NPROC=0`` stops fork for ordinary users, but the kernel exempts root (and the app may run as
root, as in our containers). So the sandbox process also installs a seccomp filter that fails
``fork``, ``vfork``, ``execve``, ``execveat`` and a ``clone`` without ``CLONE_THREAD`` with EPERM
(threads stay possible; ``clone3`` answers ENOSYS, so the C library falls back to ``clone``, whose
flags the filter can read). A filter cannot be removed, and it passes to nothing since nothing can
be started. Where seccomp is unavailable (not Linux, an unknown CPU, a kernel without it) the process
says so on stderr and relies on the other walls: the import deny list refuses ``os``,
``subprocess``, ``multiprocessing`` and ``ctypes``, and smolagents forbids dunder access.
"""

from __future__ import annotations

import ctypes
import platform
import struct

__all__ = ["block_new_processes"]

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000
_X32_BIT = 0x40000000
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
# offsets in struct seccomp_data: nr, arch, then args[0] (its low 32 bits, little-endian)
_NR, _ARCH, _ARG0 = 0, 4, 16

#: machine -> (AUDIT_ARCH_*, clone, clone3, the syscalls that start a program or a process)
_ARCHES = {
    "x86_64": (0xC000003E, 56, 435, (57, 58, 59, 322)),  # fork, vfork, execve, execveat
    "aarch64": (0xC00000B7, 220, 435, (221, 281)),  # execve, execveat (no fork/vfork syscalls)
}


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _program(arch: int, clone: int, clone3: int, denied: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jump-if-true, jump-if-false, k); jumps count instructions skipped."""
    n = len(denied)
    prog = [
        (_LD_ABS, 0, 0, _ARCH),
        (_JEQ, 1, 0, arch),
        (_RET, 0, 0, _ERRNO | _EPERM),  # another ABI (i386 on x86_64): this process never uses one
        (_LD_ABS, 0, 0, _NR),
        (_JGE, 0, 1, _X32_BIT),
        (_RET, 0, 0, _ERRNO | _EPERM),  # the x32 ABI
        (_JEQ, 0, 1, clone3),
        (_RET, 0, 0, _ERRNO | _ENOSYS),
        (_JEQ, 0, 3, clone),
        (_LD_ABS, 0, 0, _ARG0),
        (_JSET, 0, n + 2, _CLONE_THREAD),  # a process, not a thread: to the final EPERM
        (_RET, 0, 0, _ALLOW),
    ]
    prog += [(_JEQ, n - i, 0, nr) for i, nr in enumerate(denied)]
    prog += [(_RET, 0, 0, _ALLOW), (_RET, 0, 0, _ERRNO | _EPERM)]
    return prog


def block_new_processes() -> str | None:
    """Install the filter in this process; None when done, else why not."""
    spec = _ARCHES.get(platform.machine())
    if spec is None:
        return f"no seccomp filter for machine {platform.machine()!r}"
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in _program(*spec))
    buffer = ctypes.create_string_buffer(raw)
    fprog = _Fprog(len(raw) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        return f"no C library: {exc}"
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"prctl(PR_SET_NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}"
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"prctl(PR_SET_SECCOMP) failed: errno {ctypes.get_errno()}"
    return None
