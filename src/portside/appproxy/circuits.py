"""Circuits: one listening port per opened app, relaying to it inside its session.

A circuit for an interactive app admits a browser that holds the circuit's permit cookie (set
by ``/_portside/setup`` from a short-lived token); the model-service ingress adds circuits that
check a bearer token instead (see services).  Every request re-checks that the session still
runs, so a destroyed session's circuit answers 404 at once, and proxied traffic keeps the
session from being reaped as idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from portside.services import tokens

from .connect import AppConnector, ConnectError, Endpoint
from .relay import UpstreamLost, forward_headers, is_websocket, relay_http, relay_websocket

log = logging.getLogger("portside.appproxy")

PERMIT = "permit"
PERMIT_SETUP = "permit-setup"
SETUP_PATH = "/_portside/setup"
#: Sessions are marked active at most this often while traffic flows through a circuit.
TOUCH_INTERVAL = 5.0


def problem(status: int, title: str, msg: str) -> web.Response:
    body = {"type": f"https://api.backend.ai/probs/app-proxy-{status}", "title": title, "msg": msg}
    return web.json_response(
        body,
        status=status,
        content_type="application/problem+json",
        headers={"Access-Control-Allow-Origin": "*"},
    )


def _cookie(request: web.Request, name: str) -> str | None:
    """One cookie's value, found without parsing every cookie the browser sent."""
    for header in request.headers.getall("Cookie", ()):
        if name not in header:
            continue
        for part in header.split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                return value.strip()
    return None


@dataclass
class Route:
    """Where a request goes: an app port inside a session.

    ``label`` names the replica (one per route of a model service), ``release`` is called when
    the request is done, and ``broken`` when the replica could not even be connected to.
    """

    session_id: uuid.UUID
    endpoint: Endpoint
    label: str = "app"
    release: Callable[[], None] | None = None
    broken: Callable[[], None] | None = None


#: Returns the route for a request, skipping the labels given, or None when no target is
#: left (answered with 404, or 503 when some were tried).
RouteSource = Callable[[set[str]], Awaitable[Route | None]]
#: Raises ``web.HTTPException``-like responses by returning one; None admits the request.
Gate = Callable[["Circuit", web.Request], Awaitable[web.StreamResponse | None]]
Activity = Callable[[uuid.UUID, int], Awaitable[None]]


