"""The node agent: one Ray actor per node, running that node's kernels with the local backend.

Ray decides where a session goes; on that node, this actor does what the local backend does on
a single machine (a zygote per runtime, bubblewrap sandboxes, cgroups, a warm pool), because it
*is* the local backend: a ``LocalAgent`` whose data directory and capacity are the node's.  The
API servers reach it by name (``portside-node-<node id>``), so any of them can serve any
session.  Every method takes and returns plain data; failures come back as
``{"error", "kind"}`` rather than as exceptions, so an ``AgentError``'s kind survives the trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from portside.agent.base import AgentError, KernelExit, KernelSpec, Pty
from portside.agent.local.agent import LocalAgent
from portside.config import Config
from portside.images import ImageRegistry
from portside.resources import from_json

from .relay import Relay

log = logging.getLogger("portside.agent.ray.node")

#: LocalAgent methods the API servers may call through ``call``.
OPERATIONS = frozenset(
    {
        "destroy_kernel",
        "restart_kernel",
        "execute",
        "interrupt",
        "complete",
        "upload_file",
        "download_tar",
        "list_files",
        "get_logs",
        "start_app",
        "stop_app",
        "kernel_exit",
    }
)
#: How long one ``pty_read`` waits for output before answering with nothing.
PTY_POLL_SECONDS = 10.0


def node_config(config: dict[str, Any], node_dir: str, slots: dict[str, str]) -> Config:
    """The server's configuration, as the local backend of one node should see it."""
    amounts = from_json(slots)
    resources = {
        "cpu": max(1, int(amounts.get("cpu", Decimal(1)))),
        "mem": str(int(amounts.get("mem", Decimal(0)))),
        "mock_cuda": {
            "devices": int(amounts.get("cuda.device", Decimal(0))),
            "shares": str(amounts.get("cuda.shares", Decimal(0))),
        },
        # Ray counts the node's GPUs; the kernels get as many device numbers as it granted.
        "detect_gpus": False,
    }
    return Config.model_validate({**config, "data_dir": node_dir, "resources": resources})


@dataclass
class _PtyPump:
    """A terminal whose output is collected here until the API server asks for it."""

    pty: Pty
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    ended: bool = False
    task: asyncio.Task[None] | None = None


