"""Session lifecycle events: published on every status change, consumed by SSE and waiters.

Within one server process the hub is in memory.  Several API servers on one database share
events through a ``Broadcast`` (PostgreSQL LISTEN/NOTIFY), so a client listening on one server
hears about sessions changed by another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("portside.events")

#: Backend.AI's event names for each session status (wire-protocol.md section 4.4).
STATUS_EVENTS = {
    "PENDING": "session_enqueued",
    "SCHEDULED": "session_scheduled",
    "PREPARING": "session_preparing",
    "RUNNING": "session_started",
    "TERMINATING": "session_terminating",
    "TERMINATED": "session_terminated",
    "CANCELLED": "session_cancelled",
    "ERROR": "session_failure",
}


@dataclass(frozen=True, slots=True)
class SessionEvent:
    name: str
    session_id: str
    session_name: str
    access_key: str
    status: str
    reason: str = ""
    exit_code: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """The SSE ``data`` object the official client parses."""
        return {
            "reason": self.reason,
            "sessionName": self.session_name,
            "ownerAccessKey": self.access_key,
            "sessionId": self.session_id,
            "exitCode": self.exit_code,
            "status": self.status,
            **self.extra,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Forwarder = Callable[[SessionEvent], Awaitable[None]]


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[SessionEvent]] = set()
        self._by_session: dict[str, set[asyncio.Queue[SessionEvent]]] = {}
        self._forwarder: Forwarder | None = None

    def set_forwarder(self, forwarder: Forwarder | None) -> None:
        """Sends every local event to other servers too (multi-server deployments)."""
        self._forwarder = forwarder

    def deliver(self, event: SessionEvent) -> None:
        """Hands an event to this process's subscribers."""
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        for queue in list(self._by_session.get(event.session_id, ())):
            queue.put_nowait(event)

    async def publish(self, event: SessionEvent) -> None:
        self.deliver(event)
        if self._forwarder is not None:
            try:
                await self._forwarder(event)
            except Exception:
                log.exception("could not forward an event to the other servers")

    @contextlib.asynccontextmanager
    async def subscribe(
        self, session_id: str | None = None
    ) -> AsyncIterator[asyncio.Queue[SessionEvent]]:
        """Every event, or only those of ``session_id``: a request waiting for its own session
        to start should not be woken by each of the others starting beside it."""
        queue: asyncio.Queue[SessionEvent] = asyncio.Queue()
        subscribers = (
            self._subscribers
            if session_id is None
            else self._by_session.setdefault(session_id, set())
        )
        subscribers.add(queue)
        try:
            yield queue
        finally:
            subscribers.discard(queue)
            if session_id is not None and not subscribers:
                self._by_session.pop(session_id, None)
