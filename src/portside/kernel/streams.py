"""How a kernel's output reaches IOPub: in order, without a thread round trip per flush, and
with what the process writes to its own stdout and stderr descriptors in the run that wrote it."""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import sys
import threading
from typing import Any

from ipykernel.iostream import IOPubThread, OutStream
from tornado.ioloop import IOLoop

#: Bytes taken from a descriptor's pipe per read.
PIPE_CHUNK = 65536


class OrderedIOPubThread(IOPubThread):
    """ipykernel's IOPub thread, sending at once what is sent from the thread itself.

    Upstream queues such a send behind everything already waiting, so output that a stream
    flushes on this thread could leave after an ``idle`` status queued meanwhile.  Sent at
    once, it leaves in the place of the flush that produced it.
    """

    def send_multipart(self, *args: Any, **kwargs: Any) -> None:
        if self.thread is not None and self.thread.ident == threading.get_ident():
            self._really_send(*args, **kwargs)  # type: ignore[no-untyped-call]
        else:
            super().send_multipart(*args, **kwargs)  # type: ignore[no-untyped-call]


class OrderedOutStream(OutStream):
    """ipykernel's output stream, whose ``flush`` hands the output to the IOPub thread and
    returns instead of waiting until that thread has sent it.

    ipykernel flushes both streams and waits, a round trip to the IOPub thread each, twice per
    execution: about a third of what a ``print(1)`` cost inside the kernel here.  With
    ``OrderedIOPubThread`` the wait buys nothing: every IOPub message (output, results, the
    closing ``idle``) leaves in the order it was handed to that thread, so output flushed
    before the ``idle`` still leaves before it, and the agent counts a run finished only once
    both its reply and that ``idle`` have arrived.

    Output written to the descriptors themselves (``os.system``, a C library, a child process)
    goes through a pipe, as upstream's, but the IOPub thread's event loop reads it, and each
    flush first takes what the pipe holds.  Upstream reads it on a thread per stream, which
    races the end of a run: what was still in the pipe when the run ended arrived after it, so
    the run lost it (the last ``os.write(2, ...)`` of 2 runs in 30, and all but the first
    thousand bytes of a 50 kB one).  That was also two threads more in every kernel.

    ipykernel flushes both streams twice at the end of every request, each flush a wake-up of
    the IOPub thread (a message on its event pipe and a turn of its loop, contending with the
    main thread for the GIL).  A stream with nothing buffered and nothing in its pipe has
    nothing to send, and a flush already queued takes everything written before it runs: a
    ``print(1)`` now wakes that thread for one flush instead of four.
    """

    #: Whether a flush handed to the IOPub thread has yet to start.
    _flush_queued = False
    #: Whether the IOPub thread is moving text from the pipe into the buffers.
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
        if self._drain_pipe() and not self._flush_pending:
            self._flush_pending = True
            self._io_loop.call_later(self.flush_interval, self._flush)

    def _drain_pipe(self) -> bool:
        """Everything in the pipe so far into this stream, on the IOPub thread, and on to the
        descriptor it replaced (the kernel's log) as upstream does; whether any text came.

        The text belongs to the request the kernel is handling, its global parent: this
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
                    # Every writer has gone, or the stream was closed.
                    self._io_loop.remove_handler(self._fid)
                    os.close(self._fid)
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

    def flush(self) -> None:
        pub = self.pub_thread
        thread = pub.thread if pub is not None else None
        if pub is None or thread is None or not thread.is_alive():
            # Stopped, or a forked child's copy (its parent's IOPub thread reads the pipe).
            self._flush()  # type: ignore[no-untyped-call]
        elif thread.ident != threading.get_ident():
            if not self._flush_queued and self._may_hold_output():
                self._flush_queued = True
                pub.schedule(self._drain_and_flush)
        else:
            self._drain_and_flush()

    def _may_hold_output(self) -> bool:
        """Whether this stream may have something to send, asked from another thread than
        the IOPub one.

        Text goes from the pipe, through the IOPub thread's hands, into the buffers; looked at
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
        # Cleared before the buffers are taken: what is written after this line is either in
        # them or finds no flush queued and queues its own.
        self._flush_queued = False
        self._drain_pipe()
        self._flush()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Gives the descriptor its own target back; the pipe is let go once drained."""
        if self._should_watch:
            self._should_watch = False
            os.dup2(self._original_stdstream_copy, self._original_stdstream_fd)
            os.close(self._original_stdstream_copy)
        self.pub_thread = None
