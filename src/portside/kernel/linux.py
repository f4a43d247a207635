"""Thin wrappers for the Linux and C library calls the standard library lacks (setns, prctl,
and glibc's malloc statistics)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: The namespaces a kernel joins, in an order that works: the user namespace first (it grants
#: the capabilities the others need when the server is not root), the mount namespace last
#: (it moves the root directory, after which /proc paths of the host are no longer visible).
NAMESPACES = (
    ("user", CLONE_NEWUSER),
    ("ipc", CLONE_NEWIPC),
    ("uts", CLONE_NEWUTS),
    ("net", CLONE_NEWNET),
    ("pid", CLONE_NEWPID),
    ("mnt", CLONE_NEWNS),
)

_PR_SET_NAME = 15


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def setns_fd(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def open_namespaces(pid: int) -> list[tuple[int, int]]:
    """Opens the namespaces of ``pid`` that differ from ours; join them with ``setns_fd``.

    Opening all of them first matters: after joining the mount namespace, the host's /proc is
    no longer reachable at the same path.
    """
    fds = []
    for name, flag in NAMESPACES:
        theirs = f"/proc/{pid}/ns/{name}"
        if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
            continue
        fds.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), flag))
    return fds


def set_process_name(name: str) -> None:
    _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, which tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after ")".
    fields = stat[stat.rindex(b")") + 2 :].split()
    return int(fields[19])


class MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2``: what its malloc holds, in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


_libc.sbrk.restype = ctypes.c_size_t
_libc.sbrk.argtypes = [ctypes.c_ssize_t]
_libc.malloc.restype = ctypes.c_size_t
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_size_t]
#: glibc 2.33 and later; None with another C library.
_mallinfo2 = getattr(_libc, "mallinfo2", None)
if _mallinfo2 is not None:
    _mallinfo2.restype = MallInfo2


def mallinfo2() -> MallInfo2 | None:
    """malloc's statistics, or None where the C library is not glibc 2.33 or later."""
    return _mallinfo2() if _mallinfo2 is not None else None


def program_break() -> int:
    return int(_libc.sbrk(0))


def malloc(size: int) -> int:
    """The address of ``size`` new bytes from the C library's malloc (0 when it has none)."""
    return int(_libc.malloc(size))


def free(address: int) -> None:
    _libc.free(address)
