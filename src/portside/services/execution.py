"""Working inside a running session: code, completions, interrupts, files, logs, terminals."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from portside.agent.base import Agent, AgentError, ExecResult, Pty
from portside.agent.execution import FINAL_STATUSES
from portside.db.models import RunRow, SessionRow
from portside.db.repositories.identity import Principal
from portside.errors import (
    InvalidAPIParameters,
    InvalidSessionState,
    KernelError,
    ObjectNotFound,
    PortsideError,
    RequestTooLarge,
)

from .sessions import SessionService

#: Flush timeouts (runtime-semantics.md s.1.3): REST calls collect for 2 s, streams for 0.2 s.
REST_FLUSH_TIMEOUT = 2.0
STREAM_FLUSH_TIMEOUT = 0.2
EXECUTE_MODES = ("query", "batch", "continue", "input")


def agent_error(error: AgentError) -> PortsideError:
    """The API error for something an agent refused or failed to do."""
    if error.kind in ("invalid", "not-waiting", "busy"):
        return InvalidAPIParameters(str(error))
    if error.kind == "path":
        return InvalidAPIParameters(str(error))
    if error.kind == "too-large":
        return RequestTooLarge(str(error))
    if error.kind == "not-found":
        return ObjectNotFound(str(error), object_name="file")
    if error.kind in ("invalid-state", "gone"):
        return InvalidSessionState(f"the session's kernel is not available: {error}")
    return KernelError(str(error))


class RunElsewhere(Exception):
    """The run to continue is held by another API server, at ``server_url``."""

    def __init__(self, run_id: str, server_url: str) -> None:
        super().__init__(f"run {run_id} is held by the API server at {server_url}")
        self.run_id = run_id
        self.server_url = server_url


@dataclass(frozen=True, slots=True)
class Target:
    """A running session resolved for one call."""

    session_id: uuid.UUID
    kernel_id: str


class ExecutionService:
    def __init__(
        self, sessions: SessionService, agent: Agent, *, max_file_size: int, server_url: str
    ) -> None:
        self.sessions = sessions
        self.agent = agent
        self.max_file_size = max_file_size
        #: Where other API servers reach this one to continue the runs it holds.
        self.server_url = server_url

    async def target(
        self, principal: Principal, reference: str, owner_access_key: str | None = None
    ) -> Target:
        row: SessionRow = await self.sessions.running(principal, reference, owner_access_key)
        if row.status != "RUNNING" or row.kernel_id is None:
            detail = f": {row.status_info}" if row.status_info else ""
            raise InvalidSessionState(f"the session is {row.status}{detail}")
        await self.sessions.attach(row)
        return Target(row.id, str(row.kernel_id))

    @contextlib.asynccontextmanager
    async def _busy(self, target: Target, *, query: bool = False) -> AsyncIterator[None]:
        self.sessions.mark_busy(target.session_id, +1)
        self.sessions.touch(target.session_id, query=query)
        try:
            yield
        except AgentError as e:
            if e.kind == "gone":
                # Ended elsewhere: the next call looks the session up again.
                self.sessions.forget_running(target.session_id)
            raise agent_error(e) from e
        finally:
            self.sessions.mark_busy(target.session_id, -1)
            self.sessions.touch(target.session_id)

    async def execute(
        self,
        target: Target,
        *,
        run_id: str | None,
        mode: str,
        code: str,
        opts: dict[str, Any],
        flush_timeout: float | None = REST_FLUSH_TIMEOUT,
    ) -> ExecResult:
        if mode not in EXECUTE_MODES:
            raise InvalidAPIParameters(
                f"unknown execution mode {mode!r}; use one of {', '.join(EXECUTE_MODES)}"
            )
        if mode in ("continue", "input") and not run_id:
            raise InvalidAPIParameters(f"mode {mode!r} needs the runId of the run to continue")
        continuing = mode in ("continue", "input")
        if continuing and run_id and not self.agent.holds_run(target.kernel_id, run_id):
            await self._raise_if_elsewhere(target, run_id)
        async with self._busy(target, query=True):
            result = await self.agent.execute(
                target.kernel_id, run_id, mode, code, opts, flush_timeout
            )
        ongoing = result.status not in FINAL_STATUSES
        if ongoing and not continuing:
            await self._hold(target, result.run_id)
        elif not ongoing and continuing:
            await self._release(target, result.run_id)
        return result

    async def _hold(self, target: Target, run_id: str) -> None:
        """Records that this server holds a run its first call did not finish."""
        async with self.sessions.db() as db, db.begin():
            await db.merge(
                RunRow(session_id=target.session_id, run_id=run_id, server_url=self.server_url)
            )

    async def _release(self, target: Target, run_id: str) -> None:
        async with self.sessions.db() as db, db.begin():
            await db.execute(
                sa.delete(RunRow).where(
                    RunRow.session_id == target.session_id, RunRow.run_id == run_id
                )
            )

    async def _raise_if_elsewhere(self, target: Target, run_id: str) -> None:
        async with self.sessions.db() as db:
            row = await db.get(RunRow, (target.session_id, run_id))
        if row is not None and row.server_url != self.server_url:
            raise RunElsewhere(run_id, row.server_url)

    async def complete(self, target: Target, code: str, options: dict[str, Any]) -> dict[str, Any]:
        cursor = _cursor(code, options)
        async with self._busy(target, query=True):
            try:
                matches = await self.agent.complete(target.kernel_id, code, cursor)
            except TimeoutError:
                return {"status": "failed", "error": "the kernel is busy", "suggestions": []}
        return {"status": "finished", "error": None, "suggestions": matches}

    async def interrupt(self, target: Target) -> None:
        async with self._busy(target, query=True):
            await self.agent.interrupt(target.kernel_id)

    async def upload(self, target: Target, files: list[tuple[str, bytes]]) -> None:
        async with self._busy(target, query=True):
            for path, data in files:
                if len(data) > self.max_file_size:
                    raise RequestTooLarge(
                        f"{path!r} is {len(data)} bytes; each file may be at most "
                        f"{self.max_file_size} bytes"
                    )
                await self.agent.upload_file(target.kernel_id, path, data, self.max_file_size)

    async def download(self, target: Target, paths: list[str]) -> list[tuple[str, bytes]]:
        async with self._busy(target, query=True):
            return [
                (path, await self.agent.download_tar(target.kernel_id, path, self.max_file_size))
                for path in paths
            ]

    async def list_files(self, target: Target, path: str) -> dict[str, Any]:
        async with self._busy(target, query=True):
            return await self.agent.list_files(target.kernel_id, path)

    async def logs(self, target: Target) -> str:
        async with self._busy(target, query=True):
            return await self.agent.get_logs(target.kernel_id)

    @contextlib.asynccontextmanager
    async def stream(self, target: Target) -> AsyncIterator[None]:
        """Marks a session as in use while a WebSocket to it is open."""
        async with self._busy(target):
            yield

    async def open_pty(self, target: Target, rows: int, cols: int) -> Pty:
        try:
            return await self.agent.open_pty(target.kernel_id, rows, cols)
        except AgentError as e:
            raise agent_error(e) from e


def _cursor(code: str, options: dict[str, Any]) -> int:
    """A cursor offset from Backend.AI's (row, col) completion options; default: end of code."""
    if "row" not in options and "col" not in options:
        return len(code)
    lines = code.split("\n")
    row = min(max(int(options.get("row", 0)), 0), len(lines) - 1)
    col = max(int(options.get("col", 0)), 0)
    return sum(len(line) + 1 for line in lines[:row]) + min(col, len(lines[row]))
