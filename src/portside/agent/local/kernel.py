"""One kernel of the local backend: its processes, its connections and its runs."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portside.agent.base import AgentError, ExecResult, KernelExit, KernelSpec
from portside.agent.execution import Run, RunQueue
from portside.kernel import READY_FIFO
from portside.kernel.linux import process_start_time

from .control_client import ControlClient
from .jupyter import JupyterConnection
from .sandbox import KERNEL_RUNDIR, KERNEL_WORKDIR, Holder, read_pipe

log = logging.getLogger("portside.agent.kernel")


@dataclass
class Processes:
    """The pids of a kernel, with start times so a reused pid is never mistaken for ours."""

    kernel_pid: int
    kernel_start: int | None = None
    holder: Holder | None = None
    holder_start: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_pid": self.kernel_pid,
            "kernel_start": self.kernel_start,
            "bwrap_pid": self.holder.bwrap_pid if self.holder else None,
            "init_pid": self.holder.init_pid if self.holder else None,
            "holder_start": self.holder_start,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Processes:
        holder = None
        if data.get("init_pid") is not None:
            holder = Holder(data["bwrap_pid"], data["init_pid"])
        return cls(
            data["kernel_pid"],
            data.get("kernel_start"),
            holder,
            data.get("holder_start"),
        )

    def holder_alive(self) -> bool:
        if self.holder is None:
            return True
        return process_start_time(self.holder.init_pid) == self.holder_start

    def kernel_alive(self) -> bool:
        return process_start_time(self.kernel_pid) == self.kernel_start


def current_owner() -> dict[str, Any]:
    """This server process, as each kernel's state file names its owner."""
    pid, start = _this_process()
    return {"pid": pid, "start": start}


@functools.cache
def _this_process() -> tuple[int, int | None]:
    # Neither changes while the server runs, and every kernel start read them from /proc.
    pid = os.getpid()
    return pid, process_start_time(pid)


def owner_alive(owner: dict[str, Any]) -> bool:
    pid = owner.get("pid")
    if not pid:
        return False
    return process_start_time(int(pid)) == owner.get("start")


