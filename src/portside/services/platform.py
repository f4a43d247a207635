"""The server's parts, wired together once and shared by every request handler."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portside import __version__
from portside.agent.base import Agent
from portside.config import Config
from portside.db.engine import make_engine, make_sessionmaker
from portside.db.migrate import upgrade
from portside.images import ImageRegistry

from .bootstrap import BootstrapResult, bootstrap
from .events import EventHub
from .execution import ExecutionService
from .mounts import MountResolver
from .sessions import SessionService


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
        self.engine = make_engine(config.effective_database_url)
        self.db: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        self._credentials: BootstrapResult | None = None
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
        self.mounts = MountResolver()
        self.execution = ExecutionService(
            self.sessions, self.agent, max_file_size=config.max_upload_file_size
        )

    def _make_agent(self) -> Agent:
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
            await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def _sessions(self) -> AsyncIterator[None]:
        await self.sessions.start()
        try:
            yield
        finally:
            await self.sessions.close()
            await self.agent.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Platform]:
        """The whole platform, as ``portside serve`` runs it."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.database())
            self._credentials = await bootstrap(self.db, self.config)
            await stack.enter_async_context(self._sessions())
            yield self

    async def count_active_sessions(self, access_key: str | None = None) -> int:
        return await self.sessions.count_active(access_key)
