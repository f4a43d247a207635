"""Runs the all-in-one server: the API and (with later issues) the app proxy, in one process."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import signal
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiohttp import web

from portside.api.app import build_app
from portside.appproxy.server import build_appproxy_app
from portside.config import Config
from portside.services.platform import Platform

log = logging.getLogger("portside.server")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a running server tells the outside world, also written to ``server.json``."""

    api_url: str
    appproxy_url: str
    env_file: str
    access_key: str
    pid: int
    #: How kernels are isolated here (``bwrap+cgroup-v1+uid-per-session``, ``process+rlimits``).
    isolation: str


def _bind(host: str, port: int) -> socket.socket:
    # Binding before start-up lets port 0 pick a free port that the env file then names.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _write_server_file(path: Path, info: ServerInfo) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(path)


def _raise_open_file_limit() -> None:
    # Every session holds several sockets to its kernel; the default soft limit of 1024
    # descriptors would cap a server at a couple of hundred sessions.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(config: Config, on_ready: Callable[[ServerInfo], None] | None = None) -> None:
    _raise_open_file_limit()
    api_sock = _bind(config.api.host, config.api.port)
    config.api.port = api_sock.getsockname()[1]
    proxy_sock = _bind(config.appproxy.host, config.appproxy.port)
    config.appproxy.port = proxy_sock.getsockname()[1]
    platform = Platform(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with platform.running():
        runner = web.AppRunner(build_app(platform), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, api_sock).start()
        proxy_runner = web.AppRunner(
            build_appproxy_app(platform.appproxy), access_log=None, handle_signals=False
        )
        await proxy_runner.setup()
        await web.SockSite(proxy_runner, proxy_sock).start()
        info = ServerInfo(
            api_url=config.api_url,
            appproxy_url=config.appproxy_url,
            env_file=str(platform.credentials.env_file),
            access_key=platform.credentials.admin_access_key,
            pid=os.getpid(),
            isolation=platform.agent.isolation,
        )
        # Everything made so far (modules, mappers, the schema) lives as long as the server:
        # out of the collector's sight, a full collection no longer walks all of it, which
        # took ~90 ms at a time once a few hundred sessions were open.
        gc.collect()
        gc.freeze()
        server_file = config.data_dir / "server.json"
        _write_server_file(server_file, info)
        log.info("serving", extra={"api": info.api_url})
        if on_ready is not None:
            on_ready(info)
        try:
            await stop.wait()
        finally:
            server_file.unlink(missing_ok=True)
            await proxy_runner.cleanup()
            await runner.cleanup()
