"""Query mode: driving a session's ipykernel with jupyter_client (runtime-semantics.md s.1.6).

One connection per kernel; one dispatcher per channel routes each message to the run that
caused it, by the message's parent id.  A run finishes when both its ``execute_reply`` and the
kernel's return to ``idle`` have arrived, so no trailing output is lost; or, from Portside's own
kernels, once the reply and the IOPub messages it counts have arrived (they send no ``idle``
then: a message fewer per run).

Messages are built and signed by jupyter_client's ``Session``, over ZeroMQ sockets of our
own.  jupyter_client's ``KernelClient`` around them would add a dozen traitlets objects per
kernel (the client, its connection info, a channel object per socket), whose construction and
teardown cost each session start about 1.2 ms more of the server's CPU than the same sockets
and ``Session`` alone (``docs/decisions.md``); nothing here uses what they add (its polling
``get_*_msg`` helpers, its heartbeat, its blocking variants).

Incoming messages are read where the event loop sees a socket's descriptor become readable,
all that it holds at once, and decoded without ``Session.deserialize``'s date parsing and
protocol adaptation (``_decode``): every message of every run passes here, and those two,
with pyzmq's asyncio layer (a future and a poll per message), were a quarter of the server's CPU
per ``print(1)``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import zmq
from jupyter_client.session import Session

from portside.agent.base import AgentError
from portside.agent.execution import Run
from portside.kernel import IOPUB_COUNT_KEY
from portside.zmqio import readable, recv_multipart_nowait, send_multipart

log = logging.getLogger(__name__)

#: Rich outputs we pass on as media, in the order we prefer them.
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
DRAWING_TYPE = "application/x-sorna-drawing"


def display_to_record(data: dict[str, Any]) -> tuple[str, Any] | None:
    """The console record for a Jupyter ``display_data``/``execute_result`` bundle.

    Like Backend.AI, plain text is used only when nothing richer is there.  Unlike its
    ipykernel runner, HTML becomes an ``html`` record instead of crashing the call.
    """
    for mime in (DRAWING_TYPE, *IMAGE_TYPES):
        if mime in data:
            payload = data[mime]
            if mime in IMAGE_TYPES:
                payload = f"data:{mime};base64,{str(payload).strip()}"
            return "media", [mime, payload]
    if "image/svg+xml" in data:
        return "media", ["image/svg+xml", data["image/svg+xml"]]
    if "text/html" in data:
        return "html", data["text/html"]
    for mime, payload in data.items():
        if mime != "text/plain":
            text = payload if isinstance(payload, str) else json.dumps(payload)
            return "media", [mime, text]
    if "text/plain" in data:
        return "stdout", data["text/plain"]
    return None


def exit_code_of(reply: dict[str, Any]) -> int:
    status = reply.get("status")
    if status == "ok":
        return 0
    if reply.get("ename") == "SystemExit":
        value = str(reply.get("evalue", "")).strip()
        if not value or value == "None":
            return 0
        try:
            return int(value)
        except ValueError:
            return 1
    return 1


@functools.cache
def _shared_context() -> zmq.Context[zmq.Socket[bytes]]:
    """One ZeroMQ context for all kernels: a context per client would bring its own I/O
    threads, hundreds of them with hundreds of sessions.

    A context allows 1023 sockets unless told otherwise before its first socket, and each
    kernel takes four; the process's file limit is the real bound.
    """
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    context.max_sockets = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return context


@dataclass
class _Pending:
    run: Run
    reply: dict[str, Any] | None = None
    idle: bool = False
    #: The run's IOPub messages so far, and how many its reply says were sent before it.
    published: int = 0
    expected: int | None = None


def _url(connection: dict[str, Any], channel: str) -> str:
    """A channel's address, as jupyter_client spells it for each transport."""
    port = connection[f"{channel}_port"]
    if connection["transport"] == "tcp":
        return f"tcp://{connection['ip']}:{port}"
    return f"{connection['transport']}://{connection['ip']}-{port}"


Handler = Callable[[dict[str, Any]], None]


