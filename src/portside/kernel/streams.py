"""How a kernel's output reaches IOPub: in order, without a thread round trip per flush."""

from __future__ import annotations

import threading
from typing import Any

from ipykernel.iostream import IOPubThread, OutStream


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
    """

    def flush(self) -> None:
        pub = self.pub_thread
        thread = pub.thread if pub is not None else None
        if thread is not None and thread.is_alive() and thread.ident != threading.get_ident():
            pub.schedule(self._flush)
        else:
            self._flush()  # type: ignore[no-untyped-call]
