"""The client commands: ``portside run``, ``ps``, ``session``, ``app``, ``open``, ``vfolder``,
``service``.  They talk to any Backend.AI-compatible endpoint through Portside's SDK,
configured by the same ``BACKEND_*`` variables as the ``backend.ai`` command line."""

from __future__ import annotations

import click

from .app import app, open_app
from .run import run
from .service import service
from .session import ps, session
from .vfolder import vfolder

COMMANDS: tuple[click.Command, ...] = (run, ps, session, app, open_app, vfolder, service)

__all__ = ("COMMANDS",)
