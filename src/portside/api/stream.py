"""WebSocket streams: live execution and interactive terminals (runtime-semantics.md s.5)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from portside.errors import PortsideError
from portside.services.execution import STREAM_FLUSH_TIMEOUT, ExecutionService, Target

from .auth import require_principal
from .context import PLATFORM

log = logging.getLogger("portside.api.stream")
routes = web.RouteTableDef()


async def _stream_target(request: web.Request) -> Target:
    principal = require_principal(request)
    return await request.app[PLATFORM].execution.target(
        principal, request.match_info["ref"], request.query.get("owner_access_key")
    )


async def _next_text(ws: web.WebSocketResponse) -> str | None:
    async for msg in ws:
        if msg.type == WSMsgType.TEXT:
            return str(msg.data)
        if msg.type == WSMsgType.ERROR:
            return None
    return None


async def _run_stream(
    ws: web.WebSocketResponse, execution: ExecutionService, target: Target
) -> None:
    first = await _next_text(ws)
    if first is None:
        return
    try:
        request = json.loads(first)
        mode = request.get("mode", "query")
        code = request.get("code") or ""
        opts = request.get("options") or {}
    except (json.JSONDecodeError, AttributeError):
        await ws.send_json({"status": "error", "msg": "Invalid API parameters: send a JSON object"})
        return
    if mode not in ("query", "batch"):
        await ws.send_json({"status": "error", "msg": f"Invalid API parameters: mode {mode!r}"})
        return
    run_id = secrets.token_hex(8)
    while True:
        result = await execution.execute(
            target,
            run_id=run_id,
            mode=mode,
            code=code,
            opts=opts,
            flush_timeout=STREAM_FLUSH_TIMEOUT,
        )
        body = result.to_api()
        body.pop("runId")
        await ws.send_json(body)
        if result.status in ("finished", "exec-timeout"):
            return
        if result.status == "waiting-input":
            text = await _next_text(ws)
            if text is None:
                return
            mode, code = "input", text
        else:
            mode, code, opts = "continue", "", {}


@routes.get("/stream/session/{ref}/execute")
@routes.get("/stream/kernel/{ref}/execute")
async def stream_execute(request: web.Request) -> web.WebSocketResponse:
    target = await _stream_target(request)
    execution = request.app[PLATFORM].execution
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async with execution.stream(target):
        try:
            await _run_stream(ws, execution, target)
        except PortsideError as e:
            await ws.send_json({"status": "error", "msg": f"{e.title} {e.msg or ''}".strip()})
        finally:
            if not ws.closed:
                await ws.close()
            elif ws.close_code not in (None, 1000):
                # The client went away mid-run: stop what it started.
                with contextlib.suppress(PortsideError):
                    await execution.interrupt(target)
    return ws


@routes.get("/stream/session/{ref}/pty")
@routes.get("/stream/kernel/{ref}/pty")
async def stream_pty(request: web.Request) -> web.WebSocketResponse:
    target = await _stream_target(request)
    execution = request.app[PLATFORM].execution
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    async with execution.stream(target):
        pty = await execution.open_pty(target, 24, 80)

        async def relay_output() -> None:
            async for data in pty.output():
                frame = {"type": "out", "data": base64.b64encode(data).decode()}
                await ws.send_bytes(json.dumps(frame).encode())
            await ws.close()

        relay = asyncio.create_task(relay_output())
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    command: dict[str, Any] = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                kind = command.get("type")
                if kind == "stdin":
                    await pty.write(base64.b64decode(command.get("chars", "")))
                elif kind == "resize":
                    await pty.resize(int(command["rows"]), int(command["cols"]))
        finally:
            await pty.close()
            relay.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay
    return ws
