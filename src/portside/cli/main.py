"""The ``portside`` command: the server, its database and its administration."""

from __future__ import annotations

import click

from portside import __version__

from .admin import admin
from .db import db
from .serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="portside")
def cli() -> None:
    """Portside: compute sessions that speak the Backend.AI API."""


cli.add_command(serve)
cli.add_command(db)
cli.add_command(admin)


def main() -> None:
    cli()
