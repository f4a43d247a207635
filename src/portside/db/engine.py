"""The database engine and its connections: SQLite on a laptop, PostgreSQL in a cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

T = TypeVar("T")

#: SQLite connections kept open.  Beyond the pool, SQLAlchemy opens an overflow connection
#: for each transaction and closes it after; with aiosqlite that is a new thread, a new
#: connection and four PRAGMAs per transaction whenever more than the default five are in
#: flight, which a burst of session starts (each with its status transitions) always is.
POOL_SIZE = 20


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes a second writer wait
    # instead of failing with "database is locked".
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, connect_args={"timeout": 10}, pool_size=POOL_SIZE, max_overflow=POOL_SIZE
        )
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


class Database:
    """The server's database: asynchronous sessions (``db()``) for most work, and ``run`` for
    the short transactions every session start and end repeats.

    Through aiosqlite every statement, begin and commit is a round trip to the connection's
    thread and back to the event loop, and SQLAlchemy's async layer adds a greenlet switch to
    each: a status transition (read the row, write it) cost about 4.5 ms of CPU where the same
    work done synchronously in one thread costs 1.5 (``docs/decisions.md``).  So on SQLite
    ``run`` hands the whole unit of work to one thread that holds a synchronous connection:
    one hop there and back per transaction, and SQLite takes one writer at a time anyway.  On
    PostgreSQL, whose driver is asynchronous itself, the same unit runs in an async session's
    ``run_sync``.
    """

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_sessionmaker(self.engine)
        self._sync_engine: sa.Engine | None = None
        self._sync: sessionmaker[Session] | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.engine.dialect.name == "sqlite":
            self._sync_engine = sync_engine = sa.create_engine(
                self.engine.url.set(drivername="sqlite"),
                connect_args={"timeout": 10},
                pool_size=1,
                max_overflow=0,
            )
            sa.event.listen(sync_engine, "connect", _sqlite_pragmas)
            self._sync = sessionmaker(sync_engine, expire_on_commit=False)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")

    def __call__(self) -> AsyncSession:
        return self.sessions()

    async def run(self, unit: Callable[[Session], T]) -> T:
        """Runs ``unit`` in one transaction, committed when it returns and rolled back when
        it raises; what it returns (ORM rows included) stays readable afterwards."""
        if self._sync is None:
            async with self.sessions() as db, db.begin():
                return await db.run_sync(unit)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._unit, unit)

    def _unit(self, unit: Callable[[Session], T]) -> T:
        assert self._sync is not None
        with self._sync() as db, db.begin():
            return unit(db)

    async def dispose(self) -> None:
        if self._thread is not None:
            self._thread.shutdown()
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()
