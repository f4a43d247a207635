"""The kernel class sessions run (ipykernel's, built without walking the zygote's modules),
its cell transformations and its message decoding."""

from __future__ import annotations

import pytest
import zmq
from ipykernel.iostream import BackgroundSocket, IOPubThread
from IPython.core.inputtransformer2 import TransformerManager
from jupyter_client.session import Session

from portside.kernel.host import (
    CellTransformer,
    ForkedKernel,
    KernelSession,
    forked_kernel_fits,
    kernel_config,
)


def test_the_installed_ipykernel_gets_the_forked_kernel() -> None:
    # An ipykernel whose constructor differs from ForkedKernel's falls back to its own class,
    # which costs each session start the module walk again: this says when that happens.
    assert forked_kernel_fits()
    assert kernel_config().IPKernelApp.kernel_class is ForkedKernel


#: Plain code and each form of IPython's special syntax, alone and among other lines.
CELLS = [
    "print(1)",
    "for i in range(3):\n    print(i)\n",
    "if x != 1:\n    pass\n",
    "s = '%d' % 3\n",
    "print('why?')\n",
    "x = (1,\n2)\n",
    "x = %who_ls\n",
    "files = !ls\n",
    "!ls -l\n",
    "!!ls\n",
    "len?\n",
    "len??\n",
    "%time x = 1\n",
    "%%time\nx = 1\n",
    ",f a b\n",
    ";f a b\n",
    "/f a b\n",
    "def f():\n    /g 1\n",
    "  x = 1\n",
    ">>> x = 1\n",
    "In [1]: x = 2\n",
    "x = 1\nprint(x)\n%who\n",
    # Pasted sessions: prompts stripped and the rest dedented, but not inside strings.
    ">>> def f():\n...     return 1\n",
    "    >>> x = 1\n    >>> print(x)\n",
    'doc = """\n>>> x = 1\n"""\n',
    'x = 1\ns = """a\n   \nb"""\n',
    "print('>>>')\n",
    # Line starts that only str.splitlines sees, and escapes after them.
    "x = 1\r,f a\n",
    "x = 1\x0c/f a\n",
    "x = (1,\u20282)\n",
]


@pytest.mark.parametrize("cell", CELLS)
def test_a_cell_is_transformed_as_ipython_transforms_it(cell: str) -> None:
    # The kernel's transformer skips IPython's token search only where it could find nothing.
    assert CellTransformer().transform_cell(cell) == TransformerManager().transform_cell(cell)  # type: ignore[no-untyped-call]


def test_the_kernel_session_checks_signatures_and_refuses_replays() -> None:
    sender = Session(key=b"secret")
    wire = sender.serialize(sender.msg("execute_request", {"code": "print(1)"}))
    _, parts = sender.feed_identities(wire)
    receiver = KernelSession(key=b"secret")

    message = receiver.deserialize(parts)
    assert message["msg_type"] == "execute_request"
    assert message["content"] == {"code": "print(1)"}
    # Dates stay as they came: the reply's parent header sends them back unchanged.
    assert isinstance(message["header"]["date"], str)

    with pytest.raises(ValueError, match="Duplicate Signature"):
        receiver.deserialize(parts)
    tampered = [*parts[:4], b'{"code": "import os"}']
    with pytest.raises(ValueError, match="Invalid Signature"):
        KernelSession(key=b"secret").deserialize(tampered)
    with pytest.raises(ValueError, match="Invalid Signature"):
        KernelSession(key=b"other").deserialize(parts)


def test_the_kernel_session_counts_each_requests_iopub_messages() -> None:
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.bind("inproc://iopub-count")
    try:
        pub = IOPubThread(socket)  # not started: each message is sent at once
        session = KernelSession(key=b"secret")
        request = session.msg("execute_request", {"code": "print(1)"})
        other = session.msg("execute_request", {"code": "print(2)"})

        session.send(pub, "stream", {"name": "stdout", "text": "1\n"}, parent=request)
        session.send(BackgroundSocket(pub), "error", {"ename": "E"}, request["header"])
        # A message built beforehand (a display, a result) carries its own parent.
        display = session.msg("display_data", {"data": {}}, parent=request)
        session.send(BackgroundSocket(pub), display)
        session.send(pub, "stream", {"name": "stdout", "text": "2\n"}, parent=other)
        # The reply goes out on the shell channel: not one of the IOPub messages.
        session.send(None, "execute_reply", {"status": "ok"}, parent=request)

        assert session.take_published(request["header"]["msg_id"]) == 3
        # Taken once; the earlier request's count went with it.
        assert session.take_published(request["header"]["msg_id"]) == 0
        assert session.take_published(other["header"]["msg_id"]) == 0
    finally:
        context.destroy(linger=0)  # the thread's own event pipe included
