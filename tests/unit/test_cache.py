"""What a cached lookup promises: fresh values while in use, never one older than its ttl, and
nothing resurrected that was forgotten while the database was being read."""

from __future__ import annotations

import asyncio
import contextlib

from portside.services.cache import RefreshedCache


class Database:
    """The values a reload reads, and the reloads made."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.reloads: list[set[str]] = []
        self.hold: asyncio.Event | None = None

    async def reload(self, cached: dict[str, int]) -> dict[str, int]:
        self.reloads.append(set(cached))
        read = {key: self.values[key] for key in cached if key in self.values}
        if self.hold is not None:
            await self.hold.wait()
        return read


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(db: Database, clock: Clock) -> RefreshedCache[str, int]:
    return RefreshedCache(db.reload, ttl=1.0, keep_warm=60.0, clock=clock)


async def test_an_entry_expires_after_its_ttl_unless_refreshed() -> None:
    db, clock = Database({"a": 1}), Clock()
    cache = _cache(db, clock)
    cache.put("a", 1)
    clock.now += 0.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None


async def test_a_refresh_keeps_entries_in_use_fresh_with_what_the_database_holds_now() -> None:
    db, clock = Database({"a": 1, "b": 2}), Clock()
    cache = _cache(db, clock)
    cache.put("a", 1)
    cache.put("b", 2)
    db.values = {"a": 10}  # b was revoked elsewhere
    for _ in range(10):  # a caller pausing 5 s, while the refresher runs every 0.5 s
        clock.now += 0.5
        await cache.refresh()
    assert cache.get("a") == 10
    assert cache.get("b") is None
    assert db.reloads[0] == {"a", "b"}
    assert db.reloads[1:] == [{"a"}] * 9


async def test_entries_unused_for_keep_warm_are_dropped_and_no_longer_read() -> None:
    db, clock = Database({"a": 1, "b": 2}), Clock()
    cache = _cache(db, clock)
    cache.put("a", 1)
    cache.put("b", 2)
    for _ in range(130):
        clock.now += 0.5
        assert cache.get("a") == 1
        await cache.refresh()
    assert db.reloads[-1] == {"a"}
    reloads = len(db.reloads)
    clock.now += 61.0
    await cache.refresh()
    assert len(db.reloads) == reloads
    assert cache.get("a") is None


async def test_what_was_forgotten_during_a_reload_stays_forgotten() -> None:
    db, clock = Database({"a": 1}), Clock()
    cache = _cache(db, clock)
    cache.put("a", 1)
    db.hold = asyncio.Event()
    refresh = asyncio.create_task(cache.refresh())
    await asyncio.sleep(0)
    assert db.reloads == [{"a"}]
    cache.forget("a")  # changed through this server while the reload read the old row
    db.hold.set()
    await refresh
    assert cache.get("a") is None


async def test_a_value_put_during_a_reload_is_not_replaced_by_the_older_read() -> None:
    db, clock = Database({"a": 1}), Clock()
    cache = _cache(db, clock)
    cache.put("a", 1)
    db.values = {}  # deleted, so the reload leaves it out...
    db.hold = asyncio.Event()
    refresh = asyncio.create_task(cache.refresh())
    await asyncio.sleep(0)
    cache.put("a", 2)  # ...then made again, and read by a call while the reload ran
    db.hold.set()
    await refresh
    assert cache.get("a") == 2


async def test_the_refresher_waits_while_nothing_is_cached_and_reads_once_something_is() -> None:
    db = Database({"a": 1})
    cache: RefreshedCache[str, int] = RefreshedCache(db.reload, ttl=0.02)
    runner = asyncio.create_task(cache.run())
    try:
        await asyncio.sleep(0.1)
        assert db.reloads == []
        cache.put("a", 1)
        await asyncio.sleep(0.1)
        assert db.reloads
        assert all(r == {"a"} for r in db.reloads)
        assert cache.get("a") == 1
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
