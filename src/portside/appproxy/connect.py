"""Connections from the proxy to a port inside a session, for aiohttp's client.

An agent describes how to reach a port as an *endpoint*: ``{"kind": "broker", "path", "port"}``
for a local kernel (its broker connects inside the sandbox's network namespace and passes the
socket back), ``{"kind": "tcp", "host", "port"}`` for a plain TCP port, or
``{"kind": "relay", "host", "port", "token", "kernel_id", "app_port"}`` for a session on another
node, reached through that node's relay (agent/ray/relay.py): one JSON line asks for the
kernel's port, one JSON line answers, then the connection is the app's.
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


def from_broker(path: str, port: int) -> socket.socket:
    """A socket connected to ``port`` inside a kernel's sandbox, from its broker (blocking)."""
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


def _from_relay(endpoint: Endpoint) -> socket.socket:
    """A socket through a node's relay, once the relay says the app's port answered."""
    sock = socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10)
    try:
        request = {
            "token": endpoint["token"],
            "kernel_id": endpoint["kernel_id"],
            "port": int(endpoint["app_port"]),
        }
        sock.sendall(json.dumps(request).encode() + b"\n")
        # Byte by byte: whatever follows the answer line is the app's and must stay unread.
        reply = bytearray()
        while not reply.endswith(b"\n"):
            byte = sock.recv(1)
            if not byte or len(reply) > 4096:
                raise ConnectError("the node's relay closed the connection")
            reply += byte
        try:
            answer = json.loads(reply)
        except ValueError:
            raise ConnectError("the node's relay answered something else") from None
        if not answer.get("ok"):
            raise ConnectError(answer.get("error", "the node's relay refused the connection"))
    except BaseException:
        sock.close()
        raise
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


async def open_socket(endpoint: Endpoint) -> socket.socket:
    kind = endpoint.get("kind")
    try:
        if kind == "broker":
            return await asyncio.to_thread(from_broker, endpoint["path"], int(endpoint["port"]))
        if kind == "tcp":
            sock = socket.create_connection((endpoint["host"], int(endpoint["port"])), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            return sock
        if kind == "relay":
            return await asyncio.to_thread(_from_relay, endpoint)
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
