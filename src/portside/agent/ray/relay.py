"""A node's app relay: TCP connections from the app proxy to ports inside that node's sessions.

The app proxy runs on the API server; a session's apps listen inside a sandbox on whichever
node Ray chose.  Each node agent runs one relay.  A connection starts with one JSON line,
``{"token", "kernel_id", "port"}``; the relay asks the kernel's broker for a socket into the
sandbox (as the proxy does for a local kernel), answers ``{"ok": true}`` or ``{"error": ...}``
on one line, and from then on copies bytes both ways.  The token keeps anyone who can reach
the node's address, but is not an API server, out of the sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable

from portside.appproxy.connect import ConnectError, from_broker

log = logging.getLogger("portside.agent.ray.relay")

HEADER_LIMIT = 4096
HEADER_TIMEOUT = 10.0

#: Maps a kernel id to its broker's socket path; raises LookupError for an unknown kernel.
BrokerPaths = Callable[[str], str]


class Relay:
    def __init__(self, host: str, broker_path: BrokerPaths) -> None:
        self.host = host
        self.port = 0
        self.token = secrets.token_urlsafe(24)
        self._broker_path = broker_path
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readuntil(b"\n"), HEADER_TIMEOUT)
            header = json.loads(line[:HEADER_LIMIT])
            token, kernel_id, port = header["token"], header["kernel_id"], int(header["port"])
        except (TimeoutError, ValueError, KeyError, TypeError, asyncio.LimitOverrunError):
            await _answer(writer, {"error": "malformed relay request"})
            return
        if not hmac.compare_digest(str(token).encode(), self.token.encode()):
            await _answer(writer, {"error": "the relay token is wrong"})
            return
        try:
            path = self._broker_path(kernel_id)
            sock = await asyncio.to_thread(from_broker, path, port)
        except LookupError:
            await _answer(writer, {"error": "the session is not running on this node"})
            return
        except (ConnectError, OSError) as e:
            await _answer(writer, {"error": str(e)})
            return
        app_reader, app_writer = await asyncio.open_connection(sock=sock)
        await _answer(writer, {"ok": True})
        to_app = asyncio.create_task(_pump(reader, app_writer))
        to_client = asyncio.create_task(_pump(app_reader, writer))
        try:
            done, _ = await asyncio.wait((to_app, to_client), return_when=asyncio.FIRST_COMPLETED)
            if to_app in done:
                # The client finished sending (a half-close): the app may still be answering.
                await to_client
        finally:
            to_app.cancel()
            to_client.cancel()
            app_writer.close()


async def _answer(writer: asyncio.StreamWriter, reply: dict[str, object]) -> None:
    writer.write(json.dumps(reply).encode() + b"\n")
    await writer.drain()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
    except (ConnectionError, OSError):
        pass
