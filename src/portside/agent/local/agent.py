"""The local backend: sessions as sandboxed process trees on this machine.

Each kernel gets a scratch directory in the data directory (its ``/home/work``), a run
directory on a memory file system (its sockets, log, exit record and state; see layout.py), a
cgroup with its limits, a bubblewrap sandbox, and an unprivileged uid of its own.  Kernels are
forked by a zygote per runtime, and a pool keeps a few of them ready per runtime so that
creating a session does not wait for a kernel to boot.  Kernels do not depend on the server
process: after a restart the agent re-attaches to every kernel the database still lists and
removes the rest.
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
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from portside.agent.base import (
    AgentError,
    ExecResult,
    ExitCallback,
    KernelExit,
    KernelInfo,
    KernelSpec,
    Pty,
)
from portside.config import Config
from portside.images import ImageRegistry
from portside.kernel.linux import process_start_time

from . import resources
from .cgroups import CgroupDriver, Limits, remove_instance
from .kernel import LocalKernel, Processes, current_owner, owner_alive
from .layout import cgroup_instance, prepare_run_root, run_root
from .sandbox import (
    Holder,
    Runtime,
    probe_bwrap,
    probe_runtime,
    process_ended,
    reap,
    start_holder,
    write_identity,
)
from .zygote_client import Zygote

log = logging.getLogger("portside.agent.local")

UID_RANGE = 60000
#: Seconds an ended kernel's parent has to record how it ended before the agent reads it.
EXIT_RECORD_WAIT = 5.0


def _dir_name(kernel_id: str) -> str:
    """The name of a kernel's run and scratch directories (short: socket paths are limited)."""
    return uuid.UUID(kernel_id).hex[:16]


