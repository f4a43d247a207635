"""The Ray backend: the Agent protocol over a Ray cluster.

Each session gets a placement group holding its slots (placement.py); Ray picks the node.  On
every node a ``NodeAgent`` actor (node.py) runs the kernels with the local backend, so what runs
in the sandbox is the same as on one machine.  This class, in the API server, forwards each
call to the node of the kernel, hears of kernel exits from every node agent, and watches the
nodes: when one dies, its sessions' kernels are reported dead with the reason.  App connections
go through the node's relay (relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from portside import resources
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

from .cluster import connect
from .nodes import NodeHandle, Nodes, RayPty
from .placement import Reservations, waiting_reason

log = logging.getLogger("portside.agent.ray")

#: How often the cluster's node list is read (new nodes, dead nodes).
NODE_POLL_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class KernelRef:
    node_id: str
    session_id: str


class RayAgent:
    def __init__(self, config: Config, images: ImageRegistry) -> None:
        self.config = config
        self.images = images
        self.agent_id = "ray"
        self.isolation = "unknown"
        self.on_exit: ExitCallback | None = None
        node_dir = Path(config.agent.ray_node_dir or config.data_dir / "nodes")
        self.nodes = Nodes(config.model_dump(mode="json"), node_dir, self._on_node_exits)
        self.reservations = Reservations()
        self._kernels: dict[str, KernelRef] = {}
        self._exits: dict[str, KernelExit] = {}
        self._owns_head = False
        self._poller: asyncio.Task[None] | None = None
        #: Nodes whose agent would not start (said once, then retried quietly).
        self._unstartable: set[str] = set()

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self, live: list[KernelInfo], on_exit: ExitCallback) -> dict[str, bool]:
        self.on_exit = on_exit
        self._owns_head = await asyncio.to_thread(connect, self.config)
        views = await self.nodes.refresh()
        handles = await asyncio.gather(
            *(self.nodes.get(view.node_id) for view in views if view.alive),
            return_exceptions=True,
        )
        for handle in handles:
            if isinstance(handle, NodeHandle):
                self.isolation = handle.isolation
            else:
                log.warning("a Ray node's agent did not start: %s", handle)
        survived = {info.kernel_id: await self._reattach(info) for info in live}
        self._poller = asyncio.create_task(self._poll_nodes(), name="ray-nodes")
        return survived

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.reservations.close()
        log.info("closing the node agents", extra={"end_kernels": self._owns_head})
        await self.nodes.close(end_kernels=self._owns_head)
        log.info("leaving the Ray cluster")
        import ray

        # A head this server started goes with it (and its nodes' kernels, ended above); from
        # a cluster of its own, the server only disconnects: sessions keep running there.
        await asyncio.to_thread(ray.shutdown)
        log.info("left the Ray cluster")

    async def capacity(self) -> dict[str, Decimal]:
        return self.offered()

    def offered(self) -> dict[str, Decimal]:
        total: dict[str, Decimal] = {}
        for view in self.nodes.views.values():
            if view.alive:
                total = resources.add(total, view.slots)
        return total

    async def _poll_nodes(self) -> None:
        while True:
            await asyncio.sleep(NODE_POLL_SECONDS)
            try:
                views = await self.nodes.refresh()
            except Exception:
                log.exception("cannot read the Ray cluster's nodes")
                continue
            for view in views:
                if view.alive and view.node_id not in self.nodes.handles:
                    # A node joined (or its agent died and can start again).
                    try:
                        await self.nodes.get(view.node_id)
                    except Exception as e:
                        if view.node_id not in self._unstartable:
                            log.warning("no Portside agent on Ray node %s: %s", view.node_id, e)
                        self._unstartable.add(view.node_id)
                elif not view.alive:
                    await self._node_lost(view.node_id, died=True)

    # Placing sessions --------------------------------------------------------------------

    def never_fits(self, requested: Mapping[str, Decimal]) -> list[str]:
        alive = [view for view in self.nodes.views.values() if view.alive]
        if not alive:
            return ["the Ray cluster has no live node"]
        if any(not resources.shortfalls(requested, view.slots) for view in alive):
            return []
        reasons = []
        for slot, amount in sorted(requested.items()):
            largest = max(view.slots.get(slot, Decimal(0)) for view in alive)
            if amount > largest:
                reasons.append(
                    f"{slot}: {resources.describe(slot, amount)} requested, the largest node "
                    f"of the Ray cluster has {resources.describe(slot, largest)}"
                )
        return reasons or [
            "no single node of the Ray cluster has all of "
            + ", ".join(f"{s} {resources.describe(s, a)}" for s, a in sorted(requested.items()))
        ]

    async def reserve(
        self, session_id: str, requested: Mapping[str, Decimal], on_placed: Callable[[], None]
    ) -> str | None:
        reservation = await self.reservations.reserve(session_id, requested, on_placed)
        if reservation.node_id is not None:
            return None
        impossible = self.never_fits(requested)
        if impossible:
            return "no live node of the Ray cluster could hold it: " + "; ".join(impossible)
        return waiting_reason(requested)

    async def release_unwanted(self, wanted: set[str]) -> None:
        await self.reservations.release_unwanted(wanted)

    # Kernels -----------------------------------------------------------------------------

    async def create_kernel(self, spec: KernelSpec) -> KernelInfo:
        requested = resources.from_json(spec.resources)
        reservation = await self.reservations.reserve(spec.session_id, requested, lambda: None)
        reservation.claimed = True
        try:
            node_id = await self.reservations.placed(reservation)
            handle = await self.nodes.get(node_id)
            local = KernelInfo.from_dict(
                await handle.unwrap(handle.actor.create_kernel.remote(spec.to_dict()))
            )
        except BaseException:
            await self.reservations.release(spec.session_id)
            raise
        self._kernels[local.kernel_id] = KernelRef(node_id, spec.session_id)
        return KernelInfo(
            kernel_id=local.kernel_id,
            agent_id=f"ray:{node_id}",
            isolation=local.isolation,
            host=handle.host,
            attach={"node_id": node_id, "session_id": spec.session_id, "local": local.attach},
        )

    async def _reattach(self, info: KernelInfo) -> bool:
        """Finds a kernel again on its node; False (with the reason kept) if it is gone."""
        node_id = info.attach.get("node_id")
        if not node_id:
            return False
        self._kernels[info.kernel_id] = KernelRef(node_id, str(info.attach.get("session_id")))
        view = self.nodes.views.get(node_id)
        if view is None or not view.alive:
            self._record_exit(info.kernel_id, f"the Ray node {node_id} running the kernel died")
            return False
        try:
            handle = await self.nodes.get(node_id)
            states = await handle.actor.kernel_states.remote([info.kernel_id])
            if states.get(info.kernel_id) == "running":
                return True
            exit_info = await handle.unwrap(
                handle.actor.call.remote("kernel_exit", [info.kernel_id], {})
            )
        except Exception as e:
            self._record_exit(info.kernel_id, f"the kernel's node {node_id} cannot be reached: {e}")
            return False
        if exit_info is not None:
            self._exits[info.kernel_id] = exit_info
        else:
            self._record_exit(info.kernel_id, f"the kernel is gone from the Ray node {node_id}")
        return False

    def knows(self, kernel_id: str) -> bool:
        return kernel_id in self._kernels

    async def adopt(self, info: KernelInfo) -> bool:
        return await self._reattach(info)

    async def destroy_kernel(self, kernel_id: str) -> None:
        ref = self._kernels.pop(kernel_id, None)
        self._exits.pop(kernel_id, None)
        if ref is None:
            return
        handle = self.nodes.handles.get(ref.node_id)
        if handle is not None:
            try:
                await handle.unwrap(handle.actor.call.remote("destroy_kernel", [kernel_id], {}))
            except AgentError as e:
                log.warning("kernel %s was not destroyed cleanly: %s", kernel_id, e)
        await self.reservations.release(ref.session_id)

    async def _handle(self, kernel_id: str) -> NodeHandle:
        """The agent of the kernel's node; a "gone" error if the kernel or its node is."""
        ref = self._kernels.get(kernel_id)
        if ref is None:
            raise AgentError(f"kernel {kernel_id} is not running on this agent", "gone")
        exit_info = self._exits.get(kernel_id)
        if exit_info is not None and ref.node_id not in self.nodes.handles:
            raise AgentError(exit_info.reason, "gone")
        return await self.nodes.get(ref.node_id)

    async def _call(self, kernel_id: str, op: str, *args: Any, **kwargs: Any) -> Any:
        handle = await self._handle(kernel_id)
        return await handle.unwrap(handle.actor.call.remote(op, list(args), kwargs))

    async def restart_kernel(self, kernel_id: str) -> None:
        await self._call(kernel_id, "restart_kernel", kernel_id)
        self._exits.pop(kernel_id, None)

    def holds_run(self, kernel_id: str, run_id: str) -> bool:
        # Runs live in the kernel's actor, which every API server calls alike.
        return True

    async def execute(
        self,
        kernel_id: str,
        run_id: str | None,
        mode: str,
        code: str,
        opts: dict[str, Any],
        flush_timeout: float | None,
    ) -> ExecResult:
        result: ExecResult = await self._call(
            kernel_id, "execute", kernel_id, run_id, mode, code, opts, flush_timeout
        )
        return result

    async def interrupt(self, kernel_id: str) -> None:
        await self._call(kernel_id, "interrupt", kernel_id)

    async def complete(self, kernel_id: str, code: str, cursor: int) -> list[str]:
        matches: list[str] = await self._call(kernel_id, "complete", kernel_id, code, cursor)
        return matches

    async def upload_file(self, kernel_id: str, path: str, data: bytes, max_size: int) -> None:
        await self._call(kernel_id, "upload_file", kernel_id, path, data, max_size)

    async def download_tar(self, kernel_id: str, path: str, max_size: int) -> bytes:
        data: bytes = await self._call(kernel_id, "download_tar", kernel_id, path, max_size)
        return data

    async def list_files(self, kernel_id: str, path: str) -> dict[str, Any]:
        listing: dict[str, Any] = await self._call(kernel_id, "list_files", kernel_id, path)
        return listing

    async def get_logs(self, kernel_id: str) -> str:
        return str(await self._call(kernel_id, "get_logs", kernel_id))

    async def open_pty(self, kernel_id: str, rows: int, cols: int) -> Pty:
        handle = await self._handle(kernel_id)
        pty_id = await handle.unwrap(handle.actor.pty_open.remote(kernel_id, rows, cols))
        return RayPty(handle, str(pty_id))

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
        result: dict[str, Any] = await self._call(
            kernel_id, "start_app", kernel_id, name, port, command, env, wait=wait
        )
        return result

    async def stop_app(self, kernel_id: str, name: str) -> None:
        await self._call(kernel_id, "stop_app", kernel_id, name)

    def app_endpoint(self, kernel_id: str, port: int) -> dict[str, Any]:
        ref = self._kernels.get(kernel_id)
        handle = self.nodes.handles.get(ref.node_id) if ref else None
        if handle is None:
            raise AgentError(f"kernel {kernel_id} is not running on a live node", "gone")
        return {
            "kind": "relay",
            "host": handle.host,
            "port": handle.relay_port,
            "token": handle.token,
            "kernel_id": kernel_id,
            "app_port": port,
        }

    def kernel_exit(self, kernel_id: str) -> KernelExit | None:
        return self._exits.get(kernel_id)

    # Exits and dead nodes ------------------------------------------------------------------

    def _record_exit(self, kernel_id: str, reason: str) -> KernelExit:
        event = KernelExit(kernel_id=kernel_id, reason=reason)
        self._exits[kernel_id] = event
        return event

    async def _on_node_exits(self, node_id: str, events: list[KernelExit] | None) -> None:
        """What a node's watcher heard: kernel exits, or (None) that its agent is gone."""
        if events is None:
            view = next((v for v in await self.nodes.refresh() if v.node_id == node_id), None)
            await self._node_lost(node_id, died=view is None or not view.alive)
            return
        for event in events:
            self._exits[event.kernel_id] = event
            if self.on_exit is not None:
                await self.on_exit(event)

    async def _node_lost(self, node_id: str, *, died: bool) -> None:
        """Reports the kernels of a node that died (or whose agent did) as dead, once."""
        if not self.nodes.forget(node_id, node_died=died):
            return
        reason = (
            f"the Ray node {node_id} running the kernel died"
            if died
            else f"the Portside agent on the Ray node {node_id} running the kernel died"
        )
        lost = [
            kernel_id
            for kernel_id, ref in self._kernels.items()
            if ref.node_id == node_id and kernel_id not in self._exits
        ]
        if lost:
            log.warning("lost Ray node %s (died: %s): %d kernel(s) gone", node_id, died, len(lost))
        for kernel_id in lost:
            event = self._record_exit(kernel_id, reason)
            if self.on_exit is not None:
                await self.on_exit(event)
