"""ZeroMQ sends and reads without pyzmq's flag enums, and the kernel's shell stream."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from tornado.ioloop import IOLoop

from portside.kernel.channels import ShellStream
from portside.zmqio import readable, recv_multipart_nowait, send_multipart


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    address = f"inproc://{uuid.uuid4().hex}"
    server = context.socket(zmq.ROUTER)
    server.bind(address)
    client = context.socket(zmq.DEALER)
    client.connect(address)
    yield server, client
    client.close(linger=0)
    server.close(linger=0)
    context.term()


def test_a_message_goes_whole_and_a_bad_part_sends_nothing(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    server, client = pair
    with pytest.raises(TypeError):
        send_multipart(client, [b"first", "not bytes", b"third"])
    send_multipart(client, [b"a", memoryview(b"b"), zmq.Frame(b"c")])
    assert server.poll(1000)
    # The failed message left nothing open: the next one arrives alone and whole.
    identity, *parts = recv_multipart_nowait(server)
    assert parts == [b"a", b"b", b"c"]
    with pytest.raises(zmq.Again):
        recv_multipart_nowait(server)
    send_multipart(server, [identity, b"reply"])
    assert client.poll(1000)
    frames = recv_multipart_nowait(client, copy=False)
    assert [bytes(frame.buffer) for frame in frames] == [b"reply"]


def test_readable_says_whether_a_message_waits(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    server, client = pair
    assert not readable(server)
    client.send(b"x")
    assert server.poll(1000)
    assert readable(server)
    recv_multipart_nowait(server)
    assert not readable(server)


async def test_every_request_is_answered_however_they_arrive(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    # ZeroMQ's descriptor signals only changes, and a reply sent while requests arrive can
    # take in that news: the stream must still read every request, bursts and singles alike.
    server, client = pair
    stream = ShellStream(server, IOLoop.current())
    answered: list[bytes] = []

    def answer(msg: list[Any]) -> None:
        identity, body = msg
        answered.append(bytes(body.buffer))
        stream.send_multipart([identity, b"re:" + bytes(body.buffer)])

    stream.on_recv(answer, copy=False)
    replies: list[bytes] = []
    for burst in (1, 50, 1, 1, 200, 3):
        start = len(replies)
        for i in range(burst):
            client.send(b"%d" % (start + i))
        while len(replies) < start + burst:
            assert await asyncio.to_thread(client.poll, 5000), f"{len(replies)} replies"
            while client.poll(0):
                replies.append(client.recv())
    assert replies == [b"re:%d" % i for i in range(len(replies))]
    assert answered == [b"%d" % i for i in range(len(replies))]
    assert stream.flush(zmq.POLLOUT) == 0
    stream.close()


async def test_a_request_that_arrives_while_a_reply_is_sent_is_read(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    # ipykernel answers in a task, outside the stream's reading.  A request that arrives just
    # before such a reply leaves has its news taken in by the send, and the descriptor stays
    # quiet: unless the stream looks again, that request waits forever.
    server, client = pair
    stream = ShellStream(server, IOLoop.current())
    second_may_go = threading.Event()

    async def answer(msg: list[Any]) -> None:
        identity, body = msg
        if bytes(body.buffer) == b"first":
            second_may_go.set()
            # Blocking, as a kernel busy with a cell does: the loop cannot see the arrival.
            time.sleep(0.2)
        stream.send_multipart([identity, b"re:" + bytes(body.buffer)])

    stream.on_recv(answer, copy=False)

    def talk() -> list[bytes]:
        client.send(b"first")
        second_may_go.wait(5)
        client.send(b"second")
        replies = []
        while len(replies) < 2 and client.poll(3000):
            replies.append(client.recv())
        return replies

    assert await asyncio.to_thread(talk) == [b"re:first", b"re:second"]
    stream.close()
