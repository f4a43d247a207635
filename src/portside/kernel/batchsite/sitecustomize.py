"""Loaded by Python programs that a batch run starts: lets ``input()`` reach the API client.

A batch program's stdin is not a terminal anyone types into.  When the program calls
``input()``, this hook asks the session's control server (through a Unix socket), which reports
``waiting-input`` to the client and hands back the text the client sends with ``mode=input``.
"""

import builtins
import os
import socket
import sys

_SOCKET = os.environ.get("PORTSIDE_INPUT_SOCKET", "")


def _input(prompt: object = "") -> str:
    if prompt:
        sys.stdout.write(str(prompt))
    sys.stdout.flush()
    sys.stderr.flush()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(_SOCKET)
        chunks: list[bytes] = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    return text


if _SOCKET and os.environ.get("_BACKEND_BATCH_MODE") == "1":
    builtins.input = _input
