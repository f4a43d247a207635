"""The kernel process: ipykernel in the main thread, the control server beside it.

Query-mode code runs in ipykernel, which the agent drives with jupyter_client over ZeroMQ (IPC
sockets in the run directory).  Everything else a session does (batch commands, files, the
terminal, apps) goes through the control server, which runs on ipykernel's control thread, so
it answers even while a cell is busy.

Only the zygote imports this module (before it forks kernels), so importing ipykernel here costs
a kernel nothing.
"""

from __future__ import annotations

import fnmatch
import functools
import hmac
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

import comm
import zmq
from ipykernel import ipkernel, kernelbase
from ipykernel.control import ControlThread
from ipykernel.iostream import BackgroundSocket, IOPubThread
from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp
from ipykernel.kernelbase import Kernel as KernelBase
from ipykernel.zmqshell import ZMQInteractiveShell
from IPython.core.compilerop import CachingCompiler
from IPython.core.inputtransformer2 import (
    EscapedCommand,
    HelpEnd,
    MagicAssign,
    SystemAssign,
    TransformerManager,
    classic_prompt,
)
from IPython.paths import get_ipython_dir
from jupyter_client.adapter import adapt
from jupyter_client.session import Session, extract_header
from matplotlib_inline.backend_inline import configure_inline_support
from traitlets import Type
from traitlets.config import Config

from portside.kernel import IOPUB_COUNT_KEY, READY_FIFO
from portside.kernel.channels import ShellStream
from portside.kernel.control import ControlServer
from portside.kernel.streams import OrderedIOPubThread

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
#: What IPython looks for in a profile's start-up directory (``InteractiveShellApp``).
STARTUP_FILE_PATTERNS = ("*.py", "*.ipy")
#: IPython's own searches for its special syntax, in its order.
DEFAULT_TOKEN_TRANSFORMERS = [MagicAssign, SystemAssign, EscapedCommand, HelpEnd]
#: Escapes that mean something only at the start of a line (``,f a b``, ``;f a b``, ``/f a``).
LINE_START_ESCAPES = frozenset(",;/")


