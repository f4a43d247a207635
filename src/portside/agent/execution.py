"""Execute loops: runs, their output records, and the flush rules (runtime-semantics.md s.1.2-1.3).

A run is one piece of code (query mode) or one clean/build/exec sequence (batch mode).  The
kernel pushes records into the run as they happen; the API collects them in slices: each call
returns what arrived until a control record (``finished``, ``waiting-input``) or until the flush
timeout, in which case the status is ``continued``.  Runs of one kernel execute one at a time in
arrival order.

Two upstream defects are not copied: output is never dropped between batch steps (a run keeps
its queue until it finishes), and ``clean-finished``/``build-finished`` do not end a slice; a
slice that ends on the timeout after such a marker reports the marker as its status.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .base import AgentError, ExecResult

#: Console record kinds that are merged when they arrive back to back.
MERGEABLE = frozenset({"stdout", "stderr"})
PHASE_STATUSES = frozenset({"clean-finished", "build-finished"})
FINAL_STATUSES = frozenset({"finished", "exec-timeout"})
#: Finished runs whose output nobody collected are forgotten after this long.
STALE_RUN_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class Control:
    status: str
    exit_code: int | None = None
    options: dict[str, Any] | None = None


Record = tuple[str, Any] | Control


def append_console(console: list[list[Any]], kind: str, data: Any) -> None:
    if kind in MERGEABLE and console and console[-1][0] == kind:
        console[-1][1] += data
    else:
        console.append([kind, data])


class Run:
    def __init__(self, run_id: str, mode: str) -> None:
        self.run_id = run_id
        self.mode = mode
        self.records: asyncio.Queue[Record] = asyncio.Queue()
        #: Set when the kernel is done with the run; later runs may start then.
        self.finished = asyncio.Event()
        self.finished_at: float | None = None
        self.waiting_input = False

    def push(self, kind: str, data: Any) -> None:
        self.records.put_nowait((kind, data))

    def push_control(self, status: str, exit_code: int | None = None, **options: Any) -> None:
        if status == "waiting-input":
            self.waiting_input = True
        self.records.put_nowait(Control(status, exit_code, options or None))
        if status in FINAL_STATUSES:
            self.finished.set()
            self.finished_at = time.monotonic()

    async def collect(self, flush_timeout: float | None) -> ExecResult:
        console: list[list[Any]] = []
        phase: Control | None = None
        loop = asyncio.get_running_loop()
        deadline = None if flush_timeout is None else loop.time() + flush_timeout
        try:
            # One deadline for the whole slice; a record the deadline interrupts the wait for
            # stays queued for the next slice (``Queue.get`` takes nothing when cancelled).
            async with asyncio.timeout_at(deadline):
                while True:
                    record = await self.records.get()
                    if isinstance(record, Control):
                        if record.status in PHASE_STATUSES:
                            phase = record
                            continue
                        if record.status == "waiting-input":
                            options = record.options if self.mode == "query" else {}
                            return ExecResult(
                                self.run_id, "waiting-input", None, options or {}, console
                            )
                        return ExecResult(
                            self.run_id, record.status, record.exit_code, None, console
                        )
                    append_console(console, record[0], record[1])
        except TimeoutError:
            pass
        if phase is not None:
            return ExecResult(self.run_id, phase.status, phase.exit_code, None, console)
        return ExecResult(self.run_id, "continued", None, None, console)


Starter = Callable[[Run], Awaitable[None]]


class RunQueue:
    """The runs of one kernel, started strictly one after another."""

    def __init__(self) -> None:
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self._tail: Run | None = None

    def _prune(self) -> None:
        now = time.monotonic()
        for run_id, run in list(self.runs.items()):
            if run.finished_at is not None and now - run.finished_at > STALE_RUN_SECONDS:
                del self.runs[run_id]

    async def begin(self, run_id: str | None, mode: str, starter: Starter) -> Run:
        """Queues a new run and starts it once every earlier run has finished."""
        self._prune()
        run_id = run_id or secrets.token_hex(16)
        if run_id in self.runs:
            raise AgentError(f"run {run_id} already exists; use mode 'continue'", "invalid")
        run = Run(run_id, mode)
        self.runs[run_id] = run
        ahead, self._tail = self._tail, run
        try:
            if ahead is not None:
                await ahead.finished.wait()
            await starter(run)
        except BaseException:
            run.push_control("finished", -1)
            raise
        return run

    def get(self, run_id: str | None) -> Run:
        if not run_id:
            raise AgentError("continuation requires an explicit run ID", "invalid")
        run = self.runs.get(run_id)
        if run is None:
            raise AgentError(f"there is no run {run_id} in this session", "invalid")
        return run

    def finish(self, run: Run) -> None:
        """Forgets a run whose final answer has been collected."""
        self.runs.pop(run.run_id, None)

    def fail_all(self, reason: str) -> None:
        """Ends every unfinished run, e.g. because the kernel died."""
        for run in self.runs.values():
            if not run.finished.is_set():
                run.push("stderr", reason + "\n")
                run.push_control("finished", -1)
