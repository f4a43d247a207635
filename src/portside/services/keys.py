"""Signing keys of recent callers, so that checking a request's signature needs no query.

Every signed request needs its caller's secret key and identity; asking the database for them
on each call cost about a millisecond, a fifth of an ``execute``.  Keys are kept for
``KEY_CACHE_SECONDS``: a change made through this server (revoking, deleting, changing a
keypair) applies at once, one made elsewhere (another API server, ``portside admin`` in
another process) within that time.  Unknown keys are never kept, so a new keypair works at
once everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from portside.db.repositories.identity import ActiveKey, get_active_key

KEY_CACHE_SECONDS = 1.0


class KeyCache:
    def __init__(
        self,
        db: Callable[[], Any],
        ttl: float = KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        self._keys: dict[str, tuple[float, ActiveKey]] = {}

    async def get(self, access_key: str) -> ActiveKey | None:
        """The active key and its owner, or None when the key is unknown or inactive."""
        now = self.clock()
        cached = self._keys.get(access_key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self.db() as db:
            key = await get_active_key(db, access_key)
        if key is None:
            self._keys.pop(access_key, None)
        else:
            self._keys[access_key] = (now + self.ttl, key)
        return key

    def forget(self) -> None:
        """Drops every kept key; called after any change to keypairs or users."""
        self._keys.clear()
