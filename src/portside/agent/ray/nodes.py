"""The API server's view of the cluster's nodes and their agents.

One ``NodeAgent`` actor per node, named after the node and pinned to it, is started by whichever
API server needs it first and found by name by the others.  For each, a watcher long-polls the
agent's kernel exits; when the agent is gone (its node died, or its process did) the watcher
says so, and the Ray agent reports that node's kernels dead.  A terminal on a node is read in
slices (``pty_read`` waits a while for output) and written with one call per keystroke batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorDiedError, RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from portside import resources
from portside.agent.base import AgentError, KernelExit

from .cluster import NAMESPACE, NodeView, list_nodes
from .node import NodeAgent

log = logging.getLogger("portside.agent.ray.nodes")

#: How long one poll for kernel exits waits on the node before asking again.
EXIT_POLL_SECONDS = 30.0
#: How long ending a local head's kernels may take when the server stops.
SHUTDOWN_SECONDS = 30.0

#: Called with a node's id and the kernel exits it reported, or None when its agent is gone.
ExitsListener = Callable[[str, list[KernelExit] | None], Awaitable[None]]

_NodeAgentActor = ray.remote(NodeAgent)


class NodeLost(AgentError):
    """The node, or the Portside agent on it, is gone."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "gone")


def actor_name(node_id: str) -> str:
    return f"portside-node-{node_id}"


@dataclass(frozen=True)
class NodeHandle:
    node_id: str
    actor: Any
    host: str
    relay_port: int
    token: str
    isolation: str

    async def unwrap(self, ref: Any) -> Any:
        """The result of a node agent call, its error re-raised as an ``AgentError``."""
        try:
            reply = await ref
        except RayActorError as e:
            raise NodeLost(f"the Portside agent on the Ray node {self.node_id} is gone: {e}") from e
        except RayTaskError as e:
            raise AgentError(str(e.cause or e)) from e
        if isinstance(reply, dict) and "error" in reply:
            raise AgentError(str(reply["error"]), str(reply.get("kind", "internal")))
        return reply["ok"] if isinstance(reply, dict) else reply


class Nodes:
    def __init__(self, config: dict[str, Any], node_dir: Path, on_exits: ExitsListener) -> None:
        self._config = config
        self._node_dir = node_dir
        self._on_exits = on_exits
        self.views: dict[str, NodeView] = {}
        self.handles: dict[str, NodeHandle] = {}
        #: Nodes whose agents are gone for good (their kernels have been reported).
        self.dead: set[str] = set()
        self._starting: dict[str, asyncio.Task[NodeHandle]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}

    async def refresh(self) -> list[NodeView]:
        views = await asyncio.to_thread(list_nodes)
        self.views = {view.node_id: view for view in views}
        return views

    async def get(self, node_id: str) -> NodeHandle:
        """The node's agent, started if no server has started it yet."""
        handle = self.handles.get(node_id)
        if handle is not None:
            return handle
        if node_id in self.dead:
            raise NodeLost(f"the Ray node {node_id} is gone")
        task = self._starting.get(node_id)
        if task is None:
            task = asyncio.create_task(self._start(node_id))
            self._starting[node_id] = task
            task.add_done_callback(lambda _: self._starting.pop(node_id, None))
        return await asyncio.shield(task)

    async def _start(self, node_id: str) -> NodeHandle:
        view = self.views.get(node_id)
        slots = resources.to_json(view.slots) if view else {}
        node_dir = str(self._node_dir / node_id[:12])

        def create() -> Any:
            return _NodeAgentActor.options(
                name=actor_name(node_id),
                namespace=NAMESPACE,
                get_if_exists=True,
                lifetime="detached",
                num_cpus=0,
                max_restarts=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self._config, node_dir, slots)

        actor = await asyncio.to_thread(create)
        try:
            info = await actor.start.remote()
        except (RayActorError, RayTaskError) as e:
            raise NodeLost(
                f"the Portside agent on the Ray node {node_id} did not start: {e}"
            ) from e
        handle = NodeHandle(
            node_id=node_id,
            actor=actor,
            host=info["host"],
            relay_port=int(info["relay_port"]),
            token=info["token"],
            isolation=info["isolation"],
        )
        self.handles[node_id] = handle
        self._watchers[node_id] = asyncio.create_task(self._watch(handle))
        log.info("node agent ready", extra={"node": node_id, "host": handle.host})
        return handle

    async def _watch(self, handle: NodeHandle) -> None:
        cursor = 0
        while True:
            try:
                cursor, exits = await handle.actor.exits_since.remote(cursor, EXIT_POLL_SECONDS)
            except ActorDiedError:
                break
            except RayActorError as e:
                # Unreachable for now (a slow node, a network blip): the node poller decides
                # whether the node is dead.
                log.warning("the agent on node %s does not answer: %s", handle.node_id, e)
                await asyncio.sleep(1)
                continue
            if exits:
                await self._on_exits(handle.node_id, [KernelExit(**e) for e in exits])
        self._watchers.pop(handle.node_id, None)
        await self._on_exits(handle.node_id, None)

    def forget(self, node_id: str, *, node_died: bool) -> bool:
        """Drops the node's agent; True if there was news (its kernels are to be reported).

        A node that died stays dead; an agent that died on a live node is started afresh the
        next time the node is needed.
        """
        known = self.handles.pop(node_id, None) is not None
        first_death = node_died and node_id not in self.dead
        if node_died:
            self.dead.add(node_id)
        watcher = self._watchers.pop(node_id, None)
        if watcher is not None and watcher is not asyncio.current_task():
            watcher.cancel()
        return known or first_death

    async def close(self, *, end_kernels: bool) -> None:
        for watcher in self._watchers.values():
            watcher.cancel()
        if end_kernels and self.handles:
            calls = [handle.actor.shutdown.remote() for handle in self.handles.values()]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    asyncio.gather(*calls, return_exceptions=True), SHUTDOWN_SECONDS
                )


class RayPty:
    """A terminal on another node: output is fetched in slices, keystrokes are sent."""

    def __init__(self, handle: NodeHandle, pty_id: str) -> None:
        self.handle = handle
        self.pty_id = pty_id

    async def output(self) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self.handle.actor.pty_read.remote(self.pty_id)
            except Exception as e:  # the node went away: the terminal ends
                log.info("terminal %s ended: %s", self.pty_id, e)
                return
            if chunk is None:
                return
            if chunk:
                yield chunk

    async def _call(self, op: str, *args: Any) -> None:
        await self.handle.unwrap(self.handle.actor.pty_call.remote(self.pty_id, op, list(args)))

    async def write(self, data: bytes) -> None:
        await self._call("write", data)

    async def resize(self, rows: int, cols: int) -> None:
        await self._call("resize", rows, cols)

    async def close(self) -> None:
        with contextlib.suppress(AgentError):
            await self._call("close")
