"""Relaying HTTP requests and WebSockets to an app, streaming both ways.

Hop-by-hop headers stay on their hop; bodies are streamed without buffering or decompression;
redirects are passed back to the browser, not followed.
"""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def forward_headers(
    request: web.Request, *, drop_cookie: str | None = None, drop_authorization: bool = False
) -> CIMultiDict[str]:
    """The request's headers as the app should see them, without the proxy's own credentials."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in HOP_BY_HOP or lower.startswith("sec-websocket-"):
            continue
        if lower == "authorization" and drop_authorization:
            continue
        if lower == "cookie" and drop_cookie and drop_cookie in value:
            # Split by hand, not with SimpleCookie: the app's own cookies pass exactly as the
            # browser sent them, and parsing each request's cookies was a cost of its own.
            kept = "; ".join(
                part
                for part in (p.strip() for p in value.split(";"))
                if part and part.partition("=")[0].strip() != drop_cookie
            )
            if not kept:
                continue
            value = kept
        headers.add(name, value)
    headers["X-Forwarded-For"] = request.remote or ""
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


#: Request bodies up to this size, with a Content-Length, are read whole before forwarding.
SMALL_BODY = 64 * 1024
#: Methods whose request may be sent again (RFC 9110, 9.2.2): one the app went away from
#: before answering can go to another replica.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class UpstreamLost(Exception):
    """The app went away before any of its answer reached the client."""

    def __init__(self, message: str, *, resendable: bool) -> None:
        super().__init__(message)
        #: Whether the request can be sent again: an idempotent method, and a body that was
        #: read whole rather than streamed into the lost connection.
        self.resendable = resendable


class _CoalescedResponse(web.StreamResponse):
    """Sends its head with the first piece of the body (or at the end), not on its own: one
    write, one packet, one wake-up of the browser for a small response instead of two.

    Only for a response of known length, whose body follows its head at once; a streamed
    one (server-sent events, a long poll) gets its head as soon as the app sends it.  Older
    aiohttp releases lack the switch and send the head on its own, which is merely slower.
    """

    _send_headers_immediately = False


async def relay_http(
    request: web.Request, client: aiohttp.ClientSession, base_url: str, headers: CIMultiDict[str]
) -> web.StreamResponse:
    data: bytes | aiohttp.StreamReader | None = None
    if request.body_exists:
        length = request.content_length
        # A small body of known length (an API call's JSON) is read first and sent with the
        # request's head in one write; anything else streams through as it arrives.
        if length is not None and length <= SMALL_BODY:
            data = await request.read()
        else:
            data = request.content
    started = False
    try:
        async with client.request(
            request.method,
            base_url + request.rel_url.raw_path_qs,
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as upstream:
            coalesce = "Content-Length" in upstream.headers
            # A body of known length begins with the head anyway (_CoalescedResponse), and an
            # app that dies before sending any of it has still sent the client nothing.
            first = await upstream.content.readany() if coalesce else b""
            kind = _CoalescedResponse if coalesce else web.StreamResponse
            response = kind(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP:
                    response.headers.add(name, value)
            started = True
            await response.prepare(request)
            if first:
                await response.write(first)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
        if started:
            raise
        resendable = request.method in IDEMPOTENT_METHODS and not isinstance(
            data, aiohttp.StreamReader
        )
        raise UpstreamLost(str(e) or type(e).__name__, resendable=resendable) from e


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            break
    await sink.close()


async def relay_websocket(
    request: web.Request, client: aiohttp.ClientSession, base_url: str, headers: CIMultiDict[str]
) -> web.WebSocketResponse:
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    upstream = await client.ws_connect(
        base_url + request.rel_url.raw_path_qs,
        headers=headers,
        protocols=protocols,
        autoping=False,
        max_msg_size=0,
    )
    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else (),
        autoping=False,
        max_msg_size=0,
    )
    await downstream.prepare(request)
    tasks = [
        asyncio.create_task(_pump(downstream, upstream)),
        asyncio.create_task(_pump(upstream, downstream)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await upstream.close()
        await downstream.close()
    return downstream


def is_websocket(request: web.Request) -> bool:
    return (
        "upgrade" in request.headers.get("Connection", "").lower()
        and request.headers.get("Upgrade", "").lower() == "websocket"
    )
