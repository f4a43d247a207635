"""The app proxy's own listener (``wsproxy_addr``): turns start-service tokens into circuits.

``GET /v2/proxy/{token}/{session_id}/add?app=NAME`` answers ``{"code": 200, "url": ...}`` as
Backend.AI's AppProxy v2 does (runtime-semantics.md s.3.4); the URL opens the app in a browser.
It needs no signature: the token, bound to the session, the app and its owner, is the
credential.
"""

from __future__ import annotations

import time
import uuid

from aiohttp import web

from portside.api.errors import error_middleware
from portside.services import tokens
from portside.services.apps import APP_TOKEN, AppService
from portside.services.events import SessionEvent
from portside.services.sessions import SessionService

from .circuits import Circuit, CircuitManager, Route, problem

CORS = {"Access-Control-Allow-Origin": "*"}
#: How long a circuit trusts its last lookup of where an app is.  A session that ends on this
#: server drops the entry at once (``on_event``); one another server ends is seen within this
#: time.  Looking it up on every request (a database read and a thread hop) was most of what
#: the proxy cost per request.
ROUTE_CACHE_SECONDS = 1.0


class AppProxy:
    """Opens in-session apps through circuits and closes them when their session ends."""

    def __init__(
        self, apps: AppService, sessions: SessionService, circuits: CircuitManager
    ) -> None:
        self.apps = apps
        self.sessions = sessions
        self.circuits = circuits
        #: (session, app) to when the lookup expires and the route it found.
        self._routes: dict[tuple[uuid.UUID, str], tuple[float, Route]] = {}

    async def _activity(self, session_id: uuid.UUID, delta: int) -> None:
        if delta:
            self.sessions.mark_busy(session_id, delta)
        else:
            self.sessions.touch(session_id)

    async def _permit_gate(
        self, circuit: Circuit, request: web.Request
    ) -> web.StreamResponse | None:
        reason = circuit.has_permit(request)
        return None if reason is None else problem(403, "Forbidden", reason)

    async def open_app(self, session_id: uuid.UUID, app_name: str, user_id: str) -> Circuit:
        async def route(tried: set[str]) -> Route | None:
            if tried:
                return None
            now = time.monotonic()
            cached = self._routes.get((session_id, app_name))
            if cached is not None and cached[0] > now:
                return cached[1]
            running = await self.apps.running_app(session_id, app_name)
            if running is None:
                self._routes.pop((session_id, app_name), None)
                return None
            endpoint = self.apps.agent.app_endpoint(running.kernel_id, running.app.port)
            found = Route(session_id, endpoint)
            self._routes[(session_id, app_name)] = (now + ROUTE_CACHE_SECONDS, found)
            return found

        key = ("app", session_id, app_name, user_id)
        return await self.circuits.get_or_create(key, route, self._permit_gate, self._activity)

    async def on_event(self, event: SessionEvent) -> None:
        if event.status in ("TERMINATING", "TERMINATED", "CANCELLED", "ERROR"):
            session_id = uuid.UUID(event.session_id)
            for key in [k for k in self._routes if k[0] == session_id]:
                del self._routes[key]
            await self.circuits.close_where(lambda key: key[0] == "app" and key[1] == session_id)

    async def add(self, request: web.Request) -> web.Response:
        try:
            claims = tokens.verify(self.apps.secret, request.match_info["token"], APP_TOKEN)
        except tokens.TokenError as e:
            return problem(403, "Forbidden", f"the app token is refused: {e}")
        app_name = request.query.get("app", "")
        if claims["sid"] != request.match_info["session_id"]:
            return problem(403, "Forbidden", "the token was issued for another session")
        if app_name != claims["app"]:
            return problem(403, "Forbidden", f"the token opens {claims['app']}, not {app_name!r}")
        session_id = uuid.UUID(claims["sid"])
        running = await self.apps.running_app(session_id, app_name)
        if running is None:
            return problem(404, "Not Found", "the session has ended")
        await self.apps.ensure_started(await self.sessions.get(session_id), running.app)
        circuit = await self.open_app(session_id, app_name, claims["uid"])
        url = (
            f"{circuit.base_url}/_portside/setup?token={circuit.permit_setup_token(claims['uid'])}"
        )
        return web.json_response({"code": 200, "url": url}, headers=CORS)

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "api_version": "v2"}, headers=CORS)


def build_appproxy_app(proxy: AppProxy) -> web.Application:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/v2/proxy/{token}/{session_id}/add", proxy.add)
    app.router.add_get("/v2/status", proxy.status)
    return app
