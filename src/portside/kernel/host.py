"""The kernel process: ipykernel in the main thread, the control server beside it.

Query-mode code runs in ipykernel, which the agent drives with jupyter_client over ZeroMQ (IPC
sockets in the run directory).  Everything else a session does (batch commands, files, the
terminal, apps) goes through the control server, a small asyncio loop on its own thread, so it
answers even while a cell is busy.

Only the zygote imports this module (before it forks kernels), so importing ipykernel here costs
a kernel nothing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from ipykernel.kernelapp import IPKernelApp
from matplotlib_inline.backend_inline import configure_inline_support
from traitlets.config import Config

from portside.kernel.control import ControlServer
from portside.kernel.streams import OrderedIOPubThread


class KernelApp(IPKernelApp):
    """ipykernel's application, configured with a ``Config`` instead of a command line.

    Parsing even an empty command line builds an argparse parser over every configurable
    class: milliseconds of each kernel's start-up spent on nothing.
    """

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        self.argv = []
        self.extra_args = []

    def init_iopub(self, context: Any) -> None:
        super().init_iopub(context)  # type: ignore[no-untyped-call]
        # The thread is made and started there; its sends from itself go out at once from now.
        self.iopub_thread.__class__ = OrderedIOPubThread


def kernel_config(connection_file: str) -> Config:
    config = Config()
    config.IPKernelApp.connection_file = connection_file
    config.IPKernelApp.quiet = True
    config.HistoryManager.enabled = False
    config.IPKernelApp.outstream_class = "portside.kernel.streams.OrderedOutStream"
    # ipykernel sleeps 0.5 ms after each execution in case output is still on its way; the
    # agent waits for the kernel's "idle", which follows all of a run's output, instead.
    config.IPythonKernel._execute_sleep = 0.0
    return config


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
    control = ControlServer(workdir, rundir, spec)
    control.start()
    app = KernelApp.instance(config=kernel_config(connection_file))
    app.initialize([])  # type: ignore[no-untyped-call]
    # traitlets leaves the application's logger at DEBUG and filters in its handler, so every
    # debug line of every message was formatted into a record and thrown away.
    app.log.setLevel(logging.WARNING)
    # Figures appear as images at the end of a cell, as Backend.AI's kernels show them; the
    # zygote already switched matplotlib to the inline backend.
    configure_inline_support(app.shell, "module://matplotlib_inline.backend_inline")  # type: ignore[no-untyped-call]
    # The kernel's sockets are bound now; the agent may connect without retry delays.
    control.ready.set()
    app.start()  # type: ignore[no-untyped-call]
