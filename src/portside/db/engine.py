"""The database engine and its connections: SQLite on a laptop, PostgreSQL in a cluster."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

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
