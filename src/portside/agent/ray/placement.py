"""Sessions' places in the cluster: one Ray placement group per session.

A placement group of one bundle holding the session's resources is what Ray schedules: it waits
in Ray's queue until some node has them free, then reserves them on that node until it is
removed.  It costs no process, and being named (``portside-session-<id>``, detached) it outlives
the API server that asked for it, so a restarted server, or another one, finds it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from portside import resources

from .cluster import bundle_for

log = logging.getLogger("portside.agent.ray.placement")

PREFIX = "portside-session-"
#: How often every placement group of the cluster is checked for ones nobody wants.
FULL_SCAN_SECONDS = 60.0


def group_name(session_id: str) -> str:
    return PREFIX + session_id


@dataclass
class Reservation:
    session_id: str
    group: Any
    requested: dict[str, Decimal]
    node_id: str | None = None
    #: A kernel is being (or was) created in it: only destroying that kernel gives it up.
    claimed: bool = False
    task: asyncio.Task[None] | None = None
    listeners: list[Callable[[], None]] = field(default_factory=list)


def _done(reservation: Reservation) -> bool:
    return reservation.task is not None and reservation.task.done()


def _get_or_create(name: str, bundle: dict[str, float]) -> Any:
    import ray
    from ray.util.placement_group import placement_group

    with contextlib.suppress(ValueError):
        return ray.util.get_placement_group(name)
    try:
        return placement_group([bundle], strategy="STRICT_PACK", name=name, lifetime="detached")
    except ValueError:
        # Another API server made it between the lookup and here.
        return ray.util.get_placement_group(name)


def _node_of(group: Any) -> str:
    from ray.util.placement_group import placement_group_table

    table = placement_group_table(group)
    return str(table["bundles_to_node_id"][0])


def _remove(name: str) -> None:
    import ray
    from ray.util.placement_group import remove_placement_group

    try:
        group = ray.util.get_placement_group(name)
    except ValueError:
        return
    remove_placement_group(group)


def _named_groups() -> set[str]:
    from ray.util.placement_group import placement_group_table

    return {
        info["name"]
        for info in placement_group_table().values()
        if str(info.get("name", "")).startswith(PREFIX) and info.get("state") != "REMOVED"
    }


class Reservations:
    def __init__(self) -> None:
        self.by_session: dict[str, Reservation] = {}
        self._last_scan = 0.0
        self._suspects: set[str] = set()

    async def reserve(
        self, session_id: str, requested: Mapping[str, Decimal], on_placed: Callable[[], None]
    ) -> Reservation:
        reservation = self.by_session.get(session_id)
        failed = reservation is not None and reservation.node_id is None and _done(reservation)
        if failed:
            # Its wait failed (the group was removed from outside): queue it again.
            log.warning("the place of session %s was lost; asking again", session_id)
            reservation = None
        if reservation is None:
            group = await asyncio.to_thread(
                _get_or_create, group_name(session_id), bundle_for(requested)
            )
            reservation = Reservation(session_id, group, dict(requested))
            reservation.task = asyncio.create_task(self._wait(reservation))
            self.by_session[session_id] = reservation
        if reservation.node_id is None and on_placed not in reservation.listeners:
            reservation.listeners.append(on_placed)
        return reservation

    async def _wait(self, reservation: Reservation) -> None:
        await reservation.group.ready()
        reservation.node_id = await asyncio.to_thread(_node_of, reservation.group)
        for listener in reservation.listeners:
            listener()
        reservation.listeners.clear()

    async def placed(self, reservation: Reservation) -> str:
        """Waits until Ray has placed the reservation; its node's id."""
        assert reservation.task is not None
        await asyncio.shield(reservation.task)
        assert reservation.node_id is not None
        return reservation.node_id

    async def release(self, session_id: str) -> None:
        reservation = self.by_session.pop(session_id, None)
        if reservation is not None and reservation.task is not None:
            reservation.task.cancel()
        await asyncio.to_thread(_remove, group_name(session_id))

    async def release_unwanted(self, wanted: set[str]) -> None:
        """Removes the groups of sessions that have ended, or were cancelled while waiting.

        Every minute, groups no server holds in memory (left by a server that stopped) are
        checked too; one goes only when two checks in a row find its session gone, because a
        session created since ``wanted`` was read may just have made its group.
        """
        for session_id in [s for s in self.by_session if s not in wanted]:
            # A claimed one's kernel is dead or destroyed with its session: the place is free.
            log.info("releasing the place of session %s", session_id)
            await self.release(session_id)
        if time.monotonic() - self._last_scan < FULL_SCAN_SECONDS:
            return
        self._last_scan = time.monotonic()
        unwanted = {
            name
            for name in await asyncio.to_thread(_named_groups)
            if name.removeprefix(PREFIX) not in wanted
        }
        for name in unwanted & self._suspects:
            log.info("removing the placement group %s: its session has ended", name)
            await asyncio.to_thread(_remove, name)
        self._suspects = unwanted - self._suspects

    async def close(self) -> None:
        for reservation in self.by_session.values():
            if reservation.task is not None:
                reservation.task.cancel()


def waiting_reason(requested: Mapping[str, Decimal]) -> str:
    wanted = ", ".join(
        f"{slot} {resources.describe(slot, amount)}" for slot, amount in sorted(requested.items())
    )
    return f"waiting for a node of the Ray cluster with {wanted} free"
