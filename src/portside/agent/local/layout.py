"""Where the local backend keeps each kernel's files: two places, for two kinds of file.

A kernel's *scratch* directory is the session's ``/home/work``: user files, possibly large, so
it lives on disk in the data directory (``<data_dir>/scratch/<kernel>``).

Everything else a kernel has (its sockets, connection file, log, exit record, state file and
passwd) is a dozen small files made for each kernel and gone with it.  Those live in a *run*
directory on a memory file system where the machine has one, as other services keep their
sockets in ``/run``: on a disk file system, allocating their inodes cost each session start
several milliseconds of CPU (bench/README.md, "creations per second").  They need not outlive
the machine's processes: after a reboot the kernels they describe are gone too, and the
server then cleans up the scratch directories nothing refers to any more.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from portside.agent.base import AgentError

#: Memory file systems to keep run directories on, the first that exists and is writable.
#: ``XDG_RUNTIME_DIR`` is the user's own (a desktop session's); ``/dev/shm`` is on every Linux.
MEMORY_DIRS = ("$XDG_RUNTIME_DIR", "/dev/shm")


def data_dir_digest(data_dir: Path) -> str:
    """A short name for a data directory, so that servers on different ones never share run
    directories or cgroups."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def cgroup_instance(data_dir: Path) -> str:
    """The parent cgroup of the kernels of ``data_dir`` (see cgroups.py)."""
    return f"portside-{data_dir_digest(data_dir)}"


def run_root(data_dir: Path, configured: str = "") -> Path:
    """The directory holding the run directories of the kernels of ``data_dir``.

    ``configured`` is ``[agent] run_dir``; empty picks the first of ``MEMORY_DIRS`` that this
    user may write to, else the data directory itself.
    """
    name = f"portside-{os.geteuid()}-{data_dir_digest(data_dir)}"
    if configured:
        return Path(configured) / name
    for candidate in MEMORY_DIRS:
        base = os.path.expandvars(candidate)
        if not base.startswith("$") and os.path.isdir(base) and os.access(base, os.W_OK):
            return Path(base) / name
    return data_dir / "run"


def prepare_run_root(path: Path) -> None:
    """Creates the run root, or checks that the one found is this user's own.

    ``/dev/shm`` is writable by everyone: a directory someone else made there under our name
    (or a symlink to one) would let them read or replace kernels' sockets.  Others may pass
    through (kernels without a sandbox reach their own run directory) but not list it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o711)
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise AgentError(
                f"{path} is not a directory of this user's that only it may write to; remove "
                "it, or set [agent] run_dir to another directory"
            ) from None
    else:
        # mkdir's mode is cut by the umask; this one is meant exactly.
        path.chmod(0o711)
