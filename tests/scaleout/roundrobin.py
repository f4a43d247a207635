"""One address in front of several API servers, taking turns per request, as a load balancer.

It forwards each HTTP request (and each WebSocket) to the next server in turn, passing the
``Host`` header through unchanged: the client signs the host it was configured with, so the
servers must see that one.  A client's keep-alive connection does not pin it to one server;
consecutive calls of one example land on different servers.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager

import aiohttp
from aiohttp import web

#: Headers that describe one hop's connection, not the request (RFC 9110 section 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


WebSocket = aiohttp.ClientWebSocketResponse | web.WebSocketResponse


CLIENT = web.AppKey("client", aiohttp.ClientSession)


class RoundRobin:
    def __init__(self, backends: Sequence[str]) -> None:
        self._turns = itertools.cycle(backends)
        self.forwarded: dict[str, int] = dict.fromkeys(backends, 0)

    def _next(self) -> str:
        backend = next(self._turns)
        self.forwarded[backend] += 1
        return backend

    async def handle(self, request: web.Request) -> web.StreamResponse:
        backend = self._next()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        url = backend + request.rel_url.raw_path_qs
        session: aiohttp.ClientSession = request.app[CLIENT]
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, session, url, headers)
        async with session.request(
            request.method,
            url,
            headers=headers,
            data=request.content.iter_any() if request.body_exists else None,
            allow_redirects=False,
            auto_decompress=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(
        self,
        request: web.Request,
        session: aiohttp.ClientSession,
        url: str,
        headers: dict[str, str],
    ) -> web.StreamResponse:
        headers = {k: v for k, v in headers.items() if not k.lower().startswith("sec-websocket")}
        async with session.ws_connect(url, headers=headers, autoping=False) as upstream:
            downstream = web.WebSocketResponse(autoping=False)
            await downstream.prepare(request)

            async def pump(source: WebSocket, sink: WebSocket) -> None:
                async for message in source:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        await sink.send_str(message.data)
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        await sink.send_bytes(message.data)
                    elif message.type == aiohttp.WSMsgType.PING:
                        await sink.ping(message.data)
                    elif message.type == aiohttp.WSMsgType.PONG:
                        await sink.pong(message.data)
                await sink.close()

            await asyncio.gather(pump(upstream, downstream), pump(downstream, upstream))
            return downstream


@contextmanager
def round_robin(backends: Sequence[str]) -> Iterator[tuple[str, RoundRobin]]:
    """Runs the balancer in a thread; yields its URL and the balancer (for its counts)."""
    balancer = RoundRobin([b.rstrip("/") for b in backends])
    loop = asyncio.new_event_loop()
    started = threading.Event()
    address: list[str] = []

    async def client_ctx(app: web.Application) -> AsyncIterator[None]:
        app[CLIENT] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app[CLIENT].close()

    async def serve() -> web.AppRunner:
        app = web.Application(client_max_size=1 << 30)
        app.cleanup_ctx.append(client_ctx)
        app.router.add_route("*", "/{tail:.*}", balancer.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        address.append(f"http://127.0.0.1:{port}")
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="round-robin", daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield address[0], balancer
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
