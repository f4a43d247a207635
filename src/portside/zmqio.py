"""ZeroMQ multipart sends and reads with integer flags.

pyzmq's ``send_multipart`` and ``recv_multipart`` combine and test their flags as ``enum.Flag``
members for every frame: a jupyter message has seven, and every ``print(1)`` moves three
between a kernel and the server.  The same calls with plain integers cost a third as much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq
import zmq.backend

SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
_FRAME_TYPES = (bytes, zmq.Frame, memoryview)
#: pyzmq's ``Socket.send`` without the Python wrapper that handles DRAFT sockets' routing ids
#: and groups, which these messages have none of.
_send: Any = zmq.backend.Socket.send


def send_multipart(
    socket: zmq.Socket[Any], parts: Sequence[Any], flags: int = 0, copy: bool = True
) -> None:
    """``socket.send_multipart``, every part checked before the first is sent as pyzmq does:
    a part that failed halfway would leave a message open for the next send to continue."""
    for part in parts:
        if not isinstance(part, _FRAME_TYPES):
            memoryview(part)
    more = int(flags) | SNDMORE
    for part in parts[:-1]:
        _send(socket, part, more, copy=copy)
    _send(socket, parts[-1], int(flags), copy=copy)


def recv_multipart_nowait(socket: zmq.Socket[Any], copy: bool = True) -> list[Any]:
    """The next whole message (bytes, or ``zmq.Frame`` objects without ``copy``); raises
    ``zmq.Again`` if none is waiting."""
    recv = socket.recv
    parts = [recv(NOBLOCK, copy=copy)]
    while socket.getsockopt(RCVMORE):
        parts.append(recv(NOBLOCK, copy=copy))
    return parts


def readable(socket: zmq.Socket[Any]) -> bool:
    """Whether a message waits (which also takes in ZeroMQ's pending news of the socket)."""
    return bool(int(socket.getsockopt(EVENTS)) & POLLIN)
