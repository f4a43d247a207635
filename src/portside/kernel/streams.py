"""How a kernel's output reaches IOPub: in order, without a thread round trip per flush, and
with what the process writes to its own stdout and stderr descriptors in the run that wrote it."""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

from ipykernel.iostream import IOPubThread, OutStream
from tornado.ioloop import IOLoop

from portside.zmqio import send_multipart

#: Bytes taken from a descriptor's pipe per read.
PIPE_CHUNK = 65536


class OrderedIOPubThread(IOPubThread):
    """ipykernel's IOPub thread, through which every IOPub message still leaves in the order it
    was handed over, but which a thread sends through itself when nothing waits before it.

    Upstream hands every message from other threads to the IOPub thread, which must then wake,
    take the GIL from the thread that handed it over, and send: a request's output and its
    ``idle`` status waited for the main thread to finish the request before they could leave.
    Here a message leaves from the thread that hands it over when no scheduled call is waiting
    (one might send something that was handed over earlier); the IOPub thread runs its
    scheduled calls, and everything that uses the socket, under the same lock.

    Upstream wakes the thread for each scheduled call with a message on a ZeroMQ pipe of the
    calling thread's, read through a ``ZMQStream``; the event loop's own thread-safe wake-up
    does the same with a byte on its self-pipe.
    """

    send_lock: threading.RLock

    @classmethod
    def adopt(cls, thread: IOPubThread) -> OrderedIOPubThread:
        """Makes ipykernel's running IOPub thread one of these, before anything is published."""
        thread.__class__ = cls
        ordered = cast(OrderedIOPubThread, thread)
        ordered.send_lock = threading.RLock()
        # Until this call has run, the queue is not empty, so nothing is sent directly.
        ordered.schedule(ordered._guard_subscriptions)
        return ordered

    def _guard_subscriptions(self) -> None:
        """Reads the XPUB socket's subscriptions under the lock, since other threads now send
        on that socket (ZeroMQ sockets are safe to share only one thread at a time)."""
        stream = getattr(self, "_xpub_stream", None)
        if stream is None:
            return
        handle = stream._handle_events

        def guarded(fd: Any, events: int) -> None:
            with self.send_lock:
                handle(fd, events)

        # Also where the stream schedules itself again (``_update_handler``).
        stream._handle_events = guarded
        self.io_loop.remove_handler(stream.socket)
        self.io_loop.add_handler(stream.socket, guarded, self.io_loop.READ)

    def schedule(self, f: Callable[[], Any]) -> None:
        if not self.thread.is_alive():
            f()
            return
        self._events.append(f)
        # Once the thread's loop has closed (the kernel is exiting), what is queued stays
        # unsent, as upstream's pipe message would stay unread.
        with contextlib.suppress(RuntimeError):
            self.io_loop.asyncio_loop.call_soon_threadsafe(self._handle_event, None)  # type: ignore[attr-defined]

    def _handle_event(self, msg: Any) -> None:
        with self.send_lock:
            super()._handle_event(msg)  # type: ignore[no-untyped-call]

    def send_multipart(self, *args: Any, **kwargs: Any) -> None:
        # A process forked from the kernel has no IOPub thread, and its copy of the lock may
        # have been held when it was forked: upstream's way, through the parent's pipe.
        if self._is_master_process():  # type: ignore[no-untyped-call]
            with self.send_lock:
                if self.may_send_now() or self.thread.ident == threading.get_ident():
                    self._really_send(*args, **kwargs)
                    return
        super().send_multipart(*args, **kwargs)  # type: ignore[no-untyped-call]

    def may_send_now(self) -> bool:
        """Whether a message handed over now would leave at once (asked under the lock)."""
        return not self._events

    def _really_send(
        self, msg: Sequence[Any], *args: Any, copy: bool = True, **kwargs: Any
    ) -> None:
        socket = self.socket
        if socket is None or args or kwargs or not self._is_master_process():  # type: ignore[no-untyped-call]
            super()._really_send(msg, *args, copy=copy, **kwargs)  # type: ignore[no-untyped-call]
            return
        send_multipart(socket, msg, copy=copy)


