"""``portside db``: the database schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from portside.services.platform import Platform

from .options import build_config, config_options


@click.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@config_options
def upgrade(config_file: Path | None, data_dir: Path | None) -> None:
    """Apply every pending migration (``serve`` does this too)."""
    config = build_config(config_file, data_dir)

    async def run() -> None:
        async with Platform(config).database():
            pass

    asyncio.run(run())
    click.echo(f"The database at {config.effective_database_url} is up to date.")