class NodeAgent:
    def __init__(self, config: dict[str, Any], node_dir: str, slots: dict[str, str]) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        # The address Ray gave this node (127.0.0.1 on a loopback cluster); typed as Any, as
        # Ray's annotations are partial.
        node_ip: Any = ray.util.get_node_ip_address
        self.host: str = node_ip()
        os.makedirs(node_dir, exist_ok=True)
        cfg = node_config(config, node_dir, slots)
        self.local = LocalAgent(cfg, ImageRegistry(cfg.images, os.uname().machine))
        self.relay = Relay(self.host, self._broker_path)
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._exits: list[dict[str, Any]] = []
        self._exit_signal: asyncio.Event | None = None
        self._ptys: dict[str, _PtyPump] = {}

    async def start(self) -> dict[str, Any]:
        """Starts the node's local backend and relay once; what an API server needs to know."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
            self._exit_signal = asyncio.Event()
        async with self._start_lock:
            if not self._started:
                # Ray runs this actor's event loop in a thread that blocks SIGINT, and the
                # zygote and sandboxes started from it would inherit that mask: their kernels
                # could not be interrupted.
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                await self.local.start([], self._record_exit)
                await self.relay.start()
                self._started = True
        return {
            "node_id": self.node_id,
            "host": self.host,
            "relay_port": self.relay.port,
            "token": self.relay.token,
            "isolation": self.local.isolation,
        }

    def _broker_path(self, kernel_id: str) -> str:
        if kernel_id not in self.local.kernels:
            raise LookupError(kernel_id)
        return str(self.local.app_endpoint(kernel_id, 0)["path"])

    # Kernels -------------------------------------------------------------------------------

    async def create_kernel(self, spec: dict[str, Any]) -> dict[str, Any]:
        try:
            info = await self.local.create_kernel(KernelSpec.from_dict(spec))
        except AgentError as e:
            return {"error": str(e), "kind": e.kind}
        return {"ok": info.to_dict()}

    async def call(self, op: str, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Runs one of the local backend's ``OPERATIONS``."""
        if op not in OPERATIONS:
            return {"error": f"unknown operation {op!r}", "kind": "internal"}
        try:
            result = getattr(self.local, op)(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except AgentError as e:
            return {"error": str(e), "kind": e.kind}
        except Exception as e:
            log.exception("%s failed on node %s", op, self.node_id)
            return {"error": f"{type(e).__name__}: {e}", "kind": "internal"}
        return {"ok": result}

    async def kernel_states(self, kernel_ids: list[str]) -> dict[str, str]:
        """Each known kernel's state (``running``, ``dead``, ...); unknown ones are left out."""
        return {
            kernel_id: self.local.kernels[kernel_id].state
            for kernel_id in kernel_ids
            if kernel_id in self.local.kernels
        }

    async def _record_exit(self, event: KernelExit) -> None:
        self._exits.append(asdict(event))
        assert self._exit_signal is not None
        self._exit_signal.set()
        self._exit_signal = asyncio.Event()

    async def exits_since(self, cursor: int, timeout: float) -> tuple[int, list[dict[str, Any]]]:
        """Kernel exits after the first ``cursor``, waiting up to ``timeout`` for one.

        Every API server keeps its own cursor, so each hears of every exit.
        """
        if cursor >= len(self._exits) and self._exit_signal is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit_signal.wait(), timeout)
        return len(self._exits), self._exits[cursor:]

    async def shutdown(self) -> None:
        """Ends every kernel on the node: for a Ray head that goes away with its server."""
        for pump in list(self._ptys.values()):
            if pump.task is not None:
                pump.task.cancel()
        for kernel_id in list(self.local.kernels):
            with contextlib.suppress(AgentError):
                await self.local.destroy_kernel(kernel_id)
        await self.relay.close()
        await self.local.close()

    # Terminals -----------------------------------------------------------------------------

    async def pty_open(self, kernel_id: str, rows: int, cols: int) -> dict[str, Any]:
        try:
            pty = await self.local.open_pty(kernel_id, rows, cols)
        except AgentError as e:
            return {"error": str(e), "kind": e.kind}
        pty_id = str(uuid.uuid4())
        pump = _PtyPump(pty)
        pump.task = asyncio.create_task(self._pump(pump))
        self._ptys[pty_id] = pump
        return {"ok": pty_id}

    async def _pump(self, pump: _PtyPump) -> None:
        try:
            async for chunk in pump.pty.output():
                pump.queue.put_nowait(chunk)
        except AgentError as e:
            log.info("a terminal ended: %s", e)
        finally:
            pump.queue.put_nowait(None)

    async def pty_read(self, pty_id: str) -> bytes | None:
        """The terminal's output since the last read (waits a while for some); None at its end."""
        pump = self._ptys.get(pty_id)
        if pump is None or pump.ended:
            self._ptys.pop(pty_id, None)
            return None
        try:
            first = await asyncio.wait_for(pump.queue.get(), PTY_POLL_SECONDS)
        except TimeoutError:
            return b""
        chunks: list[bytes] = []
        item: bytes | None = first
        while True:
            if item is None:
                pump.ended = True
                break
            chunks.append(item)
            if pump.queue.empty():
                break
            item = pump.queue.get_nowait()
        if not chunks:
            self._ptys.pop(pty_id, None)
            return None
        return b"".join(chunks)

    async def pty_call(self, pty_id: str, op: str, args: list[Any]) -> dict[str, Any]:
        """``write``, ``resize`` or ``close`` on an open terminal."""
        pump = self._ptys.get(pty_id)
        if pump is None or op not in ("write", "resize", "close"):
            return {"ok": None} if op == "close" else {"error": "the terminal is closed"}
        try:
            await getattr(pump.pty, op)(*args)
        except AgentError as e:
            return {"error": str(e), "kind": e.kind}
        if op == "close":
            self._ptys.pop(pty_id, None)
            if pump.task is not None:
                pump.task.cancel()
        return {"ok": None}