class CellTransformer(TransformerManager):
    """IPython's cell transformations, which skip two searches that find nothing in most cells.

    The search for IPython's special syntax (``%magic``, ``!cmd``, ``obj?``, ``a = %magic``,
    ``,f a``) tokenizes the cell with Python's ``tokenize``, a third of what a ``print(1)``'s
    transformation cost.  Each form starts with one of ``!%?`` somewhere in the cell, or with
    one of ``,;/`` at the start of a line: a cell with neither gets back what it was given.
    Added transformers (an extension's) are searched for as upstream does.

    The stripping of a pasted ``>>>`` session first maps which lines are inside triple-quoted
    strings, line by line: 0.1 ms for a cell of a hundred lines, every run.  It changes nothing
    in a cell without a line that starts with ``>>>`` (after blanks), so a cell without
    ``>>>`` anywhere is left as it is.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cleanup_transforms = [
            _strip_doctest_prompts if transform is classic_prompt else transform
            for transform in self.cleanup_transforms
        ]

    def do_token_transforms(self, lines: list[str]) -> list[str]:
        if self.token_transformers == DEFAULT_TOKEN_TRANSFORMERS and not _may_hold_escapes(lines):
            return lines
        transformed: list[str] = super().do_token_transforms(lines)  # type: ignore[no-untyped-call]
        return transformed


def _strip_doctest_prompts(lines: list[str]) -> list[str]:
    if any(">>>" in line for line in lines):
        stripped: list[str] = classic_prompt(lines)
        return stripped
    return lines


def _may_hold_escapes(lines: list[str]) -> bool:
    cell = "".join(lines)
    if "!" in cell or "%" in cell or "?" in cell:
        return True
    return any(line.lstrip()[:1] in LINE_START_ESCAPES for line in lines)


class KernelShell(ZMQInteractiveShell):
    """ipykernel's shell, which transforms each cell and checks whether it awaits only once.

    ipykernel's ``do_execute`` transforms a cell (IPython's magics and escapes) and compiles it
    to learn whether it awaits; a cell that does not await then goes to ``run_cell``, which
    does both again: four compilations of every cell instead of two, a tenth of a kernel's
    CPU per ``print(1)``.  The second asking gets the answer to the first, which is kept for
    one asking and only during one request: nothing runs between the two that could change
    it (the transformations of a single line look at the user's namespace).
    """

    _last_transform: tuple[str, str] | None = None
    _last_async_check: tuple[str, bool] | None = None

    def forget_transforms(self) -> None:
        self._last_transform = self._last_async_check = None

    def transform_cell(self, raw_cell: str) -> str:
        last, self._last_transform = self._last_transform, None
        if last is not None and last[0] is raw_cell:
            return last[1]
        cell: str = super().transform_cell(raw_cell)  # type: ignore[no-untyped-call]
        self._last_transform = (raw_cell, cell)
        return cell

    def should_run_async(
        self,
        raw_cell: str,
        *,
        transformed_cell: str | None = None,
        preprocessing_exc_tuple: Any = None,
    ) -> bool:
        last, self._last_async_check = self._last_async_check, None
        if last is not None and last[0] is transformed_cell:
            return last[1]
        if transformed_cell is not None and not (
            "await" in transformed_cell or "async" in transformed_cell
        ):
            # Only ``await``, ``async for`` and ``async with`` make a cell need a coroutine
            # runner; IPython compiles the whole cell to find one.
            return False
        result = super().should_run_async(
            raw_cell,
            transformed_cell=transformed_cell,
            preprocessing_exc_tuple=preprocessing_exc_tuple,
        )
        if transformed_cell is not None and preprocessing_exc_tuple is None:
            self._last_async_check = (transformed_cell, result)
        return result


@functools.cache
def _function_accepts(function: Any, param_names: tuple[str, ...]) -> dict[str, bool]:
    accepts: dict[str, bool] = kernelbase._accepts_parameters(function, list(param_names))  # type: ignore[no-untyped-call]
    return accepts


def _accepts_parameters(method: Any, param_names: list[str]) -> dict[str, bool]:
    """ipykernel's check of which keyword arguments the shell's ``run_cell_async`` takes, asked
    once per function instead of on every request.

    ``inspect`` builds a bound method's signature anew at each asking (a new ``Signature``
    whose parameters it validates): some 30 microseconds of every ``print(1)``.  The answer
    is the function's, whatever it is bound to; ``self`` is not one of the names asked about.
    """
    return dict(_function_accepts(getattr(method, "__func__", method), tuple(param_names)))


ipkernel._accepts_parameters = _accepts_parameters  # type: ignore[attr-defined]


class KernelSession(Session):
    """jupyter_client's ``Session``, which leaves the dates in a request's headers as the
    strings they came as, and counts each request's IOPub messages.

    ``Session.deserialize`` looks for dates in every string of a request's header and parent
    header and parses each with dateutil: two thirds of what decoding an ``execute_request``
    cost.  Nothing in ipykernel or IPython reads them; a reply names its request by the
    request's header, which goes back out as it came.  The rest is upstream's: the signature
    checked, replays refused, the protocol version adapted.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._count_lock = threading.Lock()
        #: IOPub messages sent so far, by the id of the request they belong to.
        self._published: dict[str, int] = {}

    def deserialize(
        self, msg_list: list[Any], content: bool = True, copy: bool = True
    ) -> dict[str, Any]:
        if not copy:
            msg_list = [bytes(part.bytes) for part in msg_list[:5]] + list(msg_list[5:])
        if self.auth is not None:
            signature = msg_list[0]
            if not signature:
                raise ValueError("Unsigned Message")
            if signature in self.digest_history:
                raise ValueError(f"Duplicate Signature: {signature!r}")
            if content:
                self._add_digest(signature)
            if not hmac.compare_digest(signature, self.sign(msg_list[1:5])):
                raise ValueError(f"Invalid Signature: {signature!r}")
        if len(msg_list) < 5:
            raise TypeError("malformed message, must have at least 5 elements")
        header = self.unpack(msg_list[1])
        buffers = [memoryview(part) for part in msg_list[5:]]
        if buffers and buffers[0].shape is None:
            # pyzmq's frames viewed without a shape (as upstream works around, pyzmq #646).
            buffers = [memoryview(bytes(part.bytes)) for part in msg_list[5:]]
        message = {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": self.unpack(msg_list[2]),
            "metadata": self.unpack(msg_list[3]),
            "content": self.unpack(msg_list[4]) if content else msg_list[4],
            "buffers": buffers,
        }
        adapted: dict[str, Any] = adapt(message)
        return adapted

    def send(self, stream: Any, msg_or_type: Any, *args: Any, **kwargs: Any) -> Any:
        """Upstream's ``send``; an IOPub message is counted for its request before it goes."""
        if isinstance(stream, IOPUB_STREAMS):
            if isinstance(msg_or_type, dict):
                # A message built beforehand (displays, results) carries its parent.
                parent = msg_or_type.get("parent_header")
            else:
                parent = kwargs.get("parent", args[1] if len(args) > 1 else None)
            msg_id = extract_header(parent).get("msg_id") if parent else None
            if msg_id:
                with self._count_lock:
                    self._published[msg_id] = self._published.get(msg_id, 0) + 1
        return super().send(stream, msg_or_type, *args, **kwargs)

    def take_published(self, msg_id: str) -> int:
        """How many IOPub messages the request has published.  A kernel runs one request at
        a time, so the counts of earlier ones (output their threads sent after the reply) are
        forgotten with it."""
        with self._count_lock:
            count = self._published.pop(msg_id, 0)
            self._published.clear()
            return count


