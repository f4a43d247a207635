"""Version probe, authentication echo and manager status (wire-protocol.md sections 3 and 4.1)."""

from __future__ import annotations

import os

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from .auth import SERVER_API_VERSION, public, require_principal
from .context import PLATFORM
from .params import parse

routes = web.RouteTableDef()


@routes.get("/")
@public
async def hello(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM]
    return web.json_response({"version": SERVER_API_VERSION, "manager": platform.version})


class EchoParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    echo: str


@routes.get("/auth")
@routes.post("/auth")
async def auth_echo(request: web.Request) -> web.Response:
    require_principal(request)
    params = await parse(request, EchoParams)
    return web.json_response({"authorized": "yes", "echo": params.echo})


@routes.get("/manager/status")
async def manager_status(request: web.Request) -> web.Response:
    require_principal(request)
    platform = request.app[PLATFORM]
    active = await platform.count_active_sessions()
    node = {
        "id": platform.node_id,
        "num_proc": 1,
        "service_addr": f"{platform.config.api.host}:{platform.config.api.port}",
        "heartbeat_timeout": 5.0,
        "ssl_enabled": False,
        "active_sessions": active,
        "status": "running",
        "version": platform.version,
        "api_version": SERVER_API_VERSION,
        "pid": os.getpid(),
    }
    return web.json_response({"nodes": [node], "status": "running", "active_sessions": active})


@routes.get("/manager/announcement")
async def announcement(request: web.Request) -> web.Response:
    require_principal(request)
    return web.json_response({"enabled": False, "message": ""})
