"""A kernel's shell channel, without pyzmq's ``ZMQStream`` machinery on the way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq
from zmq.eventloop.zmqstream import ZMQStream

from portside.zmqio import POLLIN, POLLOUT, readable, recv_multipart_nowait, send_multipart


class ShellStream(ZMQStream):
    """The shell socket's stream, sending at once and reading every message that is waiting.

    ipykernel holds its shell socket in a ``ZMQStream`` (a trait of that type), which sends a
    reply on the loop's next turn once the socket reports it writable and reads one message
    per turn.  This one sends from the caller and reads until the socket is empty.

    ZeroMQ's descriptor only says that the socket's state changed.  A send can take in the news
    of a request that arrived meanwhile, after which the descriptor stays quiet although a
    request waits: each send therefore looks for one and reads it on the loop's next turn.
    """

    def send_multipart(
        self,
        msg: Sequence[Any],
        flags: int = 0,
        copy: bool = True,
        track: bool = False,
        callback: Any = None,
        **kwargs: Any,
    ) -> None:
        if callback is not None or track or kwargs:
            super().send_multipart(msg, flags, copy, track, callback, **kwargs)
            return
        socket = self.socket
        if socket is None:
            raise OSError("Stream is closed")
        send_multipart(socket, msg, flags, copy)
        if self._recv_callback is not None and readable(socket):
            self.io_loop.add_callback(self._handle_events, socket, 0)

    def flush(self, flag: int = POLLIN | POLLOUT, limit: int | None = None) -> int:
        """Nothing to do for sends, which have all left (ipykernel asks after every request)."""
        if flag == POLLOUT and not self.sending():
            return 0
        return super().flush(flag, limit)

    def _handle_events(self, fd: Any, events: int) -> None:
        if self.sending():
            # Sends queued by the base class (with a callback) go its way.
            super()._handle_events(fd, events)  # type: ignore[no-untyped-call]
            return
        while (socket := self.socket) is not None and (callback := self._recv_callback):
            try:
                msg = recv_multipart_nowait(socket, copy=self._recv_copy)
            except zmq.Again:
                return
            self._run_callback(callback, msg)
