"""Relaying HTTP requests and WebSockets to an app, streaming both ways.

Hop-by-hop headers stay on their hop; bodies are streamed without buffering or decompression;
redirects are passed back to the browser, not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
from http.cookies import SimpleCookie

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
        if lower == "cookie" and drop_cookie:
            jar: SimpleCookie = SimpleCookie()
            jar.load(value)
            kept = "; ".join(f"{k}={m.value}" for k, m in jar.items() if k != drop_cookie)
            if not kept:
                continue
            value = kept
        headers.add(name, value)
    headers["X-Forwarded-For"] = request.remote or ""
    headers["X-Forwarded-Proto"] = request.scheme
    headers["X-Forwarded-Host"] = request.host
    return headers


async def relay_http(
    request: web.Request, client: aiohttp.ClientSession, base_url: str, headers: CIMultiDict[str]
) -> web.StreamResponse:
    data = request.content if request.body_exists else None
    async with client.request(
        request.method,
        base_url + request.rel_url.raw_path_qs,
        headers=headers,
        data=data,
        allow_redirects=False,
    ) as upstream:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            if name.lower() not in HOP_BY_HOP:
                response.headers.add(name, value)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


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
