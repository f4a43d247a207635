"""Starting a session with its progress shown: the status events it goes through, live.

``POST /session`` waits until the session runs.  Meanwhile the owner's session events
(``GET /events/session`` with no session named) are followed and each status the new
session reaches is shown; a server that cannot stream them just shows no steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from typing import Any

import click

from ai.backend.client.func.session import ComputeSession
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession

from .output import Notices
from .progress import StatusLine

#: Backend.AI's event names, for servers whose events carry no ``status``.
_EVENT_STATUS = {
    "session_enqueued": "PENDING",
    "session_scheduled": "SCHEDULED",
    "session_preparing": "PREPARING",
    "session_started": "RUNNING",
    "session_terminating": "TERMINATING",
    "session_terminated": "TERMINATED",
    "session_cancelled": "CANCELLED",
    "session_failure": "ERROR",
}


def new_session_name() -> str:
    return f"portside-{secrets.token_hex(4)}"


async def _follow(api: AsyncSession, name: str, show: Callable[[str], None]) -> None:
    request = Request("GET", "/events/session", params={"scope": "*"}, session=api)
    with contextlib.suppress(Exception):
        async with request.connect_events() as events:
            async for message in events:
                try:
                    data = json.loads(message.data)
                except ValueError:
                    continue
                if not isinstance(data, dict) or data.get("sessionName") != name:
                    continue
                status = data.get("status") or _EVENT_STATUS.get(message.event, message.event)
                show(f"Session {name}: {status}")


async def start_session(
    api: AsyncSession, image: str, *, name: str | None, quiet: bool, **options: Any
) -> ComputeSession:
    """Creates (or reuses) the session ``name``, showing its start-up; errors if it does not
    end up running (or, with ``enqueue_only``, queued)."""
    name = name or new_session_name()
    notices = Notices(quiet=quiet)
    with StatusLine(f"Starting session {name} ({image})", quiet=quiet) as status:
        follower = asyncio.create_task(_follow(api, name, status.update))
        try:
            compute: ComputeSession = await api.ComputeSession.get_or_create(
                image, name=name, **options
            )
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    if compute.status == "PENDING" and options.get("enqueue_only"):
        notices.done(f"Session {compute.name} is queued ({compute.id}).")
    elif compute.status == "TIMEOUT":
        raise click.ClickException(
            f"session {compute.name} did not start in time; it is still queued "
            f"(see: portside session info {compute.name})"
        )
    elif compute.status not in ("RUNNING", None):
        raise click.ClickException(f"session {compute.name} is {compute.status}, not running")
    elif compute.created:
        notices.done(f"Session {compute.name} is ready ({compute.id}).")
    else:
        notices.done(f"Reusing session {compute.name} ({compute.id}).")
    return compute