class JupyterConnection:
    def __init__(self, connection: dict[str, Any]) -> None:
        self.session = Session(
            key=connection["key"].encode(), signature_scheme=connection["signature_scheme"]
        )
        self._connection = connection
        self._sockets: list[zmq.Socket[bytes]] = []
        self._handlers: dict[zmq.Socket[bytes], Handler] = {}
        self._pending: dict[str, _Pending] = {}
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._probes: dict[str, asyncio.Event] = {}
        #: Set when the kernel confirmed our IOPub subscription (ipykernel 7's iopub_welcome).
        self._subscribed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self, timeout: float = 30.0) -> None:
        """Connects and waits until the kernel answers on both the shell and IOPub channels.

        jupyter_client's own ``wait_for_ready`` polls with fixed 200 ms sleeps, which would
        double a new session's start-up time; asking ``kernel_info`` until its reply and its
        IOPub status both arrive is as safe and takes only as long as the kernel does.  A
        kernel that welcomes our IOPub subscription (ipykernel 7 and later) is ready once it
        has replied: everything it publishes from then on reaches us.
        """
        loop = self._loop = asyncio.get_running_loop()
        # No heartbeat channel: the agent learns of a kernel's death from its process (pidfd),
        # sooner and for free.  The shell, stdin and control sockets share one identity, which
        # is how the kernel knows where to send a run's input requests.
        self._shell = self._connect("shell", zmq.DEALER, self._on_shell)
        self._iopub = self._connect("iopub", zmq.SUB, self._on_iopub)
        self._iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self._stdin = self._connect("stdin", zmq.DEALER, self._on_stdin)
        self._control = self._connect("control", zmq.DEALER, None)
        deadline = loop.time() + timeout
        while True:
            msg_id = self._send(self._shell, "kernel_info_request", {})
            reply: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._replies[msg_id] = reply
            seen = self._probes[msg_id] = asyncio.Event()
            try:
                await asyncio.wait_for(reply, 1.0)
                # A SUB socket misses what is published before its subscription arrives
                # ("slow joiner"); unless the kernel confirmed it, a short wait for the
                # status of this request, then ask again.
                if not self._subscribed.is_set():
                    await asyncio.wait_for(seen.wait(), 0.05)
                return
            except TimeoutError:
                if loop.time() > deadline:
                    await self.close()
                    raise AgentError("the kernel did not answer in time") from None
            finally:
                self._replies.pop(msg_id, None)
                self._probes.pop(msg_id, None)

    async def close(self) -> None:
        for socket in self._sockets:
            if self._loop is not None and socket in self._handlers:
                self._loop.remove_reader(socket.FD)
            socket.close(linger=0)
        self._sockets.clear()
        self._handlers.clear()

    def _connect(self, channel: str, kind: int, handler: Handler | None) -> zmq.Socket[bytes]:
        socket = _shared_context().socket(kind)
        if kind == zmq.DEALER:
            socket.setsockopt(zmq.IDENTITY, self.session.bsession)
        socket.connect(_url(self._connection, channel))
        self._sockets.append(socket)
        if handler is not None:
            assert self._loop is not None
            self._handlers[socket] = handler
            self._loop.add_reader(socket.FD, self._read, socket)
        return socket

    def _send(self, socket: zmq.Socket[bytes], msg_type: str, content: dict[str, Any]) -> str:
        message = self.session.msg(msg_type, content)
        send_multipart(socket, self.session.serialize(message))
        assert self._loop is not None
        if socket in self._handlers:
            # ZeroMQ's descriptor signals only changes, and a send may take in the change that
            # a message arrived: look again once this call is done.
            self._loop.call_soon(self._read, socket)
        msg_id: str = message["header"]["msg_id"]
        return msg_id

    def execute(self, run: Run, code: str) -> None:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": True,
            # The agent sends a kernel one run at a time, so there is never a queued request
            # for an error to abort; and the next run, sent once this one's counted reply is
            # in, could reach the kernel while it still aborts and be dropped unrun.
            "stop_on_error": False,
        }
        self._pending[self._send(self._shell, "execute_request", content)] = _Pending(run)

    def send_input(self, text: str) -> None:
        self._send(self._stdin, "input_reply", {"value": text})

    async def complete(self, code: str, cursor: int, timeout: float = 10.0) -> list[str]:
        msg_id = self._send(self._shell, "complete_request", {"code": code, "cursor_pos": cursor})
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        try:
            content = await asyncio.wait_for(future, timeout)
        finally:
            self._replies.pop(msg_id, None)
        return list(content.get("matches", []))

    def interrupt(self) -> None:
        self._send(self._control, "interrupt_request", {})

    def _read(self, socket: zmq.Socket[bytes]) -> None:
        """Hands on every message the socket holds now.

        A message the handler cannot take is logged and dropped, never left to stop the
        reading: the kernel runs the user's code, which can send anything.
        """
        handler = self._handlers.get(socket)
        while handler is not None and readable(socket):
            parts = recv_multipart_nowait(socket)
            try:
                handler(self._decode(parts))
            except (ValueError, LookupError, TypeError, AttributeError) as e:
                log.warning("kernel message dropped", extra={"reason": repr(e)})
            handler = self._handlers.get(socket)

    def _decode(self, parts: list[bytes]) -> dict[str, Any]:
        """A message's header, parent header and content, once its signature is checked.

        Dates stay strings: nothing here reads them.
        """
        raw = cast(list[bytes], self.session.feed_identities(parts)[1])
        if len(raw) < 5 or not hmac.compare_digest(raw[0], self.session.sign(raw[1:5])):
            raise ValueError("a message with a bad signature")
        unpack = self.session.unpack
        return {
            "header": unpack(raw[1]),
            "parent_header": unpack(raw[2]),
            "metadata": raw[3],
            "content": unpack(raw[4]),
        }

    def _maybe_finish(self, msg_id: str) -> None:
        pending = self._pending.get(msg_id)
        if pending is None or pending.reply is None:
            return
        counted = pending.expected is not None and pending.published >= pending.expected
        if not (pending.idle or counted):
            return
        del self._pending[msg_id]
        pending.run.push_control("finished", exit_code_of(pending.reply))

    def _on_iopub(self, msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] == "iopub_welcome":
            self._subscribed.set()
            for probe in self._probes.values():
                probe.set()
            return
        parent = msg.get("parent_header", {}).get("msg_id")
        if parent in self._probes:
            self._probes[parent].set()
        pending = self._pending.get(parent)
        if pending is None:
            return
        kind, content = msg["header"]["msg_type"], msg["content"]
        run = pending.run
        pending.published += 1
        if kind == "stream":
            run.push(content.get("name", "stdout"), content.get("text", ""))
        elif kind in ("display_data", "execute_result", "update_display_data"):
            record = display_to_record(content.get("data", {}))
            if record is not None:
                run.push(*record)
        elif kind == "error":
            run.push("stderr", "\n".join(content.get("traceback", [])) + "\n")
        elif kind == "status" and content.get("execution_state") == "idle":
            pending.idle = True
        self._maybe_finish(parent)

    def _on_shell(self, msg: dict[str, Any]) -> None:
        parent = msg.get("parent_header", {}).get("msg_id")
        kind = msg["header"]["msg_type"]
        if kind == "execute_reply" and parent in self._pending:
            pending = self._pending[parent]
            pending.reply = msg["content"]
            expected = self.session.unpack(msg["metadata"]).get(IOPUB_COUNT_KEY)
            if isinstance(expected, int):
                pending.expected = expected
            self._maybe_finish(parent)
        elif parent in self._replies and not self._replies[parent].done():
            self._replies[parent].set_result(msg["content"])

    def _on_stdin(self, msg: dict[str, Any]) -> None:
        if msg["header"]["msg_type"] != "input_request":
            return
        pending = self._pending.get(msg.get("parent_header", {}).get("msg_id"))
        if pending is None:
            return
        prompt = msg["content"].get("prompt", "")
        if prompt:
            pending.run.push("stdout", prompt)
        pending.run.push_control(
            "waiting-input", is_password=bool(msg["content"].get("password", False))
        )

    def fail_all(self, reason: str) -> None:
        for pending in self._pending.values():
            pending.run.push("stderr", reason + "\n")
            pending.run.push_control("finished", -1)
        self._pending.clear()
