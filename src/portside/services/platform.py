"""The server's parts, wired together once and shared by every request handler."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

from yarl import URL

from portside import __version__
from portside.agent.base import Agent
from portside.appproxy.circuits import CircuitManager
from portside.appproxy.server import AppProxy
from portside.config import Config
from portside.db.engine import Database
from portside.db.migrate import upgrade
from portside.images import ImageRegistry
from portside.storage import LocalVolume

from .apps import AppService
from .bootstrap import BootstrapResult, bootstrap
from .cluster import MODEL_SERVICES_LOCK, Leadership, PostgresBroadcast, asyncpg_dsn
from .events import EventHub
from .execution import ExecutionService
from .keys import KeyCache
from .model_services import ModelServiceManager
from .sessions import SessionService
from .tokens import load_secret
from .vfolders import VFolderService


class Platform:
    """Everything a use case needs: configuration, the database and (later) the agents.

    Construction does no I/O.  ``running()`` starts each part in order and stops them in
    reverse; each part's set-up and tear-down live together in one ``_part`` function, the way
    aiohttp's ``cleanup_ctx`` keeps them.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.version = __version__
        self.started_at = time.time()
        self.db = Database(config.effective_database_url)
        self.engine = self.db.engine
        self._credentials: BootstrapResult | None = None
        self.keys = KeyCache(self.db)
        self.images = ImageRegistry(config.images, os.uname().machine)
        self.events = EventHub()
        self.agent: Agent = self._make_agent()
        self.sessions = SessionService(
            self.db,
            self.agent,
            self.images,
            self.events,
            default_idle_timeout=config.idle_timeout,
        )
        self.vfolders = VFolderService(
            LocalVolume(config.data_dir / "vfolders"),
            self.db,
            default_quota=config.vfolder_quota,
            secret=lambda: self.apps.secret,
        )
        self.mounts = self.vfolders
        self.execution = ExecutionService(
            self.sessions,
            self.agent,
            max_file_size=config.max_upload_file_size,
            server_url=config.api_url,
        )
        self.apps = AppService(self.sessions, self.agent, self.images, config)
        self.circuits = CircuitManager(
            host=config.appproxy.host,
            advertise_host=self._advertised_proxy_host(),
            permit_ttl=config.appproxy.token_ttl,
        )
        self.appproxy = AppProxy(self.apps, self.sessions, self.circuits)
        self.postgres_dsn = asyncpg_dsn(config.effective_database_url)
        self.model_services = ModelServiceManager(
            self.sessions,
            self.apps,
            self.vfolders,
            self.circuits,
            Leadership(self.postgres_dsn, MODEL_SERVICES_LOCK),
        )

    def _advertised_proxy_host(self) -> str:
        if self.config.appproxy.advertise_url:
            host = URL(self.config.appproxy.advertise_url).host
            if host:
                return host
        return self.config.appproxy.host

    def _make_agent(self) -> Agent:
        if self.config.agent.backend == "ray":
            # Imported only here: the local backend (the default) needs no Ray.
            try:
                from portside.agent.ray.agent import RayAgent
            except ImportError as e:
                raise RuntimeError(
                    f"backend = 'ray' needs Ray, which cannot be imported ({e}): "
                    "pip install 'portside[ray]'"
                ) from e
            return RayAgent(self.config, self.images)
        from portside.agent.local.agent import LocalAgent

        return LocalAgent(self.config, self.images)

    @property
    def credentials(self) -> BootstrapResult:
        """The administrator's keypair and the env file written for it at start-up."""
        if self._credentials is None:
            raise RuntimeError("the platform has not been started")
        return self._credentials

    @property
    def node_id(self) -> str:
        return f"portside-{socket.gethostname()}"

    @contextlib.asynccontextmanager
    async def database(self) -> AsyncIterator[Platform]:
        """Just the database, migrated to the latest schema: enough for admin commands."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await upgrade(self.engine)
        try:
            yield self
        finally:
            await self.db.dispose()

    @contextlib.asynccontextmanager
    async def _sessions(self) -> AsyncIterator[None]:
        await self.sessions.start()
        try:
            yield
        finally:
            await self.sessions.close()
            await self.agent.close()

    @contextlib.asynccontextmanager
    async def _broadcast(self) -> AsyncIterator[None]:
        """Events reach the other API servers on the same PostgreSQL database."""
        if self.postgres_dsn is None:
            yield
            return
        broadcast = PostgresBroadcast(self.postgres_dsn, self.events)
        await broadcast.start()
        try:
            yield
        finally:
            await broadcast.close()

    @contextlib.asynccontextmanager
    async def _keys(self) -> AsyncIterator[None]:
        """Callers' keys kept fresh while they keep calling."""
        refresher = asyncio.create_task(self.keys.cache.run(), name="keys-refresher")
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher

    @contextlib.asynccontextmanager
    async def _model_services(self) -> AsyncIterator[None]:
        await self.model_services.start()
        try:
            yield
        finally:
            await self.model_services.close()

    @contextlib.asynccontextmanager
    async def _app_proxy(self) -> AsyncIterator[None]:
        secret = load_secret(self.config)
        self.apps.secret = secret
        self.circuits.secret = secret

        async def follow_sessions() -> None:
            async with self.events.subscribe() as queue:
                while True:
                    await self.appproxy.on_event(await queue.get())

        follower = asyncio.create_task(follow_sessions())
        try:
            yield
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            await self.circuits.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Platform]:
        """The whole platform, as ``portside serve`` runs it."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.database())
            self._credentials = await bootstrap(self.db, self.config)
            await stack.enter_async_context(self._broadcast())
            await stack.enter_async_context(self._keys())
            await stack.enter_async_context(self._app_proxy())
            await stack.enter_async_context(self._sessions())
            await stack.enter_async_context(self._model_services())
            yield self

    async def count_active_sessions(self, access_key: str | None = None) -> int:
        return await self.sessions.count_active(access_key)
