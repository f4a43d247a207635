"""Sandboxes: a bubblewrap process per kernel whose namespaces the kernel then joins.

The sandbox has its own pid, ipc, uts and mount namespaces.  Its file system shows the system
directories read-only, a private ``/tmp``, the runtime's interpreter (read-only), the session's
working directory at ``/home/work``, its data folders below that, and the run directory (the
kernel's sockets) at ``/run/portside``; nothing else of the host, in particular not the server's
data directory or other sessions.  Each sandbox has its own network namespace with only a
loopback device: a session's apps listen on ports no other session can reach, two sessions can
use the same port, and the app proxy reaches apps through the kernel's connection broker
(portside/kernel/apps.py).

bubblewrap runs a tiny holder command (``sh``) as the sandbox's first process; the kernel is
forked by the zygote and joins the holder's namespaces (see portside/kernel/zygote.py).  Killing
the holder's init ends everything in the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from portside.agent.base import AgentError, MountSpec

log = logging.getLogger("portside.agent.sandbox")

KERNEL_WORKDIR = "/home/work"
KERNEL_RUNDIR = "/run/portside"
#: System directories every sandbox sees read-only (when they exist on the host).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


@dataclass(frozen=True, slots=True)
class Holder:
    """A running sandbox: bubblewrap's own pid and the pid of the sandbox's first process."""

    bwrap_pid: int
    init_pid: int


@dataclass(frozen=True, slots=True)
class Runtime:
    """A Python runtime: the directories it needs inside a sandbox, and its version."""

    paths: list[str]
    version: str


def probe_runtime(python: str) -> Runtime:
    probe = subprocess.run(
        [
            python,
            "-c",
            "import sys, json, portside, os;"
            "print(json.dumps([[sys.prefix, sys.base_prefix, sys.exec_prefix,"
            " os.path.dirname(os.path.dirname(portside.__file__))],"
            " '%d.%d' % sys.version_info[:2]]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    prefixes, version = json.loads(probe.stdout)
    paths = [os.path.realpath(p) for p in prefixes]
    paths.append(os.path.dirname(os.path.realpath(python)))
    unique: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == u or path.startswith(u + os.sep) for u in unique):
            unique.append(path)
    return Runtime(unique, version)


def _parents(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _binds(args: list[str], flag: str, source: str, target: str, created: set[str]) -> None:
    # bubblewrap creates missing parents with mode 0700, which would hide the mount from the
    # kernel's unprivileged uid; create them world-traversable first.
    for parent in _parents(target):
        if parent not in created and not any(
            parent == d or parent.startswith(d + "/") for d in SYSTEM_DIRS
        ):
            args += ["--perms", "0755", "--dir", parent]
            created.add(parent)
    args += [flag, source, target]


def bwrap_args(
    *,
    hostname: str,
    workdir: Path,
    rundir: Path,
    runtime: Iterable[str],
    mounts: Iterable[MountSpec],
    ready_fd: int,
    info_fd: int,
) -> list[str]:
    args = [
        "bwrap",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--hostname",
        hostname,
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--tmpfs",
        "/var/tmp",
    ]
    created: set[str] = set()
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in runtime:
        if not any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS):
            _binds(args, "--ro-bind", path, path, created)
    _binds(args, "--bind", str(workdir), KERNEL_WORKDIR, created)
    for mount in mounts:
        _binds(
            args,
            "--ro-bind" if mount.read_only else "--bind",
            mount.host_path,
            mount.kernel_path,
            created,
        )
    _binds(args, "--bind", str(rundir), KERNEL_RUNDIR, created)
    for name in ("passwd", "group"):
        if (rundir.parent / name).exists():
            args += ["--ro-bind", str(rundir.parent / name), f"/etc/{name}"]
    args += ["--chdir", KERNEL_WORKDIR, "--info-fd", str(info_fd), "--"]
    # The holder tells us it runs (so the sandbox is fully built), then reads its standard
    # input, a pipe whose writers only the sandbox's own processes hold (start_holder), so
    # nothing ever comes. Waiting in the shell itself spares each session a second program's
    # start (`exec sleep`: its loader, glibc's CPU probing, trapped on a virtual machine).
    # (Through /proc: dash cannot redirect to descriptors above 9.)
    args += ["/bin/sh", "-c", f"printf ready > /proc/self/fd/{ready_fd}; read _"]
    return args


def write_identity(base: Path, uid: int | None) -> None:
    """A passwd and group naming the kernel's uid ``work``, as in Backend.AI's containers."""
    if uid is None:
        return
    (base / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        f"work:x:{uid}:{uid}:Portside session user:{KERNEL_WORKDIR}:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (base / "group").write_text(f"root:x:0:\nwork:x:{uid}:\nnogroup:x:65534:\n")


async def read_pipe(fd: int, *, to_end: bool) -> bytes:
    """What arrives on pipe ``fd``: all of it until every writer closed it (``to_end``), or the
    first chunk.

    Read as the event loop sees the pipe become readable: a worker thread per read would cost
    each new sandbox two thread hand-offs, on the path of every session start.
    """
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    os.set_blocking(fd, False)
    loop.add_reader(fd, readable.set)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                readable.clear()
                await readable.wait()
                continue
            chunks.append(chunk)
            if not chunk or not to_end:
                return b"".join(chunks)
    finally:
        loop.remove_reader(fd)


async def start_holder(
    *,
    hostname: str,
    workdir: Path,
    rundir: Path,
    runtime: Iterable[str],
    mounts: Iterable[MountSpec],
    cgroup_procs: Iterable[str],
) -> tuple[Holder, subprocess.Popen[bytes]]:
    """Starts a sandbox; returns it and its bubblewrap process, which the caller collects
    (``reap``) once the sandbox has ended."""
    info_r, info_w = os.pipe()
    ready_r, ready_w = os.pipe()
    err_r, err_w = os.pipe()
    hold_r, hold_w = os.pipe()
    args = bwrap_args(
        hostname=hostname,
        workdir=workdir,
        rundir=rundir,
        runtime=runtime,
        mounts=mounts,
        ready_fd=ready_w,
        info_fd=info_w,
    )
    try:
        bwrap = await _spawn(args, keep=(info_w, ready_w, hold_w), stdin=hold_r, stderr=err_w)
    except BaseException:
        for fd in (info_r, ready_r, err_r):
            os.close(fd)
        raise
    finally:
        for fd in (info_w, ready_w, err_w, hold_r, hold_w):
            os.close(fd)
    try:
        try:
            info = await read_pipe(info_r, to_end=True)
            ready = await read_pipe(ready_r, to_end=False)
        finally:
            os.close(info_r)
            os.close(ready_r)
        started = bool(info) and ready == b"ready"
        if started:
            init_pid = int(json.loads(info)["child-pid"])
            for procs in cgroup_procs:
                # The holder and anything started in the sandbox count against the kernel's
                # limits.
                Path(procs).write_text(str(init_pid))
    except BaseException:
        # Nothing records this sandbox yet, so nothing would ever end it: a start that fails
        # or is cancelled (the agent stopping while it fills its pool) kills it here.
        _end(bwrap)
        os.close(err_r)
        raise
    if not started:
        _end(bwrap)
        try:
            stderr = (await read_pipe(err_r, to_end=True)).decode(errors="replace")
        finally:
            os.close(err_r)
        raise AgentError(f"the sandbox did not start: {stderr.strip() or 'bwrap failed'}")
    os.close(err_r)
    return Holder(bwrap.pid, init_pid), bwrap


async def _spawn(
    args: list[str], *, keep: tuple[int, ...], stdin: int, stderr: int
) -> subprocess.Popen[bytes]:
    """Starts bubblewrap in a session of its own (the sandbox must survive the server and a
    Ctrl-C in its terminal) with ``keep`` open in it.

    On a worker thread, and through ``subprocess``, whose ``fork_exec`` lets go of the GIL
    while the new process is on its way to ``exec`` (Python 3.12 and later):
    ``os.posix_spawn`` holds it all that time, and on a busy machine the child can wait for a
    CPU for milliseconds, during which no thread of the server, its event loop included, ran.
    A start the caller gives up on meanwhile (cancelled) still completes; its sandbox is
    ended here, since nothing else knows of it.
    """
    spawning = asyncio.ensure_future(
        asyncio.to_thread(
            subprocess.Popen,
            args,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=keep,
            start_new_session=True,
        )
    )
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            _end(await spawning)
        raise


def _end(bwrap: subprocess.Popen[bytes]) -> None:
    """Kills a sandbox that never started: both bubblewrap processes and the holder share the
    process group bubblewrap leads."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(bwrap.pid, signal.SIGKILL)
    bwrap.wait()


async def reap(bwrap: subprocess.Popen[bytes]) -> None:
    """Waits for bubblewrap to end and collects it, so that it stays no zombie.

    Only for a sandbox this process started (after a restart, bubblewrap is another
    process's child, which that one, or init, collects).  Killing the holder's init ends
    bubblewrap a moment later.
    """
    await process_ended(bwrap.pid)
    # It has ended, so this collects it.
    bwrap.poll()


async def process_ended(pid: int) -> None:
    """Returns once process ``pid`` has ended (at once if it is gone), as the event loop sees
    its pidfd become readable."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    loop.add_reader(fd, ended.set)
    try:
        await ended.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def probe_bwrap() -> str | None:
    """Why bubblewrap cannot sandbox kernels here, or None when it can."""
    if shutil.which("bwrap") is None:
        return "bubblewrap (bwrap) is not installed"
    result = subprocess.run(
        [
            "bwrap",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--ro-bind",
            "/",
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if result.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {result.stderr.strip()}"
    return None