@dataclass
class Circuit:
    id: str
    key: tuple[Any, ...]
    route: RouteSource
    gate: Gate
    activity: Activity
    secret: str
    permit_ttl: float
    port: int = 0
    base_url: str = ""
    runner: web.AppRunner | None = None
    client: aiohttp.ClientSession | None = None
    #: Replica label to where it is; the connector looks the request's host label up here.
    _endpoints: dict[str, Endpoint] = field(default_factory=dict)
    _last_touch: dict[uuid.UUID, float] = field(default_factory=dict)
    _permits: tokens.Verified = field(default_factory=lambda: tokens.Verified(PERMIT))

    @property
    def cookie_name(self) -> str:
        return f"portside_permit_{self.id[:12]}"

    async def _endpoint_for(self, label: str) -> Endpoint:
        endpoint = self._endpoints.get(label)
        if endpoint is None:
            raise ConnectError("the app is not available")
        return endpoint

    async def start(self, host: str, advertise_host: str, port: int = 0) -> None:
        self.client = aiohttp.ClientSession(
            connector=AppConnector(self._endpoint_for, limit=0, force_close=False),
            # The client is shared by every browser (every token holder, for a service): a
            # cookie jar would keep cookies an app set for one and send them for all,
            # overriding their own.  Cookies pass between browser and app untouched.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            # The port it had before a restart is taken: a new one, and a new URL.
            sock.bind((host, 0))
        sock.listen(128)
        sock.setblocking(False)
        await web.SockSite(self.runner, sock).start()
        self.port = sock.getsockname()[1]
        self.base_url = f"http://{advertise_host}:{self.port}"

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        if self.runner is not None:
            await self.runner.cleanup()

    def permit_setup_token(self, user_id: str, ttl: float = 300.0) -> str:
        return tokens.issue(
            self.secret, PERMIT_SETUP, {"cid": self.id, "uid": user_id}, time.time() + ttl
        )

    async def _setup(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = tokens.verify(self.secret, request.query.get("token", ""), PERMIT_SETUP)
        except tokens.TokenError as e:
            return problem(403, "Forbidden", f"cannot open the app: {e}")
        if claims.get("cid") != self.id:
            return problem(403, "Forbidden", "this link was made for another app")
        permit = tokens.issue(
            self.secret,
            PERMIT,
            {"cid": self.id, "uid": claims["uid"]},
            time.time() + self.permit_ttl,
        )
        response = web.HTTPFound(request.query.get("redirect", "/"))
        response.set_cookie(
            self.cookie_name,
            permit,
            max_age=int(self.permit_ttl),
            httponly=True,
            samesite="Lax",
            path="/",
        )
        return response

    def has_permit(self, request: web.Request) -> str | None:
        """Why the browser may not in, or None when its permit is good."""
        cookie = _cookie(request, self.cookie_name)
        if cookie is None:
            return "open the app through its link first (no permit)"
        try:
            claims = self._permits.verify(self.secret, cookie)
        except tokens.TokenError as e:
            return str(e)
        if claims.get("cid") != self.id:
            return "the permit belongs to another app"
        return None

    async def _touch(self, session_id: uuid.UUID) -> None:
        now = time.monotonic()
        if now - self._last_touch.get(session_id, 0.0) > TOUCH_INTERVAL:
            self._last_touch[session_id] = now
            await self.activity(session_id, 0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == SETUP_PATH:
            return await self._setup(request)
        refusal = await self.gate(self, request)
        if refusal is not None:
            return refusal
        assert self.client is not None
        tried: set[str] = set()
        failure = ""
        # A replica that cannot be connected to is skipped and another one tried: nothing was
        # sent to it yet, so even a POST is safe to send elsewhere.  One that goes away while
        # answering is skipped too, for a request that may be sent twice.
        while (route := await self.route(tried)) is not None:
            tried.add(route.label)
            self._endpoints[route.label] = route.endpoint
            headers = forward_headers(
                request, drop_cookie=self.cookie_name, drop_authorization=self.key[0] == "service"
            )
            headers["Host"] = f"127.0.0.1:{route.endpoint['port']}"
            base = f"http://{route.label}:{route.endpoint['port']}"
            await self._touch(route.session_id)
            try:
                if is_websocket(request):
                    await self.activity(route.session_id, +1)
                    try:
                        return await relay_websocket(request, self.client, base, headers)
                    finally:
                        await self.activity(route.session_id, -1)
                return await relay_http(request, self.client, base, headers)
            except aiohttp.ClientConnectorError as e:
                failure = f"the app is not answering: {e.os_error}"
                if route.broken is not None:
                    route.broken()
            except UpstreamLost as e:
                # The replica went away while answering (it was stopped or killed).  Nothing
                # reached the client yet, so a request that may be sent again goes to another.
                failure = f"the app went away while answering: {e}"
                if route.broken is not None:
                    route.broken()
                if not e.resendable:
                    return problem(502, "Bad Gateway", failure)
            except aiohttp.WSServerHandshakeError as e:
                return problem(502, "Bad Gateway", f"the app refused the WebSocket: {e.message}")
            finally:
                if route.release is not None:
                    route.release()
        if failure:
            return problem(502, "Bad Gateway", failure)
        return problem(404, "Not Found", "the session behind this app has ended")


class CircuitManager:
    def __init__(self, *, host: str, advertise_host: str, permit_ttl: float) -> None:
        self.host = host
        self.advertise_host = advertise_host
        #: Set when the platform starts (``tokens.load_secret``).
        self.secret = ""
        self.permit_ttl = permit_ttl
        self._circuits: dict[tuple[Any, ...], Circuit] = {}
        self._lock = asyncio.Lock()

    async def get_or_create(
        self,
        key: tuple[Any, ...],
        route: RouteSource,
        gate: Gate,
        activity: Activity,
        *,
        port: int = 0,
    ) -> Circuit:
        async with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                circuit = Circuit(
                    uuid.uuid4().hex, key, route, gate, activity, self.secret, self.permit_ttl
                )
                await circuit.start(self.host, self.advertise_host, port)
                self._circuits[key] = circuit
                log.info("circuit opened", extra={"circuit": circuit.id, "port": circuit.port})
            return circuit

    def find(self, key: tuple[Any, ...]) -> Circuit | None:
        return self._circuits.get(key)

    async def close_where(self, predicate: Callable[[tuple[Any, ...]], bool]) -> None:
        async with self._lock:
            doomed = [k for k in self._circuits if predicate(k)]
            circuits = [self._circuits.pop(k) for k in doomed]
        for circuit in circuits:
            with contextlib.suppress(Exception):
                await circuit.close()

    async def close(self) -> None:
        await self.close_where(lambda key: True)
