"""Starting apps in sessions and issuing the tokens that open them (runtime-semantics.md s.3.3)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from portside.agent.base import Agent, AgentError
from portside.apps import AppDefinition, session_apps
from portside.config import Config
from portside.db.models import SessionRow
from portside.db.repositories.identity import Principal
from portside.errors import (
    InvalidAPIParameters,
    InvalidSessionState,
    KernelError,
    ObjectNotFound,
)
from portside.images import ImageRegistry

from . import tokens
from .sessions import SessionService

#: The JWT ``typ`` of a start-service token (what ``/v2/proxy/{token}/.../add`` takes).
APP_TOKEN = "app-token"


@dataclass(frozen=True, slots=True)
class RunningApp:
    """An app inside a running session, as the app proxy needs to reach it."""

    session_id: uuid.UUID
    kernel_id: str
    access_key: str
    user_id: uuid.UUID
    app: AppDefinition


class AppService:
    def __init__(
        self,
        sessions: SessionService,
        agent: Agent,
        images: ImageRegistry,
        config: Config,
    ) -> None:
        self.sessions = sessions
        self.agent = agent
        self.images = images
        self.config = config
        #: Set when the platform starts (``tokens.load_secret``).
        self.secret = ""

    async def _running(
        self, principal: Principal, reference: str, owner_access_key: str | None
    ) -> SessionRow:
        async with self.sessions.db() as db:
            row: SessionRow = await self.sessions.resolve(
                db, principal, reference, owner_access_key
            )
        if row.status != "RUNNING" or row.kernel_id is None:
            raise InvalidSessionState(f"the session is {row.status}; apps need a running one")
        await self.sessions.attach(row)
        return row

    async def apps_of(self, row: SessionRow) -> list[AppDefinition]:
        image = self.images.resolve(row.image)
        return await asyncio.to_thread(session_apps, image, row.preopen_ports)

    async def list_apps(
        self, principal: Principal, reference: str, owner_access_key: str | None = None
    ) -> list[dict[str, Any]]:
        row = await self._running(principal, reference, owner_access_key)
        return [app.as_service_port() for app in await self.apps_of(row)]

    async def _find_app(self, row: SessionRow, name: str) -> AppDefinition:
        apps = await self.apps_of(row)
        for app in apps:
            if app.name == name:
                return app
        available = ", ".join(a.name for a in apps)
        raise ObjectNotFound(
            f"this session has no app {name!r}; it has: {available}", object_name="app"
        )

    async def ensure_started(
        self,
        row: SessionRow,
        app: AppDefinition,
        *,
        envs: dict[str, str] | None = None,
        arguments: dict[str, str] | None = None,
    ) -> None:
        python = self.images.resolve(row.image).python
        command = app.command_line(python)
        if command is not None and arguments:
            for key, value in arguments.items():
                command += [key, value] if value else [key]
        try:
            result = await self.agent.start_app(
                str(row.kernel_id), app.name, app.port, command, {**app.env, **(envs or {})}
            )
        except AgentError as e:
            raise KernelError(f"Failed to launch the app service: {e}") from e
        if result.get("status") == "failed":
            raise KernelError(
                "Failed to launch the app service", data={"error": result.get("error")}
            )

    async def start_service(
        self,
        principal: Principal,
        reference: str,
        app_name: str,
        *,
        port: int | None = None,
        envs: str | dict[str, str] | None = None,
        arguments: str | dict[str, str] | None = None,
        owner_access_key: str | None = None,
    ) -> dict[str, str]:
        row = await self._running(principal, reference, owner_access_key)
        app = await self._find_app(row, app_name)
        if app.is_inference:
            raise InvalidAPIParameters(f"{app_name} serves a model; open it through its endpoint")
        if port is not None and port != app.port:
            raise InvalidAPIParameters(f"{app_name} listens on port {app.port}, not {port}")
        await self.ensure_started(
            row, app, envs=_json_dict(envs, "envs"), arguments=_json_dict(arguments, "arguments")
        )
        self.sessions.touch(row.id, query=True)
        token = tokens.issue(
            self.secret,
            APP_TOKEN,
            {"sid": str(row.id), "app": app.name, "uid": str(row.user_id), "ak": row.access_key},
            time.time() + self.config.appproxy.token_ttl,
        )
        return {"token": token, "wsproxy_addr": self.config.appproxy_url}

    async def shutdown_service(
        self,
        principal: Principal,
        reference: str,
        app_name: str,
        owner_access_key: str | None = None,
    ) -> None:
        row = await self._running(principal, reference, owner_access_key)
        await self._find_app(row, app_name)
        await self.agent.stop_app(str(row.kernel_id), app_name)

    async def running_app(self, session_id: uuid.UUID, app_name: str) -> RunningApp | None:
        """The app of a session that is still running, for the proxy; None if gone."""
        async with self.sessions.db() as db:
            row = await db.get(SessionRow, session_id)
        if row is None or row.status != "RUNNING" or row.kernel_id is None:
            return None
        await self.sessions.attach(row)
        try:
            app = await self._find_app(row, app_name)
        except ObjectNotFound:
            return None
        return RunningApp(row.id, str(row.kernel_id), row.access_key, row.user_id, app)


def _json_dict(value: str | dict[str, str] | None, what: str) -> dict[str, str]:
    """``envs``/``arguments`` arrive as JSON-encoded strings (wire-protocol.md section 4.2)."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidAPIParameters(f"{what} must be a JSON object: {e}") from e
    if not isinstance(value, dict):
        raise InvalidAPIParameters(f"{what} must be a JSON object")
    return {str(k): str(v) for k, v in value.items()}
