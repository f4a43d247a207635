"""Signing keys of recent callers, so that checking a request's signature needs no query.

Every signed request needs its caller's secret key and identity; asking the database for them
on each call cost about a millisecond, a fifth of an ``execute``, and several once the server
had been idle for a moment.  Keys are trusted for ``KEY_CACHE_SECONDS`` after they were read
and read again in the background while their owners keep calling (``RefreshedCache``): a
change made through this server (revoking, deleting, changing a keypair) applies at once, one
made elsewhere (another API server, ``portside admin`` in another process) within that time.
Unknown keys are never kept, so a new keypair works at once everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from portside.db.repositories.identity import ActiveKey, get_active_key, get_active_keys

from .cache import RefreshedCache

KEY_CACHE_SECONDS = 1.0


class KeyCache:
    def __init__(
        self,
        db: Callable[[], Any],
        ttl: float = KEY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.cache: RefreshedCache[str, ActiveKey] = RefreshedCache(
            self._reload, ttl=ttl, clock=clock
        )

    async def get(self, access_key: str) -> ActiveKey | None:
        """The active key and its owner, or None when the key is unknown or inactive."""
        key = self.cache.get(access_key)
        if key is not None:
            return key
        async with self.db() as db:
            key = await get_active_key(db, access_key)
        if key is None:
            self.cache.forget(access_key)
        else:
            self.cache.put(access_key, key)
        return key

    def forget(self) -> None:
        """Drops every kept key; called after any change to keypairs or users."""
        self.cache.forget()

    async def _reload(self, keys: dict[str, ActiveKey]) -> dict[str, ActiveKey]:
        async with self.db() as db:
            return await get_active_keys(db, list(keys))
