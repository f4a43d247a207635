"""The agent's side of a kernel's control socket (see portside/kernel/control.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from portside.agent.base import AgentError

#: Control replies can carry a base64 file; allow lines far larger than asyncio's 64 KiB.
LINE_LIMIT = 512 * 1024 * 1024


class ControlClient:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def connect(self, timeout: float = 10.0) -> None:
        """Connects, retrying until the kernel has bound its socket.

        A new kernel binds it a few milliseconds after it was forked, so the retries start
        at a millisecond apart and back off to 10 ms: a fixed 10 ms would add most of that to
        every session's start, and each try is a single cheap ``connect()``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.001
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    self.socket_path, limit=LINE_LIMIT
                )
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if loop.time() > deadline:
                    raise AgentError("the kernel's control socket did not come up") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.01)
        self._reader_task = asyncio.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                queue = self._pending.get(message.get("id"))
                if queue is not None:
                    queue.put_nowait(message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for queue in self._pending.values():
                queue.put_nowait(
                    {"error": "the kernel's control connection closed", "kind": "gone"}
                )

    async def _send(self, message: dict[str, Any]) -> None:
        if self._writer is None or self._writer.is_closing():
            raise AgentError("the kernel is not reachable", "gone")
        async with self._lock:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()

    @staticmethod
    def _raise(reply: dict[str, Any]) -> None:
        if "error" in reply:
            raise AgentError(reply["error"], reply.get("kind", "internal"))

    async def call(self, op: str, **params: Any) -> Any:
        msg_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[msg_id] = queue
        try:
            await self._send({"id": msg_id, "op": op, **params})
            while True:
                reply = await queue.get()
                if "event" not in reply:
                    self._raise(reply)
                    return reply["result"]
        finally:
            self._pending.pop(msg_id, None)

    @asynccontextmanager
    async def stream(self, op: str, **params: Any) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """A call that sends events before its result; yields them, then ``{"result": ...}``."""
        msg_id = next(self._ids)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending[msg_id] = queue

        async def events() -> AsyncIterator[dict[str, Any]]:
            while True:
                reply = await queue.get()
                if "event" in reply:
                    yield reply["event"]
                    continue
                self._raise(reply)
                yield {"event": "result", "result": reply["result"]}
                return

        try:
            await self._send({"id": msg_id, "op": op, **params})
            yield events()
        finally:
            self._pending.pop(msg_id, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