#: What an IOPub message is sent through: the IOPub thread, or its socket's stand-in.
IOPUB_STREAMS = (IOPubThread, BackgroundSocket)


#: The IPython shell the zygote built for its kernels (``prepare_shell``), or None.
_prepared_shell: KernelShell | None = None


def prepare_shell() -> None:
    """Builds, in the zygote, the IPython shell each forked kernel then adopts.

    Building a shell (namespaces, magics, formatters, completer, traceback handlers, the inline
    matplotlib hook-up) is some forty traitlets objects and half of a kernel's start-up CPU
    when each kernel does it after the fork, where every object it makes is a fresh page and
    every shared one it touches a copied one.  Built once before any fork, it costs each kernel
    nothing but the pages it later writes.  Nothing in it belongs to a session: the sockets,
    the session key and the kernel object are attached in the child (``ForkedKernel``), and
    what the shell notes of its surroundings (working directory, IPython directory) is
    rewritten there.  Only with the kernel class that adopts it (``forked_kernel_fits``).
    """
    global _prepared_shell
    if not forked_kernel_fits():
        return
    # IPython's cell compiler, as ``ForkedKernel`` configures it (see there).
    shell = KernelShell.instance(config=kernel_config(), compiler_class=CachingCompiler)
    shell.input_transformer_manager = CellTransformer()
    # Figures appear as images at the end of a cell, as Backend.AI's kernels show them.
    configure_inline_support(shell, INLINE_BACKEND)  # type: ignore[no-untyped-call]
    # IPython's own extensions (%store): the kernel's start finds them loaded.  Their state
    # (%store's database) is only opened on first use, in the kernel's profile directory.
    extensions: list[str] = IPKernelApp.class_traits()["default_extensions"].default() or []
    for extension in extensions:
        shell.extension_manager.load_extension(extension)  # type: ignore[union-attr]
    # The patterns a kernel's start and first cell would otherwise each compile for
    # themselves: the glob for start-up files and the cell transformers' expressions (both go
    # through caches that the fork shares).
    for pattern in STARTUP_FILE_PATTERNS:
        fnmatch.filter((), pattern)
    shell.transform_cell("print(1)\n")
    shell.forget_transforms()
    # What ``%reset --aggressive`` keeps: the modules a kernel starts with, all imported by now
    # (``KernelApp.init_code`` leaves this snapshot in place).
    shell._sys_modules_keys = set(sys.modules)
    _prepared_shell = shell


