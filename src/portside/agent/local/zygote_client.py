"""Starting a zygote for a runtime and asking it for kernels (see portside/kernel/zygote.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
from typing import Any

from portside.agent.base import AgentError

log = logging.getLogger("portside.agent.zygote")

#: The only variables a zygote (and so every kernel) inherits from the server: nothing that
#: configures or authenticates the server itself.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH")
#: Seconds ``close`` waits for a zygote without kernels to exit (it has nothing left to do).
CLOSE_WAIT = 1.0


class Zygote:
    def __init__(self, python: str, env: dict[str, str]) -> None:
        self.python = python
        self.env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ} | env
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()

    async def start(self, timeout: float = 120.0) -> None:
        ours, theirs = socket.socketpair()
        # A session of its own: the zygote is the parent of kernels that outlive the server,
        # and a Ctrl-C in the server's terminal is not for it.
        self._process = subprocess.Popen(
            [self.python, "-m", "portside.kernel.zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self._reader, self._writer = await asyncio.open_connection(
            sock=ours, limit=16 * 1024 * 1024
        )
        try:
            hello = await asyncio.wait_for(self._reader.readline(), timeout)
        except TimeoutError:
            raise AgentError(f"the zygote for {self.python} did not start in time") from None
        if not hello:
            raise AgentError(f"the zygote for {self.python} exited while starting")
        log.info("zygote ready", extra={"python": self.python, "pid": self._process.pid})

    async def spawn(self, request: dict[str, Any]) -> dict[str, Any]:
        """Asks for a kernel; the reply has its pid.

        A caller cancelled while the zygote works does not cut the exchange short: its reply
        would be read as the answer to the next request.  The exchange ends in the background
        and the kernel it started, which nobody will look after, is killed.
        """
        exchange = asyncio.ensure_future(self._exchange({"op": "spawn", **request}))
        try:
            line = await asyncio.shield(exchange)
        except asyncio.CancelledError:
            exchange.add_done_callback(_kill_unwanted)
            raise
        return _parse_reply(line)

    async def _exchange(self, request: dict[str, Any]) -> bytes:
        assert self._reader is not None
        assert self._writer is not None
        async with self._lock:
            if self._process is None or self._process.poll() is not None:
                raise AgentError("the kernel zygote is not running")
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            return await self._reader.readline()

    async def gather(self, codes: list[int]) -> dict[str, Any]:
        """Has the zygote gather the code a rehearsal kernel ran (portside.kernel.rehearsal);
        the reply says how many functions moved and over how many pages."""
        line = await self._exchange({"op": "gather", "codes": codes})
        return _parse_reply(line, "the zygote could not gather the code")

    async def close(self, *, kernels_left: bool) -> None:
        """Lets the zygote go.  It exits at once, or, with ``kernels_left`` (sessions left
        running for the next server), once the last kernel it forked has ended: it is their
        parent and records how each ends."""
        if self._writer is not None:
            self._writer.close()
        if self._process is not None and not kernels_left:
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self._process.wait, CLOSE_WAIT)


def _parse_reply(line: bytes, failure: str = "the kernel could not be started") -> dict[str, Any]:
    if not line:
        raise AgentError("the kernel zygote exited")
    reply: dict[str, Any] = json.loads(line)
    if not reply.get("ok"):
        raise AgentError(f"{failure}: {reply.get('error')}")
    return reply


def _kill_unwanted(exchange: asyncio.Future[bytes]) -> None:
    """Ends the kernel of an exchange whose caller was cancelled."""
    if exchange.cancelled() or exchange.exception() is not None:
        return
    with contextlib.suppress(AgentError, ProcessLookupError, ValueError):
        os.kill(_parse_reply(exchange.result())["kernel_pid"], signal.SIGKILL)
