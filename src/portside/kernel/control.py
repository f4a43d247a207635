"""The kernel's control server: batch runs, files, terminals and apps, for the agent.

It listens on ``control.sock`` in the run directory and speaks JSON lines: a request is
``{"id": n, "op": "...", ...}``; the answer is ``{"id": n, "result": ...}`` or
``{"id": n, "error": "...", "kind": "..."}``.  Long operations (a batch run, a terminal) send
``{"id": n, "event": {...}}`` lines before their answer.  It runs on the event loop of
ipykernel's control thread, so it keeps answering while a query-mode cell holds the main
thread, without a thread and an event loop of its own in every kernel.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from portside.kernel import files, rehearsal
from portside.kernel.apps import AppManager, ConnectBroker
from portside.kernel.batch import BatchRun
from portside.kernel.pty import PtySession

LOG_TAIL_BYTES = 256 * 1024
LINE_LIMIT = 512 * 1024 * 1024


class OpError(Exception):
    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.lock = asyncio.Lock()

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        async with self.lock:
            self.writer.write(data)
            await self.writer.drain()


Op = Callable[[Connection, dict[str, Any]], Awaitable[Any]]


class ControlServer:
    def __init__(self, workdir: str, rundir: str, spec: dict[str, Any]) -> None:
        self.workdir = workdir
        self.rundir = rundir
        self.spec = spec
        self.socket_path = os.path.join(rundir, "control.sock")
        self.input_socket = os.path.join(rundir, "input.sock")
        self.batch: BatchRun | None = None
        self._servers: list[asyncio.Server] = []
        self.pending_input: asyncio.Future[str] | None = None
        self.ptys: dict[str, PtySession] = {}
        self.apps = AppManager(workdir, rundir)
        self.broker = ConnectBroker(rundir)
        self.ops: dict[str, Op] = {
            "ping": self._ping,
            "activate": self._activate,
            "batch": self._batch,
            "input": self._input,
            "batch_interrupt": self._batch_interrupt,
            "files_list": self._files_list,
            "files_write": self._files_write,
            "files_tar": self._files_tar,
            "pty_open": self._pty_open,
            "pty_write": self._pty_write,
            "pty_resize": self._pty_resize,
            "pty_close": self._pty_close,
            "logs": self._logs,
            "functions_run": self._functions_run,
            "app_start": self._app_start,
            "app_stop": self._app_stop,
            "app_list": self._app_list,
        }

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Starts serving on ``loop`` (running in another thread) and returns once it does.

        The kernel starts it when ipykernel is up, so a connected agent finds a kernel that
        answers on every channel.
        """
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)

    async def _serve(self) -> None:
        self.broker.start()
        for path in (self.socket_path, self.input_socket):
            if os.path.exists(path):
                os.unlink(path)
        # One request is one line, and an upload's line carries the whole file (base64).
        self._servers = [
            await asyncio.start_unix_server(self._client, path=self.socket_path, limit=LINE_LIMIT),
            await asyncio.start_unix_server(self._input_client, path=self.input_socket),
        ]

    def _log(self, message: str) -> None:
        # Not stderr: ipykernel forwards the process's stderr into the user's cell output.
        with open(os.path.join(self.rundir, "kernel.log"), "a") as log:
            log.write(f"control: {message}\n")

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(writer)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while line := await reader.readline():
                task = asyncio.create_task(self._handle(conn, json.loads(line)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (ValueError, ConnectionError) as e:
            self._log(f"dropped a connection: {type(e).__name__}: {e}")
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    async def _handle(self, conn: Connection, msg: dict[str, Any]) -> None:
        msg_id = msg.get("id")
        try:
            op = self.ops.get(msg.get("op", ""))
            if op is None:
                raise OpError(f"unknown operation {msg.get('op')!r}")
            result = await op(conn, msg)
            reply: dict[str, Any] = {"id": msg_id, "result": result}
        except files.TooLarge as e:
            reply = {"id": msg_id, "error": str(e), "kind": "too-large"}
        except files.PathError as e:
            reply = {"id": msg_id, "error": str(e), "kind": "path"}
        except OpError as e:
            reply = {"id": msg_id, "error": str(e), "kind": e.kind}
        except Exception as e:
            reply = {"id": msg_id, "error": f"{type(e).__name__}: {e}", "kind": "internal"}
        try:
            await conn.send(reply)
        except ConnectionError:
            pass

    async def _ping(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return {"pid": os.getpid()}

    async def _activate(self, conn: Connection, msg: dict[str, Any]) -> Any:
        """Gives a pooled kernel its session's environment when it is handed out."""
        os.environ.update(msg.get("env", {}))
        return {}

    async def _functions_run(self, conn: Connection, msg: dict[str, Any]) -> Any:
        """What a rehearsal kernel recorded (portside.kernel.rehearsal)."""
        return {"codes": rehearsal.recorded()}

    async def _batch(self, conn: Connection, msg: dict[str, Any]) -> Any:
        if self.batch is not None:
            raise OpError("a batch run is already in progress", "busy")

        async def emit(event: dict[str, Any]) -> None:
            await conn.send({"id": msg["id"], "event": event})

        self.batch = BatchRun(msg["run_id"], self.workdir, self.input_socket, emit)
        try:
            return {"exit_code": await self.batch.run(msg["commands"])}
        finally:
            self.batch = None

    async def _input_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            batch = self.batch
            if batch is None:
                writer.write(b"<user-input-unavailable>")
                return
            self.pending_input = asyncio.get_running_loop().create_future()
            await batch.emit({"event": "waiting-input"})
            text = await self.pending_input
            writer.write(text.encode())
            await writer.drain()
        finally:
            self.pending_input = None
            writer.close()

    async def _input(self, conn: Connection, msg: dict[str, Any]) -> Any:
        if self.pending_input is None or self.pending_input.done():
            raise OpError("no program is waiting for input", "not-waiting")
        self.pending_input.set_result(msg.get("text", ""))
        return {}

    async def _batch_interrupt(self, conn: Connection, msg: dict[str, Any]) -> Any:
        if self.batch is not None:
            self.batch.interrupt()
        return {}

    async def _files_list(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return await asyncio.to_thread(files.list_dir, self.workdir, msg.get("path", "."))

    async def _files_write(self, conn: Connection, msg: dict[str, Any]) -> Any:
        data = base64.b64decode(msg["data"])
        size = await asyncio.to_thread(
            files.write_file, self.workdir, msg["path"], data, msg["max_size"]
        )
        return {"size": size}

    async def _files_tar(self, conn: Connection, msg: dict[str, Any]) -> Any:
        data = await asyncio.to_thread(files.make_tar, self.workdir, msg["path"], msg["max_size"])
        return {"data": base64.b64encode(data).decode()}

    async def _pty_open(self, conn: Connection, msg: dict[str, Any]) -> Any:
        pty_id = str(msg["id"])
        session = PtySession(self.workdir, msg.get("rows", 24), msg.get("cols", 80))
        self.ptys[pty_id] = session

        async def output(data: bytes) -> None:
            await conn.send(
                {
                    "id": msg["id"],
                    "event": {
                        "event": "pty_output",
                        "pty_id": pty_id,
                        "data": base64.b64encode(data).decode(),
                    },
                }
            )

        await conn.send({"id": msg["id"], "event": {"event": "pty_opened", "pty_id": pty_id}})
        try:
            return {"exit_code": await session.pump(output)}
        finally:
            self.ptys.pop(pty_id, None)

    def _pty(self, msg: dict[str, Any]) -> PtySession:
        session = self.ptys.get(str(msg.get("pty_id")))
        if session is None:
            raise OpError("no such terminal", "not-found")
        return session

    async def _pty_write(self, conn: Connection, msg: dict[str, Any]) -> Any:
        self._pty(msg).write(base64.b64decode(msg["data"]))
        return {}

    async def _pty_resize(self, conn: Connection, msg: dict[str, Any]) -> Any:
        self._pty(msg).resize(int(msg["rows"]), int(msg["cols"]))
        return {}

    async def _pty_close(self, conn: Connection, msg: dict[str, Any]) -> Any:
        self._pty(msg).close()
        return {}

    async def _app_start(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return await self.apps.start(
            msg["name"],
            int(msg["port"]),
            msg.get("command"),
            msg.get("env", {}),
            wait=msg.get("wait", True),
        )

    async def _app_stop(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return {"stopped": await self.apps.stop(msg["name"])}

    async def _app_list(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return {"apps": self.apps.listing()}

    async def _logs(self, conn: Connection, msg: dict[str, Any]) -> Any:
        path = os.path.join(self.rundir, "kernel.log")
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - LOG_TAIL_BYTES))
                return {"logs": f.read().decode("utf-8", "replace")}
        except FileNotFoundError:
            return {"logs": ""}
