"""Apps in sessions: start-service, the app list, and the TCP tunnel of ``backend.ai app``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from portside.appproxy.connect import ConnectError, open_socket
from portside.errors import InvalidAPIParameters

from .auth import require_principal
from .context import PLATFORM
from .params import read_params, validate

routes = web.RouteTableDef()


class StartServiceBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    app: str = Field(validation_alias=AliasChoices("app", "service"))
    port: int | None = Field(default=None, ge=1024, le=65535)
    envs: str | dict[str, Any] | None = None
    arguments: str | dict[str, Any] | None = None
    login_session_token: str | None = None


@routes.post("/session/{ref}/start-service")
async def start_service(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(StartServiceBody, await read_params(request))
    reply = await request.app[PLATFORM].apps.start_service(
        principal,
        request.match_info["ref"],
        body.app,
        port=body.port,
        envs=body.envs,
        arguments=body.arguments,
        owner_access_key=request.query.get("owner_access_key"),
    )
    return web.json_response(reply)


@routes.post("/session/{ref}/shutdown-service")
async def shutdown_service(request: web.Request) -> web.Response:
    principal = require_principal(request)
    params = await read_params(request)
    name = params.get("service_name") or request.query.get("service_name")
    if not name:
        raise InvalidAPIParameters("service_name: name the app to stop")
    await request.app[PLATFORM].apps.shutdown_service(
        principal, request.match_info["ref"], str(name), request.query.get("owner_access_key")
    )
    return web.Response(status=204)


@routes.get("/stream/session/{ref}/apps")
async def list_apps(request: web.Request) -> web.Response:
    principal = require_principal(request)
    apps = await request.app[PLATFORM].apps.list_apps(
        principal, request.match_info["ref"], request.query.get("owner_access_key")
    )
    return web.json_response(apps)


async def _pump_to_socket(ws: web.WebSocketResponse, writer: asyncio.StreamWriter) -> None:
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            writer.write(message.data)
            await writer.drain()
        elif message.type == WSMsgType.TEXT:
            writer.write(message.data.encode())
            await writer.drain()
        elif message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
    if writer.can_write_eof():
        writer.write_eof()


async def _pump_to_ws(reader: asyncio.StreamReader, ws: web.WebSocketResponse) -> None:
    while chunk := await reader.read(65536):
        await ws.send_bytes(chunk)
    await ws.close()


@routes.get("/stream/session/{ref}/tcpproxy")
@routes.get("/stream/session/{ref}/httpproxy")
async def tcp_proxy(request: web.Request) -> web.WebSocketResponse:
    """One TCP connection to an app, carried in binary WebSocket frames (section 4.2)."""
    principal = require_principal(request)
    platform = request.app[PLATFORM]
    app_name = request.query.get("app")
    if not app_name:
        raise InvalidAPIParameters("app: name the app to connect to")
    async with platform.db() as db:
        row = await platform.sessions.resolve(
            db, principal, request.match_info["ref"], request.query.get("owner_access_key")
        )
    running = await platform.apps.running_app(row.id, app_name)
    if running is None:
        raise InvalidAPIParameters(f"the session is not running or has no app {app_name!r}")
    await platform.apps.ensure_started(row, running.app)
    endpoint = platform.agent.app_endpoint(running.kernel_id, running.app.port)
    try:
        sock = await open_socket(endpoint)
    except ConnectError as e:
        raise InvalidAPIParameters(f"cannot reach {app_name}: {e}") from e
    reader, writer = await asyncio.open_connection(sock=sock)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    platform.sessions.mark_busy(row.id, +1)
    tasks = [
        asyncio.create_task(_pump_to_socket(ws, writer)),
        asyncio.create_task(_pump_to_ws(reader, ws)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        platform.sessions.mark_busy(row.id, -1)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, socket.error):
                await task
        writer.close()
        await ws.close()
    return ws
