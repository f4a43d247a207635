"""The kernel process: ipykernel in the main thread, the control server beside it.

Query-mode code runs in ipykernel, which the agent drives with jupyter_client over ZeroMQ (IPC
sockets in the run directory).  Everything else a session does (batch commands, files, the
terminal, apps) goes through the control server, a small asyncio loop on its own thread, so it
answers even while a cell is busy.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def run_kernel(
    kernel_id: str,
    workdir: str,
    rundir: str,
    connection: dict[str, Any],
    spec: dict[str, Any],
) -> None:
    # The kernel was forked from a process that read PYTHONPATH long ago; apply this session's.
    for path in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    connection_file = os.path.join(rundir, "kernel.json")
    with open(connection_file, "w") as f:
        json.dump(connection, f)
    from portside.kernel.control import ControlServer

    control = ControlServer(workdir, rundir, spec)
    control.start()
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(  # type: ignore[no-untyped-call]
        [
            "-f",
            connection_file,
            "--HistoryManager.enabled=False",
            "--IPKernelApp.quiet=True",
        ]
    )
    # Figures appear as images at the end of a cell, as Backend.AI's kernels show them; the
    # zygote already switched matplotlib to the inline backend.
    from matplotlib_inline.backend_inline import configure_inline_support

    configure_inline_support(app.shell, "module://matplotlib_inline.backend_inline")  # type: ignore[no-untyped-call]
    # The kernel's sockets are bound now; the agent may connect without retry delays.
    control.ready.set()
    app.start()  # type: ignore[no-untyped-call]
