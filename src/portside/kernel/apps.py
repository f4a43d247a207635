"""In-session apps: starting them, and handing the app proxy connections to them.

Apps (the web terminal, Jupyter, a model server) listen on loopback ports inside the session's
own network namespace, where nothing outside the sandbox can reach them.  The app proxy asks
the connection broker for a connection to a port; the broker connects from inside the
namespace and passes the connected socket back over its Unix socket (``SCM_RIGHTS``), so
proxied traffic flows between the proxy and the app with no copy through this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from portside.kernel.batch import PROGRAM_OOM_SCORE_ADJ

#: How long an app may take to start listening (Backend.AI's runner waits 30 s as well).
LAUNCH_TIMEOUT = 30.0


@dataclass
class App:
    name: str
    port: int
    process: asyncio.subprocess.Process | None = None
    log_path: str = ""
    env: dict[str, str] = field(default_factory=dict)


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class AppManager:
    def __init__(self, workdir: str, rundir: str) -> None:
        self.workdir = workdir
        self.rundir = rundir
        self.apps: dict[str, App] = {}
        self._lock = asyncio.Lock()

    async def start(
        self,
        name: str,
        port: int,
        command: list[str] | None,
        env: dict[str, str],
        *,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Starts an app unless it runs already; ``command`` None means the user runs it.

        With ``wait`` false it returns once the process runs: model servers may load for
        minutes, and their health checks, not a port probe, say when they are ready.  With
        ``wait``, a caller finding the app started by another call that is still waiting for
        it to listen waits as well, so that no caller is told to connect too early.
        """
        async with self._lock:
            app = self.apps.get(name)
            if app is not None and (app.process is None or app.process.returncode is None):
                status = "running"
            elif command is None:
                self.apps[name] = App(name, port)
                return {"status": "started", "port": port}
            else:
                log_path = os.path.join(self.rundir, f"app-{name}.log")
                log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
                try:
                    process = await asyncio.create_subprocess_exec(
                        *command,
                        cwd=self.workdir,
                        env={**os.environ, **env},
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        start_new_session=True,
                        preexec_fn=_raise_oom_score,
                    )
                except OSError as e:
                    return {"status": "failed", "error": f"cannot run {command[0]}: {e}"}
                finally:
                    log.close()
                app = self.apps[name] = App(name, port, process, log_path, env)
                status = "started"
        if not wait or app.process is None:
            return {"status": status, "port": app.port}
        return await self._until_listening(app, app.process, status)

    async def _until_listening(
        self, app: App, process: asyncio.subprocess.Process, status: str
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LAUNCH_TIMEOUT
        while loop.time() < deadline:
            if process.returncode is not None:
                return {"status": "failed", "error": self._failure(app, "exited")}
            if await _port_open(app.port):
                return {"status": status, "port": app.port}
            await asyncio.sleep(0.05)
        process.kill()
        return {"status": "failed", "error": self._failure(app, "did not listen in time")}

    def _failure(self, app: App, what: str) -> str:
        try:
            with open(app.log_path, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            tail = ""
        return f"{app.name} {what} (port {app.port}): {tail.strip()}".strip()

    async def stop(self, name: str) -> bool:
        app = self.apps.pop(name, None)
        if app is None:
            return False
        if app.process is not None and app.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.process.pid, 15)
            try:
                await asyncio.wait_for(app.process.wait(), 2)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(app.process.pid, 9)
        return True

    def listing(self) -> list[dict[str, Any]]:
        return [
            {
                "name": app.name,
                "port": app.port,
                "running": app.process is None or app.process.returncode is None,
            }
            for app in self.apps.values()
        ]


def _raise_oom_score() -> None:
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write(str(PROGRAM_OOM_SCORE_ADJ))


class ConnectBroker:
    """Answers ``{"port": N}`` on ``connect.sock`` with a socket connected to that port.

    Served on the event loop of the control server (ipykernel's control thread), not on a
    thread of its own per kernel and per connection.
    """

    def __init__(self, rundir: str) -> None:
        self.path = os.path.join(rundir, "connect.sock")
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Starts serving on the running loop."""
        if os.path.exists(self.path):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        server.listen(128)
        server.setblocking(False)
        self._spawn(self._serve(server))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, server: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(server)
            self._spawn(self._answer(client))

    @staticmethod
    async def _answer(client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with client:
            request = b""
            while b"\n" not in request and len(request) < 4096:
                chunk = await loop.sock_recv(client, 4096)
                if not chunk:
                    return
                request += chunk
            try:
                port = int(json.loads(request.split(b"\n", 1)[0])["port"])
            except (ValueError, KeyError, TypeError):
                await loop.sock_sendall(client, b'{"error": "send {\\"port\\": N}"}\n')
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            with upstream:
                upstream.setblocking(False)
                try:
                    await asyncio.wait_for(loop.sock_connect(upstream, ("127.0.0.1", port)), 5)
                except OSError as e:  # TimeoutError, from wait_for, among them
                    reason = os.strerror(e.errno) if e.errno else "timed out"
                    error = json.dumps({"error": f"port {port}: {reason}"}).encode() + b"\n"
                    await loop.sock_sendall(client, error)
                    return
                # The receiver shares this open file, flags and all: it gets a blocking socket.
                upstream.setblocking(True)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socket.send_fds(client, [b'{"ok": true}\n'], [upstream.fileno()])
