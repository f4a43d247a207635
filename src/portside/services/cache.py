"""Lookups every call repeats, kept fresh in the background while they are in use.

A signed call needs its caller's key, and a call into a session needs that session's row.
Each was kept for a second after it was read, since a change made by another process (another
API server, ``portside admin``) must apply within that time; but a person runs a cell, reads
what it printed and only then runs the next, so almost every one of their calls came after
the entries had expired and waited for two queries: 5.5 ms of the 9.3 ms a ``print(1)`` took
after a pause of one second, against 1.4 ms back to back (``docs/decisions.md``).

Here an entry is still trusted for ``ttl`` seconds after it was read, but every entry used
within ``keep_warm`` seconds is read again, all of them in one query, every ``0.75 * ttl``
seconds: a caller who pauses finds theirs fresh, and a change made elsewhere still applies
within ``ttl``.  Entries nobody used for ``keep_warm`` are dropped, so an idle server queries
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("portside.cache")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: How long after its last use an entry is still kept fresh: longer than a person's pause
#: between two cells, short enough that a server nobody calls stops querying soon.
KEEP_WARM_SECONDS = 300.0


@dataclass(slots=True)
class _Entry(Generic[V]):
    value: V
    fresh_until: float
    used: float


class RefreshedCache(Generic[K, V]):
    """Values by key, each trusted for ``ttl`` seconds after it was read.

    ``reload`` takes the entries to renew and returns the fresh value of each that is still
    valid; a key it leaves out is dropped.
    """

    def __init__(
        self,
        reload: Callable[[dict[K, V]], Awaitable[dict[K, V]]],
        *,
        ttl: float,
        keep_warm: float = KEEP_WARM_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reload = reload
        self.ttl = ttl
        self.keep_warm = keep_warm
        self.clock = clock
        self._entries: dict[K, _Entry[V]] = {}
        self._filled = asyncio.Event()

    def get(self, key: K) -> V | None:
        """The value, if read within ``ttl``; None means: ask the database."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self.clock()
        if entry.fresh_until <= now:
            return None
        entry.used = now
        return entry.value

    def put(self, key: K, value: V) -> None:
        """A value just read from the database."""
        now = self.clock()
        self._entries[key] = _Entry(value, now + self.ttl, now)
        self._filled.set()

    def forget(self, key: K | None = None) -> None:
        """Drops one entry, or all of them: they may have changed."""
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    async def refresh(self) -> None:
        """Reads again every entry used within ``keep_warm`` and drops the others."""
        now = self.clock()
        for key in [k for k, e in self._entries.items() if now - e.used > self.keep_warm]:
            del self._entries[key]
        if not self._entries:
            return
        taken = dict(self._entries)
        fresh = await self.reload({key: entry.value for key, entry in taken.items()})
        for key, entry in taken.items():
            if self._entries.get(key) is not entry:
                # Forgotten meanwhile (what was read may predate the change), or put again
                # from a later read.
                continue
            if key in fresh:
                entry.value = fresh[key]
                entry.fresh_until = now + self.ttl
            else:
                del self._entries[key]

    async def run(self) -> None:
        """Keeps the entries fresh until cancelled; waits while there are none."""
        while True:
            if not self._entries:
                self._filled.clear()
                await self._filled.wait()
            # A quarter of ttl to spare for the reload itself and a busy event loop.
            await asyncio.sleep(self.ttl * 0.75)
            try:
                await self.refresh()
            except Exception:
                # The entries expire as they did before; calls then read the database.
                log.warning("could not refresh cached lookups", exc_info=True)
