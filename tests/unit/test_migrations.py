"""The schema comes only from migrations: after ``upgrade`` it matches the models exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portside.db.engine import make_engine
from portside.db.migrate import upgrade
from portside.db.models import Base

from ..harness import database_url, fresh_postgres_database


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def test_upgrade_builds_the_models_schema(tmp_path: Path) -> None:
    url = database_url()
    if url:
        url = fresh_postgres_database(url, "portside_test_migrations")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    asyncio.run(_check(url))


async def _check(url: str) -> None:
    engine = make_engine(url)
    try:
        await upgrade(engine)
        await upgrade(engine)  # a second run is a no-op
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert {"domains", "groups", "users", "keypairs", "keypair_resource_policies"} <= set(
            tables
        )
    finally:
        await engine.dispose()
