"""API sessions: ``Session`` for plain scripts, ``AsyncSession`` for asyncio code.

Both hold one aiohttp client session and the negotiated API version; they differ only in how a
caller waits.  Every API call is written once as a coroutine: an ``AsyncSession`` hands the
coroutine back to be awaited, a ``Session`` runs it to completion on a private event loop in a
worker thread, so it works in a plain script and also from a thread while another event loop
is running.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import warnings
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import aiohttp

from .config import (
    API_VERSION,
    MIN_API_VERSION,
    APIConfig,
    format_api_version,
    get_config,
    parse_api_version,
)
from .exceptions import APIVersionWarning, BackendClientError

if TYPE_CHECKING:
    from .func.admin import Admin
    from .func.image import Image
    from .func.keypair import KeyPair
    from .func.manager import Manager
    from .func.service import Service
    from .func.session import ComputeSession
    from .func.system import System
    from .func.vfolder import VFolder

__all__ = ("AsyncSession", "BaseSession", "Session", "api_session")

T = TypeVar("T")

#: The session the current code runs under; ``Request`` and the function classes read it.
api_session: contextvars.ContextVar[BaseSession] = contextvars.ContextVar("api_session")


def _bind(func_cls: type[T], session: BaseSession) -> type[T]:
    """A subclass of ``func_cls`` whose calls go through ``session`` (``api_session.System``)."""
    return type(
        func_cls.__name__,
        (func_cls,),
        {"_session": session, "__module__": func_cls.__module__, "__doc__": func_cls.__doc__},
    )


class BaseSession:
    """What both session flavours share: configuration, version negotiation, bound functions."""

    is_async: ClassVar[bool]

    System: type[System]
    Admin: type[Admin]
    KeyPair: type[KeyPair]
    Manager: type[Manager]
    ComputeSession: type[ComputeSession]
    Image: type[Image]
    VFolder: type[VFolder]
    Service: type[Service]

    def __init__(self, *, config: APIConfig | None = None, proxy_mode: bool = False) -> None:
        self._config = config if config is not None else get_config()
        self._proxy_mode = proxy_mode
        self.api_version: tuple[int, str] = parse_api_version(self._config.version)
        self._closed = False
        self._context_token: contextvars.Token[BaseSession] | None = None
        self.aiohttp_session: aiohttp.ClientSession
        from .func import FUNCTION_CLASSES

        for func_cls in FUNCTION_CLASSES:
            setattr(self, func_cls.__name__, _bind(func_cls, self))

    @property
    def config(self) -> APIConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def proxy_mode(self) -> bool:
        return self._proxy_mode

    @property
    def api_version_str(self) -> str:
        return format_api_version(self.api_version)

    def _make_http_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=not self._config.skip_sslcert_validation)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=self._config.connection_timeout or None,
            sock_read=self._config.read_timeout or None,
        )
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def _negotiate_api_version(self) -> None:
        """``min(server, client)``; an unreachable server leaves the client's own version."""
        if self._proxy_mode:
            return
        url = self._config.endpoint
        if self._config.endpoint_type == "session":
            url = url.with_path(url.path.rstrip("/") + "/func/")
        try:
            async with self.aiohttp_session.get(
                url, headers={"User-Agent": self._config.user_agent}
            ) as resp:
                resp.raise_for_status()
                body = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError):
            return
        server_version = parse_api_version(body["version"])
        if server_version > API_VERSION:
            warnings.warn(
                "The server API version is higher than the client's; "
                "calls use the client's version.",
                APIVersionWarning,
                stacklevel=3,
            )
        if server_version < MIN_API_VERSION:
            warnings.warn(
                f"The server is too old ({body['version']}); some calls may not work.",
                APIVersionWarning,
                stacklevel=3,
            )
        self.api_version = min(server_version, API_VERSION)

    async def _announce(self) -> None:
        handler = self._config.announcement_handler
        if handler is None:
            return
        from .request import Request

        try:
            async with Request("GET", "/manager/announcement", session=self).fetch() as resp:
                body = await resp.json()
        except Exception:
            return
        if body.get("enabled") and body.get("message"):
            handler(body["message"])

    async def _open(self) -> None:
        self.aiohttp_session = self._make_http_session()
        await self._negotiate_api_version()
        await self._announce()

    async def _aclose(self) -> None:
        await self.aiohttp_session.close()


class _LoopThread(threading.Thread):
    """A daemon thread that runs one event loop forever, for the sync ``Session``."""

    def __init__(self) -> None:
        super().__init__(name="portside-client-loop", daemon=True)
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def start(self) -> None:
        super().start()
        self._started.wait()

    def execute(self, coro: Coroutine[Any, Any, T]) -> T:
        # run_coroutine_threadsafe schedules the task with a copy of the *caller's* context,
        # so ``api_session`` set in the caller's thread is visible inside the coroutine.
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join()


class Session(BaseSession):
    """A synchronous API session: every API call blocks until its answer arrives.

    Usable as a context manager (``with Session() as api_session:``) or by calling ``close()``.
    """

    is_async = False

    def __init__(self, *, config: APIConfig | None = None, proxy_mode: bool = False) -> None:
        super().__init__(config=config, proxy_mode=proxy_mode)
        self._worker = _LoopThread()
        self._worker.start()
        try:
            self._worker.execute(self._open())
        except BaseException:
            self._worker.stop()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Runs one coroutine of this session to completion and returns its result."""
        if self._closed:
            coro.close()
            raise BackendClientError("this API session is already closed")
        if threading.current_thread() is self._worker:
            coro.close()
            raise BackendClientError(
                "a sync Session call cannot be made from inside its own worker loop"
            )
        return self._worker.execute(coro)

    @property
    def worker_thread(self) -> _LoopThread:
        """The official client's name for the loop thread (``worker_thread.execute(coro)``)."""
        return self._worker

    def close(self) -> None:
        if self._closed:
            return
        self._worker.execute(self._aclose())
        self._closed = True
        self._worker.stop()

    def __enter__(self) -> Session:
        self._context_token = api_session.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._context_token is not None:
            api_session.reset(self._context_token)
            self._context_token = None
        self.close()


class AsyncSession(BaseSession):
    """An asyncio API session: every API call returns a coroutine to await."""

    is_async = True

    def __init__(self, *, config: APIConfig | None = None, proxy_mode: bool = False) -> None:
        super().__init__(config=config, proxy_mode=proxy_mode)
        self._opened = False

    async def open(self) -> None:
        if not self._opened:
            await self._open()
            self._opened = True

    async def close(self) -> None:
        if self._closed:
            return
        if self._opened:
            await self._aclose()
        self._closed = True

    async def __aenter__(self) -> AsyncSession:
        await self.open()
        self._context_token = api_session.set(self)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._context_token is not None:
            api_session.reset(self._context_token)
            self._context_token = None
        await self.close()