def _remove_dirs(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def _first_closed_parent(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that others may not traverse."""
    for directory in [*reversed(path.parents), path]:
        try:
            if not directory.stat().st_mode & 0o001:
                return directory
        except FileNotFoundError:
            return None
    return None


@dataclass
class KernelPool:
    """The warm kernels of one runtime, ready to be handed to new sessions.

    Images that share an interpreter share a pool: an image adds only metadata (its name, apps
    and minimum resources), and a kernel gets its session's environment, the image's name
    included, when it is taken (the control server's ``activate``).  A pool per image would
    keep several idle kernels per runtime, and most of them would never be used.
    """

    python: str
    #: The image pooled kernels are started as; the session that takes one sets its own.
    image: str
    #: Ids of ready, unassigned kernels (also in ``LocalAgent.kernels``), oldest first.
    ready: list[str] = field(default_factory=list)
    #: Set when the pool may be short: a kernel was taken or died, or a boot ended.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    filler: asyncio.Task[None] | None = None


class LocalPty:
    """A terminal in a local kernel, relayed over its control socket."""

    def __init__(self, kernel: LocalKernel, rows: int, cols: int) -> None:
        self.kernel = kernel
        self.rows, self.cols = rows, cols
        self.pty_id: str | None = None
        self._opened = asyncio.Event()
        self._stream: Any = None

    async def output(self) -> AsyncIterator[bytes]:
        import base64

        _, control = self.kernel.require_running()
        async with control.stream("pty_open", rows=self.rows, cols=self.cols) as events:
            async for event in events:
                if event["event"] == "pty_opened":
                    self.pty_id = event["pty_id"]
                    self._opened.set()
                elif event["event"] == "pty_output":
                    yield base64.b64decode(event["data"])
                elif event["event"] == "result":
                    return

    async def _call(self, op: str, **params: Any) -> None:
        await asyncio.wait_for(self._opened.wait(), 30)
        _, control = self.kernel.require_running()
        await control.call(op, pty_id=self.pty_id, **params)

    async def write(self, data: bytes) -> None:
        import base64

        await self._call("pty_write", data=base64.b64encode(data).decode())

    async def resize(self, rows: int, cols: int) -> None:
        await self._call("pty_resize", rows=rows, cols=cols)

    async def close(self) -> None:
        if self.pty_id is not None:
            with contextlib.suppress(AgentError):
                await self._call("pty_close")


class LocalAgent:
    def __init__(self, config: Config, images: ImageRegistry) -> None:
        self.config = config
        self.images = images
        self.agent_id = f"local:{os.uname().nodename}"
        self.run_root = run_root(config.data_dir, config.agent.run_dir)
        self.scratch_root = config.data_dir / "scratch"
        self.kernels: dict[str, LocalKernel] = {}
        self.zygotes: dict[str, Zygote] = {}
        self._zygote_lock = asyncio.Lock()
        #: Warm kernels by runtime (the interpreter's path).
        self.pools: dict[str, KernelPool] = {}
        self._runtimes: dict[str, Runtime] = {}
        self.cgroups: CgroupDriver | None = None
        self.sandbox_problem: str | None = None
        self.is_root = os.geteuid() == 0
        #: Where the search for a free uid starts (see _allocate_uid).
        self._uid_cursor = 0
        self.isolation = "unknown"
        self.on_exit: ExitCallback | None = None
        self.slots: dict[str, Decimal] = {}
        #: bubblewrap processes this server started (its children, which it must collect once
        #: their sandboxes end) and the tasks collecting them.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._reaping: set[asyncio.Task[None]] = set()

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self, live: list[KernelInfo], on_exit: ExitCallback) -> dict[str, bool]:
        self.on_exit = on_exit
        self.slots = await asyncio.to_thread(resources.detect, self.config)
        await asyncio.to_thread(prepare_run_root, self.run_root)
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        self.sandbox_problem = (
            "sandboxing is turned off in the configuration"
            if self.config.agent.sandbox == "none"
            else await asyncio.to_thread(probe_bwrap)
        )
        if self.sandbox_problem and self.config.agent.sandbox == "bwrap":
            raise AgentError(f"sandbox = 'bwrap' is configured, but {self.sandbox_problem}")
        # One parent cgroup per data directory: servers beside each other never touch each
        # other's kernels.
        self.cgroups = await asyncio.to_thread(CgroupDriver.detect, self._cgroup_instance())
        self.isolation = self._describe_isolation()
        if self.sandbox_problem:
            log.warning(
                "KERNELS ARE NOT ISOLATED: %s; sessions run as plain processes that can see "
                "each other and this machine's files",
                self.sandbox_problem,
            )
        survived = {}
        for info in live:
            survived[info.kernel_id] = await self._restore(info)
        await self._remove_orphans(set(survived))
        if self.config.agent.pool_size > 0:
            for image in self.images:
                if image.python not in self.pools:
                    pool = self.pools[image.python] = KernelPool(image.python, image.name)
                    pool.filler = asyncio.create_task(self._fill_pool(pool))
        return survived

    def _cgroup_instance(self) -> str:
        return cgroup_instance(self.config.data_dir)

    def _describe_isolation(self) -> str:
        parts = ["process" if self.sandbox_problem else "bwrap"]
        parts.append(f"cgroup-{self.cgroups.version}" if self.cgroups else "rlimits")
        if self.is_root:
            parts.append("uid-per-session")
        return "+".join(parts)

    async def close(self) -> None:
        """Stops the agent; kernels keep running for the next server to re-attach."""
        fillers = [pool.filler for pool in self.pools.values() if pool.filler is not None]
        for task in fillers:
            task.cancel()
        for task in fillers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pool in self.pools.values():
            while pool.ready:
                await self.destroy_kernel(pool.ready.pop())
        for kernel in list(self.kernels.values()):
            if kernel.exit_watch is not None:
                kernel.exit_watch.cancel()
            await kernel.disconnect()
        if self._reaping:
            await asyncio.wait(self._reaping, timeout=2)
        for zygote in self.zygotes.values():
            await zygote.close(kernels_left=bool(self.kernels))
        # The run root and the parent cgroup go too once no kernel outlives this server: they
        # are outside the data directory, so nobody else would remove them.
        for path in (self.run_root / "uids", self.run_root):
            with contextlib.suppress(OSError):
                path.rmdir()
        if self.cgroups is not None:
            await asyncio.to_thread(remove_instance, self._cgroup_instance())

    async def capacity(self) -> dict[str, Decimal]:
        return dict(self.slots)

    # Creating kernels --------------------------------------------------------------------

    async def _zygote(self, python: str) -> Zygote:
        async with self._zygote_lock:
            zygote = self.zygotes.get(python)
            if zygote is None:
                env = {
                    "MPLCONFIGDIR": str(self.config.data_dir / "matplotlib"),
                    # The shell the zygote prepares for its kernels makes a profile here.
                    "IPYTHONDIR": str(self.config.data_dir / "ipython"),
                    "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                    # debugpy, imported with ipykernel, warns about frozen modules otherwise.
                    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
                }
                zygote = Zygote(python, env)
                await zygote.start()
                self.zygotes[python] = zygote
                self._runtimes[python] = await asyncio.to_thread(probe_runtime, python)
            return zygote

    def _allocate_uid(self) -> int | None:
        """A uid no other kernel on this machine has, reserved with an exclusive file so that
        servers sharing the data directory never hand out the same one.

        The search starts after the uid handed out last rather than at the bottom of the
        range, which every kernel alive would otherwise cost one failed ``open`` (and a
        released uid is not handed out again at once).
        """
        if not self.is_root:
            return None
        reservations = self.run_root / "uids"
        reservations.mkdir(exist_ok=True)
        for step in range(UID_RANGE):
            offset = (self._uid_cursor + step) % UID_RANGE
            uid = self.config.agent.uid_base + offset
            try:
                os.close(os.open(reservations / str(uid), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            self._uid_cursor = offset + 1
            return uid
        raise AgentError("no free uid for another kernel")

    def _release_uid(self, uid: int | None) -> None:
        if uid is not None:
            (self.run_root / "uids" / str(uid)).unlink(missing_ok=True)

    def _allocate_devices(self, count: int) -> list[int]:
        total = int(self.slots.get("cuda.device", 0))
        used = {d for k in self.kernels.values() for d in k.devices}
        free = [d for d in range(total) if d not in used]
        if count > len(free):
            raise AgentError(f"{count} GPU(s) requested but only {len(free)} are free")
        return free[:count]

    def _environment(self, kernel: LocalKernel, python: str) -> dict[str, str]:
        home = kernel.kernel_workdir
        bindir = os.path.dirname(python)
        # Packages a session installs go to its own directory: the runtime is read-only, and
        # a virtualenv runtime ignores --user installs.
        user_site = f"{home}/.local/lib/python{self._runtimes[python].version}/site-packages"
        env = {
            "PYTHONPATH": user_site,
            "PIP_TARGET": user_site,
            "HOME": home,
            "USER": "work",
            "LOGNAME": "work",
            "SHELL": "/bin/bash",
            "TERM": "xterm",
            "LANG": "C.UTF-8",
            "PATH": f"{home}/.local/bin:{bindir}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONUNBUFFERED": "1",
            "IPYTHONDIR": "/tmp/.ipython",
            "MPLCONFIGDIR": "/tmp/.matplotlib",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            "BACKENDAI_KERNEL_ID": kernel.kernel_id,
        }
        env.update(self._session_environment(kernel))
        return env

    def _session_environment(self, kernel: LocalKernel) -> dict[str, str]:
        spec = kernel.spec
        env = {
            "BACKENDAI_SESSION_ID": spec.session_id,
            "BACKENDAI_KERNEL_IMAGE": spec.image,
            "BACKENDAI_CLUSTER_SIZE": "1",
            "BACKENDAI_CLUSTER_ROLE": "main",
            "BACKENDAI_CLUSTER_IDX": "1",
            "GPU_COUNT": str(len(kernel.devices)),
            "N_GPUS": str(len(kernel.devices)),
        }
        if kernel.devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in kernel.devices)
        if spec.mounts:
            env["BACKENDAI_PERSISTENT_PATHS"] = ":".join(m.kernel_path for m in spec.mounts)
        env.update(spec.environ)
        return env

    def _limits(self, spec: KernelSpec) -> Limits:
        cpu = spec.resources.get("cpu")
        mem = spec.resources.get("mem")
        return Limits(Decimal(cpu) if cpu else None, int(Decimal(mem)) if mem else None)

    def _rlimits(self, kernel: LocalKernel) -> dict[str, list[int]]:
        """The last resort when there are no cgroups: per-process limits."""
        if self.cgroups is not None:
            return {}
        limits: dict[str, list[int]] = {}
        mem = kernel.spec.resources.get("mem")
        if mem:
            limits["RLIMIT_DATA"] = [int(Decimal(mem))] * 2
        if kernel.uid is not None:
            # Counted per uid, so only meaningful when each kernel has its own.
            limits["RLIMIT_NPROC"] = [1024, 1024]
        return limits

    def _affinity(self, spec: KernelSpec) -> list[int] | None:
        if self.cgroups is not None or not spec.resources.get("cpu"):
            return None
        available = sorted(os.sched_getaffinity(0))
        count = max(1, min(len(available), int(Decimal(spec.resources["cpu"]))))
        return available[:count]

    def _check_reachable(self, python: str) -> None:
        """Without a sandbox, a kernel's own uid must be able to reach its runtime and files."""
        if self.sandbox_problem is None or not self.is_root:
            return
        for path in [*self._runtimes[python].paths, str(self.run_root), str(self.scratch_root)]:
            blocked = _first_closed_parent(Path(path))
            if blocked is not None:
                raise AgentError(
                    f"kernels run as unprivileged users, who cannot reach {path} ({blocked} is "
                    "closed to others) without a sandbox; install bubblewrap, or keep Portside "
                    "and its data directory where other users may read them",
                    "invalid-state",
                )

    async def _launch(
        self, spec: KernelSpec, *, pooled: bool, rehearsal: bool = False
    ) -> LocalKernel:
        kernel_id = str(uuid.uuid4())
        image = self.images.resolve(spec.image)
        python = image.python
        zygote = await self._zygote(python)
        self._check_reachable(python)
        devices = self._allocate_devices(int(Decimal(spec.resources.get("cuda.device", "0"))))
        kernel = LocalKernel(
            kernel_id=kernel_id,
            spec=spec,
            base=self.run_root / _dir_name(kernel_id),
            scratch=self.scratch_root / _dir_name(kernel_id),
            uid=self._allocate_uid(),
            sandboxed=self.sandbox_problem is None,
            cgroup=None,
            devices=devices,
            pooled=pooled,
            owner=current_owner(),
        )
        self.kernels[kernel_id] = kernel
        try:
            await self._boot(kernel, zygote, python, first=True, rehearsal=rehearsal)
        except BaseException:
            self.kernels.pop(kernel_id, None)
            await self._destroy(kernel)
            raise
        return kernel

    async def _boot(
        self,
        kernel: LocalKernel,
        zygote: Zygote,
        python: str,
        *,
        first: bool,
        rehearsal: bool = False,
    ) -> None:
        if first:
            # The run directory first: a scratch directory without one is an orphan to the
            # start-up of another server on this data directory (_remove_orphans).
            kernel.rundir.mkdir(parents=True)
            kernel.workdir.mkdir()
            if kernel.uid is not None:
                os.chown(kernel.workdir, kernel.uid, kernel.uid)
                os.chown(kernel.rundir, kernel.uid, kernel.uid)
            os.chmod(kernel.rundir, 0o700)
            cgroup_procs: list[str] = []
            if self.cgroups is not None:
                kernel.cgroup = f"k-{kernel.kernel_id}"
                cgroup_procs = self.cgroups.create(kernel.cgroup, self._limits(kernel.spec))
            holder = None
            if kernel.sandboxed:
                write_identity(kernel.base, kernel.uid)
                holder, bwrap = await start_holder(
                    hostname=f"s-{kernel.kernel_id[:8]}",
                    workdir=kernel.workdir,
                    rundir=kernel.rundir,
                    runtime=self._runtimes[python].paths,
                    mounts=kernel.spec.mounts,
                    cgroup_procs=cgroup_procs,
                )
                self._children[holder.bwrap_pid] = bwrap
        else:
            assert kernel.processes is not None
            holder = kernel.processes.holder
            (kernel.rundir / "exit.json").unlink(missing_ok=True)
            kernel.connection_key = os.urandom(16).hex()
        cgroup_paths = (
            [p + "/cgroup.procs" for p in self._cgroup_dirs(kernel.cgroup)]
            if kernel.cgroup and self.cgroups
            else []
        )
        kernel.expect_ready()
        try:
            reply = await zygote.spawn(
                {
                    "kernel_id": kernel.kernel_id,
                    "holder_pid": holder.init_pid if holder else None,
                    "uid": kernel.uid,
                    "gid": kernel.uid,
                    "cgroup_procs": cgroup_paths,
                    "rlimits": self._rlimits(kernel),
                    "cpu_affinity": self._affinity(kernel.spec),
                    "workdir": kernel.kernel_workdir,
                    "rundir": kernel.kernel_rundir,
                    "record_dir": str(kernel.rundir),
                    "env": self._environment(kernel, python),
                    "connection": kernel.connection(for_kernel=True),
                    "spec": {"image": kernel.spec.image},
                    "rehearsal": rehearsal,
                }
            )
        except BaseException:
            if first and holder is not None:
                # The new sandbox is recorded nowhere yet (_destroy would not find it); ending
                # its first process ends everything in it.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(holder.init_pid, signal.SIGKILL)
                self._collect(holder)
            raise
        kernel.processes = Processes(
            kernel_pid=reply["kernel_pid"],
            kernel_start=process_start_time(reply["kernel_pid"]),
            holder=holder,
            holder_start=process_start_time(holder.init_pid) if holder else None,
        )
        kernel.exited = asyncio.Event()
        kernel.exit_watch = asyncio.create_task(self._watch(kernel))
        kernel.save_state()
        try:
            await kernel.connect()
        except AgentError as e:
            log_tail = self._log_tail(kernel)
            raise AgentError(f"{e}\n{log_tail}".strip()) from e
        kernel.state = "running"

    def _cgroup_dirs(self, name: str) -> list[str]:
        assert self.cgroups is not None
        return [str(parent / name) for parent in self.cgroups.paths.values()]

    def _log_tail(self, kernel: LocalKernel) -> str:
        try:
            return (kernel.rundir / "kernel.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    async def create_kernel(self, spec: KernelSpec) -> KernelInfo:
        kernel = await self._take_pooled(spec)
        if kernel is None:
            kernel = await self._launch(spec, pooled=False)
        return self._info(kernel)

    async def _take_pooled(self, spec: KernelSpec) -> LocalKernel | None:
        """A ready kernel from the pool, given the session's limits and environment.

        Sessions with data folders, a bootstrap script or whole GPUs need a sandbox built for
        them, so they get a freshly forked kernel instead (a few hundred milliseconds).
        """
        pool = self.pools.get(self.images.resolve(spec.image).python)
        if pool is None or spec.mounts or spec.bootstrap_script or "cuda.device" in spec.resources:
            return None
        while pool.ready:
            kernel = self.kernels[pool.ready.pop(0)]
            pool.wake.set()
            if kernel.state != "running":
                continue
            kernel.spec = spec
            kernel.pooled = False
            try:
                if self.cgroups is not None and kernel.cgroup:
                    self.cgroups.set_limits(kernel.cgroup, self._limits(spec))
                await self._activate(kernel)
            except (AgentError, OSError) as e:
                log.warning("a pooled kernel could not be activated: %s", e)
                await self.destroy_kernel(kernel.kernel_id)
                continue
            kernel.save_state()
            return kernel
        return None

    async def _activate(self, kernel: LocalKernel) -> None:
        """Hands a pooled kernel its session's environment (the control server's ``activate``)."""
        assert kernel.control is not None
        await kernel.control.call("activate", env=self._session_environment(kernel))

    async def _fill_pool(self, pool: KernelPool) -> None:
        """Keeps ``pool`` at ``pool_size`` ready kernels, for as long as the agent runs.

        Kernels boot side by side, at most one per CPU: a boot spends much of its time waiting
        (for bubblewrap, the zygote, the kernel's sockets), so one at a time would leave a pool
        that a burst of sessions drained empty for longer than it needs to be, and those
        sessions would wait for kernels of their own.  The filler sleeps until a kernel is taken
        or dies or a boot ends; it never polls.
        """
        template = KernelSpec(session_id="", image=pool.image, resources={})
        await self._rehearse(pool.python, template)
        limit = len(os.sched_getaffinity(0))
        boots: set[asyncio.Task[None]] = set()

        async def boot() -> None:
            try:
                kernel = await self._launch(template, pooled=True)
            except Exception:
                log.exception("could not fill the kernel pool for %s", pool.python)
                # This boot's slot stays taken a while: a runtime that cannot start kernels
                # is not retried in a tight loop.
                await asyncio.sleep(5)
            else:
                pool.ready.append(kernel.kernel_id)

        def ended(task: asyncio.Task[None]) -> None:
            boots.discard(task)
            pool.wake.set()

        try:
            while True:
                pool.wake.clear()
                while (
                    len(pool.ready) + len(boots) < self.config.agent.pool_size
                    and len(boots) < limit
                ):
                    task = asyncio.create_task(boot())
                    boots.add(task)
                    task.add_done_callback(ended)
                await pool.wake.wait()
        finally:
            for task in boots:
                task.cancel()
            # A boot that is cancelled removes its half-started kernel (see _launch).
            await asyncio.gather(*boots, return_exceptions=True)

    async def _rehearse(self, python: str, template: KernelSpec) -> None:
        """Starts a rehearsal kernel, which is handed out and runs a cell as a session's kernel
        would, recording the functions it runs; the zygote then gathers their code, before it
        forks the pool's kernels (portside.kernel.rehearsal).

        A rehearsal that fails only leaves kernels as they would be without one.
        """
        try:
            kernel = await self._launch(template, pooled=True, rehearsal=True)
            try:
                await self._activate(kernel)
                await kernel.execute(None, "query", "print(1)", {}, None)
                _, control = kernel.require_running()
                recorded = await control.call("functions_run")
            finally:
                await self.destroy_kernel(kernel.kernel_id)
            gathered = await self.zygotes[python].gather(recorded["codes"])
        except Exception:
            log.warning("the rehearsal kernel of %s failed", python, exc_info=True)
            return
        log.info("the zygote gathered the code its kernels run", extra=gathered)

    def _info(self, kernel: LocalKernel) -> KernelInfo:
        return KernelInfo(
            kernel_id=kernel.kernel_id,
            agent_id=self.agent_id,
            isolation=self.isolation if kernel.sandboxed else self._describe_isolation(),
            host="127.0.0.1",
            attach=kernel.attach(),
        )

    # Watching and ending kernels ---------------------------------------------------------

    async def _watch(self, kernel: LocalKernel) -> None:
        processes = kernel.processes
        assert processes is not None
        await process_ended(processes.kernel_pid)
        # The kernel has ended.  Its parent (the zygote) writes its exit record before it reaps
        # it, a moment later; a parent that is gone left it to init.  Another process reaps it,
        # so there is no event to wait on but the pid's going.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_RECORD_WAIT
        while processes.kernel_alive() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.002)
        kernel.exited.set()
        if kernel.state in ("destroying", "restarting", "dead"):
            return
        oom = bool(self.cgroups and kernel.cgroup and self.cgroups.oom_killed(kernel.cgroup))
        event = kernel.describe_exit(oom)
        log.warning("kernel exited", extra={"kernel": kernel.kernel_id, "reason": event.reason})
        kernel.state = "dead"
        kernel.fail_runs(event.reason)
        await kernel.disconnect()
        if kernel.pooled or self.on_exit is None:
            for pool in self.pools.values():
                if kernel.kernel_id in pool.ready:
                    pool.ready.remove(kernel.kernel_id)
                    pool.wake.set()
            await self.destroy_kernel(kernel.kernel_id)
            return
        await self.on_exit(event)

    async def _destroy(self, kernel: LocalKernel) -> None:
        kernel.state = "destroying"
        kernel.fail_runs("the session was terminated")
        processes = kernel.processes
        if processes is not None:
            if processes.holder is not None and processes.holder_alive():
                # Killing the sandbox's first process ends every process in its pid namespace.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(processes.holder.init_pid, signal.SIGKILL)
            elif processes.kernel_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(processes.kernel_pid, signal.SIGKILL)
            if processes.holder is not None:
                self._collect(processes.holder)
            if self.cgroups and kernel.cgroup:
                for pid in self.cgroups.pids(kernel.cgroup):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(kernel.exited.wait(), 10)
        if kernel.exit_watch is not None:
            kernel.exit_watch.cancel()
        await kernel.disconnect()
        if self.cgroups and kernel.cgroup:
            for _ in range(100):
                if self.cgroups.remove(kernel.cgroup):
                    break
                await asyncio.sleep(0.05)
            else:
                log.warning("the cgroup of kernel %s is still busy", kernel.kernel_id)
        await asyncio.to_thread(_remove_dirs, kernel.workdir, kernel.base)
        self._release_uid(kernel.uid)
        kernel.state = "dead"

    def _collect(self, holder: Holder) -> None:
        """Collects the ending sandbox's bubblewrap, when this server started it."""
        if (bwrap := self._children.pop(holder.bwrap_pid, None)) is not None:
            task = asyncio.create_task(reap(bwrap))
            self._reaping.add(task)
            task.add_done_callback(self._reaping.discard)

    async def destroy_kernel(self, kernel_id: str) -> None:
        kernel = self.kernels.pop(kernel_id, None)
        if kernel is not None:
            await self._destroy(kernel)

    async def restart_kernel(self, kernel_id: str) -> None:
        kernel = self._kernel(kernel_id)
        image = self.images.resolve(kernel.spec.image)
        kernel.state = "restarting"
        kernel.fail_runs("the kernel was restarted")
        await kernel.kill_kernel_process()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kernel.exited.wait(), 10)
        await kernel.disconnect()
        kernel.runs = type(kernel.runs)()
        await self._boot(kernel, await self._zygote(image.python), image.python, first=False)

    def knows(self, kernel_id: str) -> bool:
        return kernel_id in self.kernels

    async def adopt(self, info: KernelInfo) -> bool:
        """Reaches a kernel another server on this machine started (servers sharing one
        database serve each other's sessions)."""
        if info.kernel_id in self.kernels:
            return self.kernels[info.kernel_id].state == "running"
        return await self._restore(info)

    async def _restore(self, info: KernelInfo) -> bool:
        attach = info.attach
        if not attach.get("processes"):
            return False
        kernel = LocalKernel(
            kernel_id=info.kernel_id,
            spec=KernelSpec.from_dict(attach["spec"]),
            base=Path(attach["base"]),
            scratch=Path(attach["scratch"]),
            uid=attach.get("uid"),
            sandboxed=attach.get("sandboxed", False),
            cgroup=attach.get("cgroup"),
            devices=list(attach.get("devices", [])),
            connection_key=attach["connection_key"],
            processes=Processes.from_dict(attach["processes"]),
            owner=attach.get("owner") or {},
        )
        self.kernels[kernel.kernel_id] = kernel
        assert kernel.processes is not None
        if not (kernel.processes.holder_alive() and kernel.processes.kernel_alive()):
            kernel.state = "dead"
            log.warning("kernel did not survive the restart", extra={"kernel": info.kernel_id})
            return False
        kernel.exit_watch = asyncio.create_task(self._watch(kernel))
        try:
            await kernel.connect(timeout=20)
        except AgentError as e:
            log.warning("cannot re-attach kernel %s: %s", info.kernel_id, e)
            kernel.state = "dead"
            return False
        kernel.state = "running"
        return True

    async def _remove_orphans(self, keep: set[str]) -> None:
        """Ends sandboxes left by an earlier server that no live session owns (pool members)."""
        for state_file in self.run_root.glob("*/state.json"):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if state.get("kernel_id") in keep or owner_alive(state.get("owner") or {}):
                # A live session's kernel, or one another running server is looking after.
                continue
            kernel = LocalKernel(
                kernel_id=state["kernel_id"],
                spec=KernelSpec.from_dict(state["spec"]),
                base=state_file.parent,
                scratch=Path(state["scratch"]),
                uid=state.get("uid"),
                sandboxed=state.get("sandboxed", False),
                cgroup=state.get("cgroup"),
                devices=[],
                processes=Processes.from_dict(state["processes"])
                if state.get("processes")
                else None,
            )
            kernel.exited.set()
            await self._destroy(kernel)
        # Scratch directories whose run directory is gone: the machine restarted under them.
        for scratch in self.scratch_root.iterdir():
            if not (self.run_root / scratch.name).exists():
                await asyncio.to_thread(shutil.rmtree, scratch, True)
        if self.cgroups is not None:
            # Cgroups of kernels whose directory is gone: left by a server that crashed.
            for name in self.cgroups.names():
                if not name.startswith("k-"):
                    continue
                if not (self.run_root / _dir_name(name.removeprefix("k-"))).exists():
                    self.cgroups.remove(name)

    # Operations on running kernels -------------------------------------------------------

    def _kernel(self, kernel_id: str) -> LocalKernel:
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            raise AgentError(f"kernel {kernel_id} is not running on this agent", "gone")
        return kernel

    async def execute(
        self,
        kernel_id: str,
        run_id: str | None,
        mode: str,
        code: str,
        opts: dict[str, Any],
        flush_timeout: float | None,
    ) -> ExecResult:
        return await self._kernel(kernel_id).execute(run_id, mode, code, opts, flush_timeout)

    def holds_run(self, kernel_id: str, run_id: str) -> bool:
        kernel = self.kernels.get(kernel_id)
        return kernel is not None and run_id in kernel.runs.runs

    async def interrupt(self, kernel_id: str) -> None:
        await self._kernel(kernel_id).interrupt()

    async def complete(self, kernel_id: str, code: str, cursor: int) -> list[str]:
        jupyter, _ = self._kernel(kernel_id).require_running()
        return await jupyter.complete(code, cursor)

    async def upload_file(self, kernel_id: str, path: str, data: bytes, max_size: int) -> None:
        import base64

        _, control = self._kernel(kernel_id).require_running()
        await control.call(
            "files_write", path=path, data=base64.b64encode(data).decode(), max_size=max_size
        )

    async def download_tar(self, kernel_id: str, path: str, max_size: int) -> bytes:
        import base64

        _, control = self._kernel(kernel_id).require_running()
        reply = await control.call("files_tar", path=path, max_size=max_size)
        return base64.b64decode(reply["data"])

    async def list_files(self, kernel_id: str, path: str) -> dict[str, Any]:
        _, control = self._kernel(kernel_id).require_running()
        result: dict[str, Any] = await control.call("files_list", path=path)
        return result

    async def get_logs(self, kernel_id: str) -> str:
        kernel = self._kernel(kernel_id)
        if kernel.control is None:
            return self._log_tail(kernel)
        reply = await kernel.control.call("logs")
        return str(reply["logs"])

    async def open_pty(self, kernel_id: str, rows: int, cols: int) -> Pty:
        kernel = self._kernel(kernel_id)
        kernel.require_running()
        return LocalPty(kernel, rows, cols)

    async def start_app(
        self,
        kernel_id: str,
        name: str,
        port: int,
        command: list[str] | None,
        env: dict[str, str],
        *,
        wait: bool = True,
    ) -> dict[str, Any]:
        _, control = self._kernel(kernel_id).require_running()
        result: dict[str, Any] = await control.call(
            "app_start", name=name, port=port, command=command, env=env, wait=wait
        )
        return result

    async def stop_app(self, kernel_id: str, name: str) -> None:
        _, control = self._kernel(kernel_id).require_running()
        await control.call("app_stop", name=name)

    def app_endpoint(self, kernel_id: str, port: int) -> dict[str, Any]:
        # Derived from the id alone: any server on this machine reaches any kernel's broker.
        rundir = self.run_root / _dir_name(kernel_id) / "run"
        return {"kind": "broker", "path": str(rundir / "connect.sock"), "port": port}

    def kernel_exit(self, kernel_id: str) -> KernelExit | None:
        kernel = self.kernels.get(kernel_id)
        if kernel is None or kernel.state != "dead":
            return None
        return kernel.describe_exit(False)
