"""Passing a call on to the API server that holds what it is about.

With several API servers behind one address, a run's continuation can reach a server other
than the one that started the run (see ``RunRow``).  That server passes the request on as it
came: same method, path, headers and body, so the holder checks the client's own signature
(it covers the host the client addressed, which the ``Host`` header keeps) and answers, and
the answer goes back unchanged.  A request is passed on once at most.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from portside.errors import InvalidSessionState

FORWARDED_HEADER = "X-Portside-Forwarded"
#: Per RFC 9110 section 7.6.1, these describe one connection and are not passed on.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)

FORWARDER = web.AppKey("forwarder", aiohttp.ClientSession)


async def forwarder_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session, for the application's lifetime, for calls to other servers."""
    app[FORWARDER] = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False
    )
    yield
    await app[FORWARDER].close()


async def forward(request: web.Request, server_url: str, what: str) -> web.Response:
    """Answers ``request`` with the answer of the server at ``server_url``."""
    if request.headers.get(FORWARDED_HEADER):
        raise InvalidSessionState(f"{what} is held by another API server, which passed it back")
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers[FORWARDED_HEADER] = "1"
    url = server_url.rstrip("/") + request.rel_url.raw_path_qs
    try:
        async with request.app[FORWARDER].request(
            request.method, url, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            answer = web.Response(status=upstream.status, body=body)
            for key in ("Content-Type", "Content-Encoding"):
                if key in upstream.headers:
                    answer.headers[key] = upstream.headers[key]
            return answer
    except aiohttp.ClientConnectionError as e:
        raise InvalidSessionState(
            f"{what} is held by the API server at {server_url}, which cannot be reached ({e}); "
            "its output is lost, but the session runs on: start a new run"
        ) from e
