"""``GET /events/session``: session lifecycle as server-sent events (wire-protocol.md s.4.4).

The official client reconnects forever unless the stream ends with ``event: server_close``; a
stream about one session therefore closes that way once the session has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from portside.db.models import TERMINAL_STATUSES
from portside.errors import InsufficientPrivilege
from portside.services.events import SessionEvent

from .auth import require_principal
from .context import PLATFORM

routes = web.RouteTableDef()
KEEPALIVE_SECONDS = 15.0


@routes.get("/events/session")
async def session_events(request: web.Request) -> web.StreamResponse:
    principal = require_principal(request)
    platform = request.app[PLATFORM]
    query = request.query
    owner = query.get("owner_access_key") or principal.access_key
    if owner != principal.access_key and not principal.is_admin:
        raise InsufficientPrivilege("only administrators may watch others' sessions")
    session_id: str | None = None
    reference = query.get("sessionId") or query.get("sessionName") or query.get("name")
    scope = query.get("scope", "*")
    async with platform.events.subscribe() as queue:
        if reference and reference != "*":
            async with platform.db() as db:
                row = await platform.sessions.resolve(db, principal, reference, owner)
            session_id = str(row.id)
            already_over = row.status in TERMINAL_STATUSES
        else:
            already_over = False
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # A client that goes away mid-stream is no error: there is nobody left to tell.
        with contextlib.suppress(ConnectionResetError):
            await _stream(response, queue, session_id, owner, scope, already_over)
    return response


async def _stream(
    response: web.StreamResponse,
    queue: asyncio.Queue[SessionEvent],
    session_id: str | None,
    owner: str,
    scope: str,
    already_over: bool,
) -> None:
    await response.write(b"retry: 5000\n\n")
    while not already_over:
        try:
            event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
        except TimeoutError:
            await response.write(b": keep-alive\n\n")
            continue
        if session_id is not None and event.session_id != session_id:
            continue
        if session_id is None and event.access_key != owner:
            continue
        if scope not in ("*", "session") and not event.name.startswith(scope):
            continue
        data = json.dumps(event.to_wire())
        await response.write(f"event: {event.name}\ndata: {data}\n\n".encode())
        if session_id is not None and event.status in TERMINAL_STATUSES:
            break
    await response.write(b"event: server_close\ndata: {}\n\n")
    await response.write_eof()