def prepare_app() -> None:
    """Builds, in the zygote, the application object each forked kernel then initializes.

    Building it is a hundred traits and the configuration loaded into them: 2 ms of each
    kernel's start when done after the fork.  Nothing in it belongs to a session yet: the
    kernel gives it its connection file (``run_kernel``), and everything ``initialize``
    makes (sockets, threads, the kernel object, its session key) is made there.
    """
    KernelApp.instance(config=kernel_config())


def _adopt_prepared_shell(kernel: ForkedKernel) -> KernelShell | None:
    shell = _prepared_shell
    if shell is None:
        return None
    shell.parent = kernel
    shell.kernel = kernel
    shell.profile_dir = kernel.profile_dir
    shell.ipython_dir = get_ipython_dir()
    # The zygote's working directory, which a session must not see, is where the shell
    # thought it started.
    shell.starting_dir = os.getcwd()
    shell.history_manager.dir_hist[:] = [Path.cwd()]  # type: ignore[union-attr]
    return shell


class MainThreadShell:
    """Stands where ipykernel 7 keeps its shell channel thread, for a ``ForkedKernel``: the
    shell socket is then read on the main thread, as in ipykernel 6.

    That thread routes each shell message to the main thread or to a subshell's thread (JEP 91)
    and each reply back: two thread hand-offs per request, and a thread with an event loop of
    its own in every kernel.  Nothing opens a subshell here (the agent is a kernel's only
    client).  Without the thread a ``print(1)`` sent straight to a kernel took 1.8-2.0 ms
    instead of 2.3, and each session start 2-6 ms less of the machine's CPU (bench/README.md).
    ipykernel takes the direct path wherever this object is false, and reads
    ``parent_thread`` to know which thread a cell's interrupt lands on.
    """

    def __init__(self) -> None:
        self.parent_thread = threading.current_thread()

    def __bool__(self) -> bool:
        return False


