"""The API server as an aiohttp application: middlewares and routes."""

from __future__ import annotations

from aiohttp import web

from portside.services.platform import Platform

from . import apps, events, gql, service, session, stream, system, vfolder
from .auth import auth_middleware
from .context import PLATFORM
from .errors import error_middleware
from .forward import forwarder_ctx


def build_app(platform: Platform) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=platform.config.max_upload_total_size,
    )
    app[PLATFORM] = platform
    app.cleanup_ctx.append(forwarder_ctx)
    app.add_routes(system.routes)
    app.add_routes(gql.routes)
    app.add_routes(session.routes)
    app.add_routes(stream.routes)
    app.add_routes(events.routes)
    app.add_routes(vfolder.routes)
    app.add_routes(apps.routes)
    app.add_routes(service.routes)
    return app
