"""The schema comes only from migrations: after ``upgrade`` it matches the models exactly."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from portside.db.engine import make_engine
from portside.db.migrate import upgrade
from portside.db.models import Base

from ..harness import database_url, reset_postgres


def _diff(connection: sa.Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_builds_the_models_schema(tmp_path: Path) -> None:
    url = database_url()
    if url:
        reset_postgres(url)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
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
