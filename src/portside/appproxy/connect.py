"""Connections from the proxy to a port inside a session, for aiohttp's client.

An agent describes how to reach a port as an *endpoint*: ``{"kind": "broker", "path", "port"}``
for a local kernel (its broker connects inside the sandbox's network namespace and passes the
socket back), or ``{"kind": "tcp", "host", "port"}`` for a relay on another node.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

Endpoint = dict[str, Any]


class ConnectError(Exception):
    """The app's port could not be reached (not listening, session gone)."""


def _from_broker(path: str, port: int) -> socket.socket:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as broker:
        broker.settimeout(10)
        broker.connect(path)
        broker.sendall(json.dumps({"port": port}).encode() + b"\n")
        message, fds, _, _ = socket.recv_fds(broker, 4096, 1)
    if not fds:
        reply = json.loads(message or b"{}")
        raise ConnectError(reply.get("error", "the session refused the connection"))
    sock = socket.socket(fileno=fds[0])
    sock.setblocking(False)
    return sock


async def open_socket(endpoint: Endpoint) -> socket.socket:
    kind = endpoint.get("kind")
    try:
        if kind == "broker":
            return await asyncio.to_thread(_from_broker, endpoint["path"], int(endpoint["port"]))
        if kind == "tcp":
            sock = socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            return sock
    except OSError as e:
        raise ConnectError(f"cannot reach the app: {e}") from e
    raise ConnectError(f"unknown endpoint kind {kind!r}")


#: Maps the host label of a request's URL to the endpoint it stands for.
EndpointSource = Callable[[str], Awaitable[Endpoint]]


class AppConnector(aiohttp.BaseConnector):
    """An aiohttp connector whose connections come from ``open_socket``.

    Written like aiohttp's own ``UnixConnector``: only how a connection is made differs, so
    keep-alive pooling and everything else stay aiohttp's.
    """

    def __init__(self, source: EndpointSource, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._source = source

    async def _create_connection(
        self, req: aiohttp.ClientRequest, traces: Any, timeout: aiohttp.ClientTimeout
    ) -> ResponseHandler:
        try:
            sock = await open_socket(await self._source(req.url.host or ""))
        except ConnectError as e:
            raise aiohttp.ClientConnectorError(req.connection_key, OSError(str(e))) from e
        _, protocol = await self._loop.create_connection(self._factory, sock=sock)
        return protocol
