"""How client commands reach the API.

Every client command runs one coroutine inside one ``AsyncSession`` configured, exactly as the
SDK is, from the ``BACKEND_*`` variables (and a ``.env`` file): ``BACKEND_ENDPOINT``,
``BACKEND_ACCESS_KEY``, ``BACKEND_SECRET_KEY`` and the rest.  ``--debug`` (or
``PORTSIDE_DEBUG=1``) on the ``portside`` command shows tracebacks and the SDK's warnings.
"""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

import aiohttp
import click

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import APIVersionWarning
from ai.backend.client.session import AsyncSession

T = TypeVar("T")

#: Where bytes sent by the current task's requests are counted (upload progress), if anywhere.
_sent_bytes: ContextVar[Callable[[str, int], None] | None] = ContextVar(
    "portside_sent_bytes", default=None
)

DEBUG_KEY = "portside.debug"


def debug_enabled(ctx: click.Context | None = None) -> bool:
    ctx = ctx or click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.find_root().meta.get(DEBUG_KEY))


async def _on_chunk_sent(
    session: aiohttp.ClientSession,
    trace_ctx: Any,
    params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    sink = _sent_bytes.get()
    if sink is not None:
        sink(params.method, len(params.chunk))


@contextmanager
def count_sent_bytes(sink: Callable[[str, int], None]) -> Iterator[None]:
    """Calls ``sink(method, n)`` for every chunk of request body sent within the block.

    aiohttp runs the body writer as a task created by the request, which inherits this
    context, so only requests made inside the block are counted.
    """
    token = _sent_bytes.set(sink)
    try:
        yield
    finally:
        _sent_bytes.reset(token)


class CLISession(AsyncSession):
    """An ``AsyncSession`` whose HTTP client reports request body chunks (for upload bars)."""

    def _make_http_session(self) -> aiohttp.ClientSession:
        trace = aiohttp.TraceConfig()
        trace.on_request_chunk_sent.append(_on_chunk_sent)
        config = self.config
        connector = aiohttp.TCPConnector(ssl=not config.skip_sslcert_validation)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=config.connection_timeout or None,
            sock_read=config.read_timeout or None,
        )
        return aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=[trace])


def load_config() -> APIConfig:
    """The SDK configuration from the environment, with problems told as usage errors."""
    try:
        config = APIConfig()
    except (ValueError, KeyError) as e:
        raise click.ClickException(f"the client configuration is invalid: {e}") from e
    if config.endpoint_type == "api" and config.is_anonymous:
        raise click.ClickException(
            "no credentials: set BACKEND_ACCESS_KEY and BACKEND_SECRET_KEY "
            f"(and BACKEND_ENDPOINT, now {config.endpoint})"
        )
    return config


def run_client(work: Callable[[AsyncSession], Coroutine[Any, Any, T]]) -> T:
    """Opens an API session, runs ``work`` in it, closes it; returns what ``work`` returned."""
    config = load_config()
    if not debug_enabled():
        warnings.simplefilter("ignore", APIVersionWarning)

    async def main() -> T:
        async with CLISession(config=config) as api:
            return await work(api)

    return asyncio.run(main())


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def parse_pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    """``("cpu=1", "mem=1g")`` → ``{"cpu": "1", "mem": "1g"}``; a malformed item is a usage
    error naming ``option``."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        pairs[key.strip()] = value.strip()
    return pairs


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-q", "--quiet", is_flag=True, help="Print only results: no progress or status lines."
    )(func)
