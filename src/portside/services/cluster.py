"""What several API servers on one PostgreSQL database share besides the tables.

* ``PostgresBroadcast`` carries session events between servers with LISTEN/NOTIFY, so a client
  watching events on one server hears about sessions another server changed.
* ``Leadership`` elects the one server that runs singleton work (the model-service
  reconciler) with a session-level advisory lock: when the leader's connection goes, so does
  its lock, and another server takes over on its next try.

With SQLite there is one server: it broadcasts to nobody and always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from sqlalchemy.engine import make_url

from .events import EventHub, SessionEvent

log = logging.getLogger("portside.cluster")

CHANNEL = "portside_events"
#: ``pg_advisory_lock`` keys; any stable 64-bit numbers unique to their purpose.
MODEL_SERVICES_LOCK = 0x506F727473696465


def asyncpg_dsn(sqlalchemy_url: str) -> str | None:
    """The asyncpg DSN for a PostgreSQL SQLAlchemy URL, or None for other databases."""
    url = make_url(sqlalchemy_url)
    if not url.drivername.startswith("postgresql"):
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBroadcast:
    def __init__(self, dsn: str, hub: EventHub) -> None:
        self.dsn = dsn
        self.hub = hub
        self.origin = uuid.uuid4().hex
        self._conn: Any = None
        #: One asyncpg connection runs one statement at a time; events are published from
        #: many tasks at once.
        self._send_lock = asyncio.Lock()

    async def start(self) -> None:
        import asyncpg

        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener(CHANNEL, self._received)
        self.hub.set_forwarder(self.forward)

    def _received(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        message = json.loads(payload)
        if message["origin"] == self.origin:
            return
        self.hub.deliver(SessionEvent(**message["event"]))

    async def forward(self, event: SessionEvent) -> None:
        payload = json.dumps({"origin": self.origin, "event": event.to_dict()})
        async with self._send_lock:
            await self._conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    async def close(self) -> None:
        self.hub.set_forwarder(None)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()


class Leadership:
    """``try_acquire`` is True while this server holds the lock (always, without PostgreSQL)."""

    def __init__(self, dsn: str | None, key: int) -> None:
        self.dsn = dsn
        self.key = key
        self._conn: Any = None
        self.leading = dsn is None

    async def try_acquire(self) -> bool:
        if self.dsn is None:
            return True
        import asyncpg

        if self._conn is not None and self._conn.is_closed():
            self._conn, self.leading = None, False
        if self.leading:
            return True
        if self._conn is None:
            self._conn = await asyncpg.connect(self.dsn)
        self.leading = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key))
        if self.leading:
            log.info("this server now leads", extra={"lock": self.key})
        return self.leading

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
        self._conn, self.leading = None, self.dsn is None