@dataclass
class LocalKernel:
    kernel_id: str
    spec: KernelSpec
    #: The kernel's run directory's parent (see layout.py): state, passwd, ``run/``.
    base: Path
    #: The session's working directory, on disk.
    scratch: Path
    uid: int | None
    sandboxed: bool
    cgroup: str | None
    devices: list[int]
    connection_key: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: Processes | None = None
    jupyter: JupyterConnection | None = None
    control: ControlClient | None = None
    runs: RunQueue = field(default_factory=RunQueue)
    #: "starting", "running", "restarting", "destroying" or "dead".
    state: str = "starting"
    pooled: bool = False
    #: The server process that started the kernel (pid and start time): a kernel whose owner
    #: still runs is never cleaned up as an orphan by another server on the same machine.
    owner: dict[str, Any] = field(default_factory=dict)
    exit_watch: asyncio.Task[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    _relays: set[asyncio.Task[None]] = field(default_factory=set)
    #: The read end of the FIFO a starting kernel announces itself through (``expect_ready``).
    _ready_fd: int | None = None

    @property
    def workdir(self) -> Path:
        return self.scratch

    @property
    def rundir(self) -> Path:
        return self.base / "run"

    @property
    def kernel_workdir(self) -> str:
        return KERNEL_WORKDIR if self.sandboxed else str(self.workdir)

    @property
    def kernel_rundir(self) -> str:
        return KERNEL_RUNDIR if self.sandboxed else str(self.rundir)

    def connection(self, *, for_kernel: bool) -> dict[str, Any]:
        rundir = self.kernel_rundir if for_kernel else str(self.rundir)
        return {
            "transport": "ipc",
            "ip": os.path.join(rundir, "kernel"),
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": self.connection_key,
            "signature_scheme": "hmac-sha256",
            "kernel_name": "python3",
        }

    def attach(self) -> dict[str, Any]:
        """Everything needed to find this kernel again after a restart of the server."""
        return {
            "base": str(self.base),
            "scratch": str(self.scratch),
            "uid": self.uid,
            "sandboxed": self.sandboxed,
            "cgroup": self.cgroup,
            "devices": self.devices,
            "connection_key": self.connection_key,
            "processes": self.processes.to_dict() if self.processes else None,
            "spec": self.spec.to_dict(),
            "owner": self.owner,
        }

    def save_state(self) -> None:
        path = self.base / "state.json"
        path.write_text(
            json.dumps({"kernel_id": self.kernel_id, "pooled": self.pooled, **self.attach()})
        )

    def expect_ready(self) -> None:
        """Makes the FIFO through which a kernel about to start says that it is up
        (``portside.kernel.host``), so that ``connect`` waits for it instead of trying the
        control socket over and over: a kernel takes tens of milliseconds to bind it, and each
        try cost the server a failed connection."""
        path = self.rundir / READY_FIFO
        path.unlink(missing_ok=True)
        os.mkfifo(path, 0o600)
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        self.close_ready()
        # Opened now, so the kernel's write finds a reader.  Read and write (Linux allows it on
        # a FIFO): a reader alone would read end-of-file at once while no writer has it open.
        self._ready_fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)

    def close_ready(self) -> None:
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None

    async def _connect_control(self, control: ControlClient, timeout: float) -> None:
        if self._ready_fd is not None:
            try:
                await asyncio.wait_for(read_pipe(self._ready_fd, to_end=False), timeout)
            except TimeoutError:
                raise AgentError("the kernel did not say it was up in time") from None
            finally:
                self.close_ready()
        await control.connect(timeout)

    async def connect(self, timeout: float = 60.0) -> None:
        """Connects once the kernel is up; fails at once if it exits before that."""
        self.control = ControlClient(str(self.rundir / "control.sock"))
        connecting = asyncio.ensure_future(self._connect_control(self.control, timeout))
        exited = asyncio.ensure_future(self.exited.wait())
        try:
            await asyncio.wait((connecting, exited), return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
        if not connecting.done():
            connecting.cancel()
            raise AgentError("the kernel exited while it was starting")
        connecting.result()
        self.jupyter = JupyterConnection(self.connection(for_kernel=False))
        await self.jupyter.start(timeout)

    async def disconnect(self) -> None:
        self.close_ready()
        if self.jupyter is not None:
            await self.jupyter.close()
            self.jupyter = None
        if self.control is not None:
            await self.control.close()
            self.control = None

    def require_running(self) -> tuple[JupyterConnection, ControlClient]:
        if self.state != "running" or self.jupyter is None or self.control is None:
            raise AgentError(f"the kernel is {self.state}", "invalid-state")
        return self.jupyter, self.control

    def fail_runs(self, reason: str) -> None:
        if self.jupyter is not None:
            self.jupyter.fail_all(reason)
        self.runs.fail_all(reason)

    # Execution ---------------------------------------------------------------------------

    async def _start_query(self, run: Run, code: str) -> None:
        jupyter, _ = self.require_running()
        jupyter.execute(run, code)

    async def _start_batch(self, run: Run, opts: dict[str, Any]) -> None:
        _, control = self.require_running()
        commands = {step: opts.get(step) for step in ("clean", "build", "exec")}

        async def relay() -> None:
            try:
                async with control.stream("batch", run_id=run.run_id, commands=commands) as events:
                    async for event in events:
                        kind = event["event"]
                        if kind == "console":
                            run.push(event["kind"], event["data"])
                        elif kind == "step":
                            run.push_control(f"{event['step']}-finished", event["exit_code"])
                        elif kind == "waiting-input":
                            run.push_control("waiting-input")
                        elif kind == "result":
                            run.push_control("finished", event["result"]["exit_code"])
            except AgentError as e:
                if not run.finished.is_set():
                    run.push("stderr", f"batch run failed: {e}\n")
                    run.push_control("finished", -1)

        self._relays.add(task := asyncio.create_task(relay()))
        task.add_done_callback(self._relays.discard)

    async def execute(
        self,
        run_id: str | None,
        mode: str,
        code: str,
        opts: dict[str, Any],
        flush_timeout: float | None,
    ) -> ExecResult:
        if mode == "query":
            run = await self.runs.begin(run_id, mode, lambda r: self._start_query(r, code))
        elif mode == "batch":
            run = await self.runs.begin(run_id, mode, lambda r: self._start_batch(r, opts))
        elif mode == "continue":
            run = self.runs.get(run_id)
        elif mode == "input":
            run = self.runs.get(run_id)
            if not run.waiting_input:
                raise AgentError("the run is not waiting for input", "invalid")
            run.waiting_input = False
            jupyter, control = self.require_running()
            if run.mode == "query":
                jupyter.send_input(code)
            else:
                await control.call("input", run_id=run.run_id, text=code)
        else:
            raise AgentError(f"unknown execution mode {mode!r}", "invalid")
        result = await run.collect(flush_timeout)
        if result.status in ("finished", "exec-timeout"):
            self.runs.finish(run)
        return result

    async def interrupt(self) -> None:
        jupyter, control = self.require_running()
        jupyter.interrupt()
        await control.call("batch_interrupt")

    async def kill_kernel_process(self) -> None:
        if self.processes is not None and self.processes.kernel_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.processes.kernel_pid, signal.SIGKILL)

    def read_exit(self) -> dict[str, Any]:
        try:
            result: dict[str, Any] = json.loads((self.rundir / "exit.json").read_text())
            return result
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def describe_exit(self, oom: bool) -> KernelExit:
        record = self.read_exit()
        sig = record.get("signal")
        code = record.get("exit_code")
        if oom:
            mem = self.spec.resources.get("mem")
            limit = f" of {int(mem) // (1024 * 1024)} MiB" if mem else ""
            reason = f"out of memory: the kernel exceeded the session's memory limit{limit}"
        elif sig is not None:
            name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else sig
            reason = f"the kernel process was killed by signal {sig} ({name})"
        elif code is not None:
            reason = f"the kernel process exited with code {code}"
        else:
            reason = "the kernel process disappeared"
        return KernelExit(self.kernel_id, reason, oom, sig, code)
