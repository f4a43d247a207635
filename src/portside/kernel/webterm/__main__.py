"""Serves the web terminal inside a session's sandbox; the app proxy is its only way in.

The page and its scripts ship in ``static/``; ``/ws`` carries one shell on a pseudo-terminal
per connection: JSON ``{"type": "input", "data": ...}`` and ``{"type": "resize", ...}`` up, raw
output bytes down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path

from aiohttp import WSMsgType, web

from portside.kernel.pty import PtySession

STATIC = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def terminal(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    pty = PtySession(os.getcwd(), 24, 80)

    async def relay_output() -> None:
        async def send(data: bytes) -> None:
            await ws.send_bytes(data)

        await pty.pump(send)
        await ws.close()

    relay = asyncio.create_task(relay_output())
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            command = json.loads(message.data)
            if command.get("type") == "input":
                pty.write(command.get("data", "").encode())
            elif command.get("type") == "resize":
                pty.resize(int(command["rows"]), int(command["cols"]))
    finally:
        pty.close()
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await relay
    return ws


def build_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/ws", terminal)
    app.router.add_static("/static", STATIC)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
