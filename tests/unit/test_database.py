"""``Database.run``: a unit of work commits when it returns, leaves nothing when it raises,
and what it returns stays readable (on SQLite in a thread of its own, on PostgreSQL through
an async session)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from portside.db.engine import Database
from portside.db.migrate import upgrade
from portside.db.models import Domain

from ..harness import database_url, fresh_postgres_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = database_url()
    if url:
        # (It runs an event loop of its own, so not in this one.)
        url = await asyncio.to_thread(fresh_postgres_database, url, "portside_test_units")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/u.db"
    database = Database(url)
    await upgrade(database.engine)
    yield database
    await database.dispose()


def _adding(name: str) -> Callable[[Session], Domain]:
    def unit(session: Session) -> Domain:
        row = Domain(name=name)
        session.add(row)
        session.flush()
        return row

    return unit


async def _domain_named(db: Database, name: str) -> str | None:
    async with db() as session:
        return await session.scalar(sa.select(Domain.name).where(Domain.name == name))


async def test_a_unit_commits_and_its_rows_stay_readable(db: Database) -> None:
    name = f"d-{uuid.uuid4().hex[:8]}"
    row = await db.run(_adding(name))
    assert (row.name, row.is_active) == (name, True)
    assert await _domain_named(db, name) == name


async def test_a_unit_that_raises_leaves_nothing(db: Database) -> None:
    name = f"d-{uuid.uuid4().hex[:8]}"

    def unit(session: Session) -> None:
        _adding(name)(session)
        raise LookupError("changed my mind")

    with pytest.raises(LookupError):
        await db.run(unit)
    assert await _domain_named(db, name) is None