class OrderedOutStream(OutStream):
    """ipykernel's output stream, whose ``flush`` sends the output itself, or hands it to the
    IOPub thread, and never waits for that thread.

    ipykernel flushes both streams and waits, a round trip to the IOPub thread each, twice per
    execution: about a third of what a ``print(1)`` cost inside the kernel here.  With
    ``OrderedIOPubThread`` the wait buys nothing: every IOPub message (output, results, the
    closing ``idle``) leaves in the order it was handed over, so output flushed before the
    ``idle`` still leaves before it, and the agent counts a run finished only once its reply
    and either that ``idle`` or the output the reply counts have arrived (a reply counts only
    when nothing waits in this queue: what it counts has left).  When nothing waits in the
    IOPub thread's queue, the flushing thread sends the output itself, under that thread's
    lock; taking what is buffered and sending it is one step under the lock, wherever a flush
    runs.

    Output written to the descriptors themselves (``os.system``, a C library, a child process)
    goes through a pipe, as upstream's, but the IOPub thread's event loop reads it, and each
    flush first takes what the pipe holds.  Upstream reads it on a thread per stream, which
    races the end of a run: what was still in the pipe when the run ended arrived after it, so
    the run lost it (the last ``os.write(2, ...)`` of 2 runs in 30, and all but the first
    thousand bytes of a 50 kB one).  That was also two threads more in every kernel.

    ipykernel flushes both streams twice at the end of every request.  A stream with nothing
    buffered and nothing in its pipe has nothing to send, and a flush already queued takes
    everything written before it runs: a ``print(1)`` sends one message, from the main thread,
    and does not wake the IOPub thread at all unless a timed flush must be armed.
    """

    #: Whether a flush handed to the IOPub thread has yet to start.
    _flush_queued = False
    #: Whether a timed flush is armed on the IOPub thread's loop.
    _timer_armed = False
    #: Whether text is being moved from the pipe into the buffers.
    _draining = False

    def _setup_stream_redirects(self, name: str) -> None:
        read_fd, write_fd = os.pipe()
        fd = self._original_stdstream_fd = getattr(sys, name).fileno()
        self._original_stdstream_copy = os.dup(fd)
        os.dup2(write_fd, fd)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self._fid = read_fd
        self._exc = None
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        loop = self.pub_thread.io_loop
        # The handler is added on the loop's own thread, which is already running.
        loop.add_callback(loop.add_handler, read_fd, self._on_pipe, IOLoop.READ)

    def _on_pipe(self, fd: int, events: int) -> None:
        # Batched as upstream batches writes: one message per flush interval at most.
        with self._send_lock():
            if self._drain_pipe():
                self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Upstream's timed flush after a write, armed at most once per flush interval, and
        without a place in the IOPub thread's queue.

        Upstream arms one after the first write following every flush, and a request's end
        flushes: a wake-up of the IOPub thread per request to arm it and another when it fires,
        both taking the GIL from the main thread.  Here a timer stays armed until it fires,
        whatever flushes meanwhile, and arming it sends nothing, so it need not wait its turn
        behind the calls queued before it (which would keep other threads from sending at
        once until the IOPub thread had run them).
        """
        if self._timer_armed:
            return
        self._timer_armed = True
        loop = self._io_loop
        loop.asyncio_loop.call_soon_threadsafe(
            loop.call_later, self.flush_interval, self._timed_flush
        )

    def _timed_flush(self) -> None:
        # Disarmed before the buffers are taken: a write after this line either is in them or
        # arms the next timer.
        self._timer_armed = False
        self._flush()

    def _flush(self) -> None:
        """Takes what is buffered and sends it, as one step under the IOPub lock: two flushes
        on two threads could otherwise send what they took in the other order."""
        with self._send_lock():
            super()._flush()  # type: ignore[no-untyped-call]

    def _drain_pipe(self) -> bool:
        """Everything in the pipe so far into this stream, and on to the descriptor it replaced
        (the kernel's log) as upstream does; whether any text came.  Under the IOPub lock, on
        whichever thread flushes or on the IOPub thread when the pipe has news.

        The text belongs to the request the kernel is handling, its global parent: the IOPub
        thread's context holds the stream's initial, empty one.
        """
        came = False
        self._draining = True
        try:
            while self._fid is not None:
                try:
                    data = os.read(self._fid, PIPE_CHUNK)
                except BlockingIOError:
                    break
                if not data or self.pub_thread is None:
                    # Every writer has gone, or the stream was closed.  The pipe is let go
                    # on the IOPub thread, whose loop watches it.
                    self._io_loop.add_callback(self._let_go_of_pipe, self._fid)
                    self._fid = None
                    break
                # The log's copy is a courtesy: a full log must not cost the run its output.
                with contextlib.suppress(OSError):
                    os.write(self._original_stdstream_copy, data)
                if text := self._decoder.decode(data):
                    with self._buffer_lock:
                        self._buffers[frozenset(self._parent_header_global.items())].write(text)
                    came = True
        finally:
            self._draining = False
        return came

    def _send_lock(self) -> contextlib.AbstractContextManager[Any]:
        """The IOPub thread's lock, in the kernel's own process (a process forked from it may
        hold a copy taken while the lock was held, and sends through the parent anyway)."""
        pub = self.pub_thread
        if pub is None or not self._is_master_process():  # type: ignore[no-untyped-call]
            return contextlib.nullcontext()
        lock: threading.RLock = pub.send_lock
        return lock

    def _let_go_of_pipe(self, fid: int) -> None:
        self._io_loop.remove_handler(fid)
        os.close(fid)

    def flush(self) -> None:
        pub = self.pub_thread
        thread = pub.thread if pub is not None else None
        if pub is None or thread is None or not thread.is_alive():
            # Stopped, or a forked child's copy (its parent's IOPub thread reads the pipe).
            super()._flush()  # type: ignore[no-untyped-call]
        elif thread.ident != threading.get_ident():
            if not self._may_hold_output():
                return
            with pub.send_lock:
                if pub.may_send_now():
                    self._drain_and_flush()
                    return
            if not self._flush_queued:
                self._flush_queued = True
                pub.schedule(self._drain_and_flush)
        else:
            self._drain_and_flush()

    def _may_hold_output(self) -> bool:
        """Whether this stream may have something to send, asked from another thread than
        the IOPub one.

        Text goes from the pipe, through a draining thread's hands, into the buffers; looked at
        in that order, text on its way is seen in one of the three places.  (The other way
        round, text read from the pipe after the buffers were looked at, but still on its way
        when the pipe was, was missed: a run's last write to its descriptors arrived after
        the run had ended.)
        """
        return self._pipe_holds_data() or self._draining or bool(self._buffers)

    def _pipe_holds_data(self) -> bool:
        fid = self._fid
        if fid is None:
            return False
        try:
            return bool(select.select([fid], [], [], 0)[0])
        except (OSError, ValueError):
            # Closed meanwhile: the IOPub thread's flush finds out what is left.
            return True

    def _drain_and_flush(self) -> None:
        with self._send_lock():
            # Cleared before the buffers are taken: what is written after this line is either
            # in them or finds no flush queued and queues its own.
            self._flush_queued = False
            self._drain_pipe()
            self._flush()

    def close(self) -> None:
        """Gives the descriptor its own target back; the pipe is let go once drained."""
        if self._should_watch:
            self._should_watch = False
            os.dup2(self._original_stdstream_copy, self._original_stdstream_fd)
            os.close(self._original_stdstream_copy)
        self.pub_thread = None