class ForkedKernel(IPythonKernel):
    """ipykernel's kernel without Jupyter's debugger, which costs a forked kernel dearly.

    ``IPythonKernel.__init__`` lists the file of every loaded module for the debugger.  In a
    kernel forked from the zygote that walk writes to each of the zygote's module objects
    (their reference counts) and so copies some 800 shared pages: a fifth of a new kernel's
    page faults, about 3 MiB and several milliseconds of CPU per session.  debugpy itself is
    130 modules and 8 MiB in the zygote, which every fork copies page tables for.  Nothing can
    use the debugger: a kernel's sockets are the agent's alone, and in-session Jupyter apps run
    kernels of their own.  So the zygote keeps debugpy out (``keep_debugpy_out``), and this
    class is ipykernel 7's kernel with the debugger's parts left out of its constructor and
    ``start``, and with the shell the zygote prepared.

    Its cells are compiled by IPython's own ``CachingCompiler``, not ipykernel's, which names
    each cell's file after a pure-Python hash of its code so that the debugger can find it:
    0.3 ms for every run of a 2 kB cell, 3 ms for a 20 kB one.  Without a debugger only
    tracebacks and ``inspect`` read the name, through ``linecache``, and find the cell with
    either compiler (a traceback reads "Cell In[n]").
    """

    compiler_class = Type(CachingCompiler, klass=CachingCompiler)  # type: ignore[assignment]

    def __init__(self, **kwargs: Any) -> None:
        KernelBase.__init__(self, **kwargs)  # type: ignore[no-untyped-call]
        self.shell = _adopt_prepared_shell(self) or self.shell_class.instance(
            parent=self,
            profile_dir=self.profile_dir,
            user_module=self.user_module,
            user_ns=self.user_ns,
            kernel=self,
            compiler_class=self.compiler_class,
        )
        self.shell.displayhook.session = self.session  # type: ignore[attr-defined]
        if session_name := os.environ.get("JPY_SESSION_NAME"):
            self.shell.user_ns["__session__"] = session_name
        self.shell.displayhook.pub_socket = self.iopub_socket  # type: ignore[attr-defined]
        self.shell.displayhook.topic = self._topic("execute_result")  # type: ignore[attr-defined, no-untyped-call]
        self.shell.display_pub.session = self.session  # type: ignore[attr-defined]
        self.shell.display_pub.pub_socket = self.iopub_socket  # type: ignore[attr-defined]
        self.comm_manager = comm.get_comm_manager()
        self.shell.configurables.append(self.comm_manager)  # type: ignore[arg-type]
        for msg_type in ("comm_open", "comm_msg", "comm_close"):
            self.shell_handlers[msg_type] = getattr(self.comm_manager, msg_type)

    def start(self) -> None:
        if self.shell:
            self.shell.exit_now = False
        KernelBase.start(self)  # type: ignore[no-untyped-call]

    async def do_execute(self, code: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if isinstance(self.shell, KernelShell):
            self.shell.forget_transforms()
        reply: dict[str, Any] = await super().do_execute(code, *args, **kwargs)  # type: ignore[no-untyped-call]
        return reply

    @property
    def _supports_kernel_subshells(self) -> bool:
        """False with ``MainThreadShell``: kernel_info lists no subshells, and a request to
        create one gets ipykernel's own "not supported"."""
        return bool(self.shell_channel_thread)

    # Only the agent listens on a forked kernel's IOPub, and it needs none of the three
    # messages below: its input is what the agent sent, and a run ends once its reply and the
    # output the reply says came before it have arrived.  Each one left out is a message fewer
    # to build, hand to the IOPub thread, send, receive and decode per request: 0.4-0.9 ms of
    # the kernel's CPU per ``print(1)`` for the first two, about a tenth of the kernel's and
    # the server's CPU the third.

    def _publish_execute_input(self, code: str, parent: Any, execution_count: int) -> None:
        """Not published (see above)."""

    def finish_metadata(
        self, parent: dict[str, Any], metadata: dict[str, Any], reply_content: dict[str, Any]
    ) -> dict[str, Any]:
        """Upstream's, plus how many IOPub messages the request published, when all of them
        have left: then the reply tells the agent what to wait for, and no ``idle`` follows.

        While the IOPub thread still has work queued (a flush handed over, not yet run) the
        count could miss what that work publishes, so the reply says nothing and ``idle``,
        queued behind that work, closes the run as upstream's does.
        """
        metadata = super().finish_metadata(parent, metadata, reply_content)  # type: ignore[no-untyped-call]
        pub = self.iopub_thread
        session = self.session
        header = parent["header"]
        if (
            header["msg_type"] == "execute_request"
            and isinstance(pub, OrderedIOPubThread)
            and isinstance(session, KernelSession)
        ):
            with pub.send_lock:
                count = session.take_published(header["msg_id"])
                if pub.may_send_now():
                    metadata[IOPUB_COUNT_KEY] = count
                    self._counted = header["msg_id"]
        return metadata

    #: The request whose reply carried its IOPub count, until its ``idle`` is due.
    _counted: str | None = None

    def _publish_status(self, status: str, channel: str, parent: Any = None) -> None:
        """Neither ``busy``, which always precedes a request's output anyway, nor ``idle`` after
        a reply that carried its IOPub count."""
        if status == "busy":
            return
        if status == "idle" and self._counted is not None:
            counted, self._counted = self._counted, None
            if extract_header(parent or self.get_parent(channel)).get("msg_id") == counted:  # type: ignore[no-untyped-call]
                return
        super()._publish_status(status, channel, parent)  # type: ignore[no-untyped-call]


def forked_kernel_fits() -> bool:
    """Whether ForkedKernel matches the installed ipykernel (7.x, whose constructor walks the
    modules for the debugger); any other version keeps its own kernel class, debugger and all."""
    return "_kernel_modules" in IPythonKernel.__init__.__code__.co_names and hasattr(
        IPythonKernel, "poll_stopped_queue"
    )


def keep_debugpy_out() -> None:
    """Makes ``import debugpy`` fail in the zygote, and so in every kernel, when kernels are
    ForkedKernels (which have no debugger); ipykernel then reports no debugger support."""
    if forked_kernel_fits():
        sys.modules["debugpy"] = None  # type: ignore[assignment]


class KernelApp(IPKernelApp):
    """ipykernel's application, configured with a ``Config`` instead of a command line.

    Parsing even an empty command line builds an argparse parser over every configurable
    class: milliseconds of each kernel's start-up spent on nothing.
    """

    def _session_default(self) -> Session:
        return KernelSession(parent=self)

    def parse_command_line(self, argv: list[str] | None = None) -> None:
        self.argv = []
        self.extra_args = []

    def load_config_file(self, *args: Any, **kwargs: Any) -> None:
        """No configuration files: a kernel's IPython directory is in its sandbox's own new
        ``/tmp``, so the search for them (a dozen paths) would find nothing."""

    def _configure_logging(self) -> None:
        """The application's logger as traitlets' default configuration leaves it (one handler
        on stderr, at the application's ``log_level``), but at warning level itself.

        traitlets builds that with ``logging.config.dictConfig``, some forty functions each
        kernel would run for the first time (every one a copied page of the zygote's), and
        leaves the logger at DEBUG and filters in the handler: every debug line of the
        kernel's start and of every message it handles was made into a record and dropped.
        """
        logger = logging.getLogger(type(self).__name__)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(self._log_formatter_cls(self.log_format, self.log_datefmt))
            logger.addHandler(handler)
        logger.handlers[0].setLevel(self.log_level)  # type: ignore[arg-type]
        logger.setLevel(logging.WARNING)
        self._logging_configured = True

    def init_config_files(self) -> None:
        """Nothing to stage into the profile: no configuration file is read (above)."""

    def init_code(self) -> None:
        """IPython's start-up code (startup files, ``PYTHONSTARTUP``, exec lines), without
        retaking the snapshot of ``sys.modules`` when the shell is the zygote's.

        Taking it touches every module's name, which in a forked kernel copies a couple of
        hundred of the zygote's pages; the zygote took it when it built the shell
        (``prepare_shell``), after importing everything a kernel starts with.
        """
        shell = _prepared_shell
        if self.shell is not shell or shell is None:
            super().init_code()  # type: ignore[no-untyped-call]
            return
        self._run_startup_files()  # type: ignore[no-untyped-call]
        self._run_exec_lines()  # type: ignore[no-untyped-call]
        self._run_exec_files()  # type: ignore[no-untyped-call]
        if self.hide_initial_ns:
            shell.user_ns_hidden.update(shell.user_ns)
        self._run_cmd_line_code()  # type: ignore[no-untyped-call]
        self._run_module()  # type: ignore[no-untyped-call]
        sys.stdout.flush()
        sys.stderr.flush()

    def write_connection_file(self, **kwargs: Any) -> None:
        """Nothing to write: ``run_kernel`` wrote the agent's connection info, which names
        every socket (IPC paths, no port left for the kernel to pick).  ipykernel would read
        the file back and compare it with what it has, to find it unchanged."""

    def init_extensions(self) -> None:
        """Loads only what the prepared shell lacks: the zygote loaded the default extensions
        into it (``prepare_shell``).  Asked again, IPython would first look for each on
        ``sys.path`` under its short name (``storemagic``): a failed import in every kernel.
        """
        if self.shell is not _prepared_shell or self.extensions or self.extra_extensions:
            super().init_extensions()  # type: ignore[no-untyped-call]

    def init_control(self, context: Any) -> None:
        """ipykernel's control channel, with ``MainThreadShell`` for a ``ForkedKernel``.

        As upstream's, but the debugger's two sockets, which ``init_kernel`` needs to exist, are
        left unconnected (a ``ForkedKernel`` has no debugger), and no shell channel thread is
        made.
        """
        if self.kernel_class is not ForkedKernel:
            super().init_control(context)  # type: ignore[no-untyped-call]
            return
        self.control_socket = context.socket(zmq.ROUTER)
        self.control_socket.linger = 1000
        self._apply_curve_server_options(self.control_socket)
        self.control_port = self._bind_socket(self.control_socket, self.control_port)  # type: ignore[no-untyped-call]
        self.control_socket.router_handover = 1
        self.debugpy_socket = context.socket(zmq.STREAM)
        self.debug_shell_socket = context.socket(zmq.DEALER)
        self.control_thread = ControlThread(daemon=True)  # type: ignore[no-untyped-call]
        self.shell_channel_thread = MainThreadShell()

    def init_kernel(self) -> None:
        """ipykernel's kernel, whose shell socket a ``ShellStream`` holds if it is a
        ``ForkedKernel`` (the shell socket is read on the main thread; see ``MainThreadShell``)."""
        super().init_kernel()  # type: ignore[no-untyped-call]
        kernel = self.kernel
        if isinstance(kernel, ForkedKernel) and kernel.shell_stream is not None:
            stream = kernel.shell_stream
            stream.io_loop.remove_handler(stream.socket)
            kernel.shell_stream = ShellStream(stream.socket, stream.io_loop)

    def init_iopub(self, context: Any) -> None:
        super().init_iopub(context)  # type: ignore[no-untyped-call]
        # The thread is made and started there; nothing has been published yet.
        OrderedIOPubThread.adopt(self.iopub_thread)

    def init_heartbeat(self) -> None:
        """No heartbeat channel.  It costs each kernel a ZeroMQ context and three threads, and
        nobody listens: the agent learns of a kernel's death from its process (a pidfd)."""


def kernel_config() -> Config:
    """What every kernel is configured with; its connection file is set on the application
    itself (``run_kernel``), since the zygote builds the application before any kernel."""
    config = Config()
    config.IPKernelApp.quiet = True
    config.HistoryManager.enabled = False
    config.IPKernelApp.outstream_class = "portside.kernel.streams.OrderedOutStream"
    # ipykernel sleeps 0.5 ms after each execution in case output is still on its way; the
    # agent waits for all of a run's output instead: what the reply counts, or the "idle".
    config.IPythonKernel._execute_sleep = 0.0
    if forked_kernel_fits():
        config.IPKernelApp.kernel_class = ForkedKernel
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
    # The application the zygote built before forking this kernel (``prepare_app``).
    app = KernelApp.instance()
    app.connection_file = connection_file
    app.initialize([])  # type: ignore[no-untyped-call]
    if app.shell is not _prepared_shell:
        # Figures appear as images at the end of a cell, as Backend.AI's kernels show them;
        # the zygote already switched matplotlib to the inline backend.
        configure_inline_support(app.shell, INLINE_BACKEND)  # type: ignore[no-untyped-call]
    # ipykernel's sockets are bound and its control thread runs: the agent may connect.
    ControlServer(workdir, rundir, spec).start(app.control_thread.io_loop.asyncio_loop)
    announce_ready(rundir)
    app.start()  # type: ignore[no-untyped-call]


def announce_ready(rundir: str) -> None:
    """Tells the agent that every socket of this kernel is bound, through the FIFO it made
    (``LocalKernel.expect_ready``).  Where nobody reads it any more (an agent that
    stopped waiting), there is nobody to tell."""
    try:
        fd = os.open(os.path.join(rundir, READY_FIFO), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    try:
        os.write(fd, b"ready\n")
    finally:
        os.close(fd)
