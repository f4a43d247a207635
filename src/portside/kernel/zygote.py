"""The zygote: one pre-initialised Python process per runtime that forks kernels on request.

Booting ipykernel costs most of a second, almost all of it imports.  The zygote pays that once,
and builds the IPython shell every kernel adopts (``host.prepare_shell``); each kernel is then a
``fork()`` whose pages it shares copy-on-write, so a kernel is ready in a fraction of the time
and costs a fraction of the memory (perf-notes.md).

For each spawn request the zygote forks the kernel itself, straight into the sandbox (a
bubblewrap process started by the agent): it enters the sandbox's pid namespace for that one
fork, and the child joins the kernel's cgroups and the sandbox's other namespaces, drops to its
unprivileged uid and runs ipykernel.  Being every kernel's parent, the zygote records how each
one ended in ``exit.json`` (a signal, an exit code) before it reaps it, so the agent learns why
a kernel died; and it outlives its server while any kernel it forked still runs, so that a
kernel which outlives a restart of the server keeps that record too.

A sandbox with a user namespace of its own (a server that is not root) cannot be entered that
way: the zygote would have to join that user namespace, and could never leave it.  There a
*monitor* is forked first, joins the sandbox, forks the kernel and records its end instead.

Protocol, on the socket whose fd is the first argument: one JSON object per line each
way.  Requests are ``{"op": "spawn", ...}`` (see ``SpawnRequest``), ``{"op": "gather",
"codes": [...]}`` (the code a rehearsal kernel ran, see portside.kernel.rehearsal) and
``{"op": "ping"}``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import signal
import socket
import sys
import sysconfig
import time
import traceback
import types
from typing import Any, NotRequired, TypedDict

from portside.kernel import linux, rehearsal

#: Every module a kernel imports while it starts or runs its first cell.  One left out costs
#: each kernel its import, and its compilation too: the runtime is read-only in the sandbox, so
#: a module the zygote never imported (which writes its bytecode) is compiled from source in
#: every kernel (compare ``sys.modules`` in a new session with the zygote's to find them).
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.logger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "IPython.utils.wildcard",
    "jupyter_client.session",
    "matplotlib",
    "matplotlib.pyplot",
    "matplotlib_inline.backend_inline",
    "tornado.platform.asyncio",
    "concurrent.futures.thread",
    "encodings.utf_16_be",
    "faulthandler",
    "grp",
    "pwd",
    "pdb",
    "pydoc",
    "portside.kernel.control",
    "portside.kernel.host",
    "portside.kernel.streams",
)


class SpawnRequest(TypedDict):
    kernel_id: str
    #: A process inside the sandbox whose namespaces the kernel joins; None runs unsandboxed.
    holder_pid: int | None
    uid: int | None
    gid: int | None
    cgroup_procs: list[str]
    rlimits: dict[str, list[int]]
    cpu_affinity: list[int] | None
    #: Paths as the kernel sees them (inside the sandbox when there is one).
    workdir: str
    rundir: str
    #: The kernel's run directory as the zygote sees it, where its exit record goes.
    record_dir: str
    env: dict[str, str]
    connection: dict[str, Any]
    spec: dict[str, Any]
    #: The agent's rehearsal kernel, which records the functions it runs
    #: (portside.kernel.rehearsal).
    rehearsal: NotRequired[bool]


def _preload() -> None:
    import importlib

    from portside.kernel.host import INLINE_BACKEND, keep_debugpy_out, prepare_app, prepare_shell

    keep_debugpy_out()
    for name in PRELOAD:
        importlib.import_module(name)
    # Switching matplotlib to the inline backend costs tens of milliseconds; do it here once.
    # Each kernel then only hooks its own shell up to it (portside.kernel.host).
    from IPython.core.pylabtools import activate_matplotlib

    activate_matplotlib(INLINE_BACKEND)  # type: ignore[no-untyped-call]
    # Pillow imports its image format plugins when the first figure is saved as a PNG.
    from PIL import Image

    Image.preinit()
    _settle_classes()
    prepare_shell()
    prepare_app()
    # Objects created so far are shared with every kernel; freezing them keeps the garbage
    # collector from touching (and so copying) their pages in each child.
    gc.collect()
    _make_immortal(gc.get_objects())
    gc.freeze()
    _ready_to_fork()


#: ``Py_TPFLAGS_HEAPTYPE``: a class made by a ``class`` statement (or ``type()``), not by C.
_HEAPTYPE = 1 << 9
#: A name no class has: looking it up goes through a class's whole method resolution order.
_NO_SUCH_NAME = "_portside_no_such_attribute"


def _ready_to_fork() -> None:
    """The zygote's last steps before it forks kernels: after its preparation, and again after
    each change to what it holds (a rehearsal's gathering)."""
    _version_module_globals()
    _take_free_heap_chunks()
    _empty_type_cache()


#: A function that reads a global, for _version_module_globals.
_READ_A_GLOBAL = next(
    const
    for const in compile("def read():\n    return __name__\n", "<zygote>", "exec").co_consts
    if isinstance(const, types.CodeType)
)


def _version_module_globals() -> None:
    """Gives the keys of every module's globals the version a kernel would otherwise write.

    The specializing interpreter, the first time a function reads a global, stamps the keys of
    the module's dict with a version (to notice later changes), and kernels run fresh code (a
    rehearsal's gathered copies among it): each stamped the modules it read from, a copied
    page each (some 45 per kernel).  A function reading a global of each module, run until
    specialized, stamps them here.  Each gets its own copy of the code, whose counters are
    fresh.
    """
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if type(namespace) is not dict or "__name__" not in namespace:
            continue
        read = types.FunctionType(_READ_A_GLOBAL.replace(), namespace)
        for _ in range(4):
            read()


#: Request sizes that take every free chunk: large ones first, then each small size class of
#: glibc's malloc (16 bytes apart) down to the smallest.
_CHUNK_REQUESTS = (*(1 << k for k in range(17, 10, -1)), *range(1032, 8, -16))


def _take_free_heap_chunks() -> int:
    """Takes every free chunk of malloc's heap, so that what a kernel allocates goes to fresh
    memory at the heap's end instead of into the zygote's pages.

    The zygote's heap is full of chunks freed while it imported and prepared (some 900, half a
    MiB).  A kernel's ``malloc`` would hand those out first, each in a page the kernel shares
    with the zygote: a copied page for a few bytes, and more for the headers of the chunk's
    neighbours.  Taken here, they are never used or freed, and a kernel's allocations fill new
    pages one after another: a used kernel's private heap fell from 1.7 to 1.1 MiB.  A request
    that glibc answers from the top of the heap (or with a mapping of its own) is given back,
    and the next size is tried.  glibc only (``mallinfo2``, 2.33); elsewhere nothing is taken.
    It never takes more bytes than ``mallinfo2`` counted free, whatever another allocator
    standing in for glibc's might answer.  Returns how many chunks were taken.
    """
    info = linux.mallinfo2()
    if info is None:
        return 0
    # The top chunk runs from here to the program break: what is handed out below it was free.
    top = linux.program_break() - info.keepcost
    taken = taken_bytes = 0
    for size in _CHUNK_REQUESTS:
        while taken_bytes + size <= info.fordblks:
            address = linux.malloc(size)
            if 0 < address < top:
                taken += 1
                taken_bytes += size
                continue
            linux.free(address)
            break
    return taken


def _empty_type_cache() -> None:
    """Empties the interpreter's cache of class attribute lookups, before kernels are forked.

    Each entry holds a reference to the name it was looked up by, and many of the zygote's
    names were made at run time (traitlets' ``_<trait>_changed``, matplotlib's ``set_<name>``,
    pyzmq's option names) and are held by nothing else: a kernel that reuses such an entry
    frees the name, a write into a page it shares (some 70 copied pages per kernel).  An empty
    entry holds ``None``, which is immortal; a kernel's first lookups then miss the cache
    and fill it in pages it copies anyway.
    """
    sys._clear_type_cache()


def _all_classes() -> list[type]:
    """Every class alive, CPython's own and C extensions' static ones included: the collector
    lists only classes made by Python code."""
    found: list[type] = [object]
    seen = {id(object)}
    pending: list[type] = [object]
    while pending:
        subclasses: list[type] = type.__subclasses__(pending.pop())
        for sub in subclasses:
            if id(sub) not in seen:
                seen.add(id(sub))
                found.append(sub)
                pending.append(sub)
    return found


def _settle_classes() -> None:
    """Gives every class what a kernel would otherwise write into it, before any fork.

    - ``__annotations__``: a class without annotations of its own gets an empty dict the first
      time anything reads them (CPython 3.10 to 3.13), and storing it invalidates the version
      tag of that class and of every subclass, all of which are re-tagged on their next
      attribute lookup: a write into each of those class objects.  pyzmq reads them on every
      class of a socket's method resolution order, ``typing.Generic`` among them, whenever an
      option is set as an attribute: each kernel rewrote some 160 classes (the traitlets trait
      types and the ``typing`` protocols).  A lookup of a missing name then tags each class
      again.
    - Immortal contents for the static classes (``str``, ``dict``, C extensions' types): the
      collector does not list them, so ``_make_immortal`` never reaches their dicts, and each
      method a kernel looks up there (``list.append``) had its reference count written.

    Run before the shell is prepared, whose objects then fill the blocks this frees.
    """
    classes = _all_classes()
    for cls in classes:
        if cls.__flags__ & _HEAPTYPE:
            with contextlib.suppress(Exception):
                getattr(cls, "__annotations__", None)
    for cls in classes:
        with contextlib.suppress(Exception):
            getattr(cls, _NO_SUCH_NAME, None)
    _make_immortal(
        [gc.get_referents(cls.__dict__) for cls in classes if not cls.__flags__ & _HEAPTYPE]
    )


#: The reference count CPython 3.12 and 3.13 give immortal objects (``_Py_IMMORTAL_REFCNT``
#: on 64-bit builds): ``Py_INCREF`` and ``Py_DECREF`` leave such a count unwritten.
_IMMORTAL_REFCNT = 0xFFFFFFFF


def immortal_objects_supported() -> bool:
    """Whether this interpreter keeps PEP 683's count in an object's first word as
    ``_IMMORTAL_REFCNT``: 64-bit CPython 3.12 and 3.13 with the GIL."""
    return (
        sys.implementation.name == "cpython"
        and (3, 12) <= sys.version_info[:2] <= (3, 13)
        and not sysconfig.get_config_var("Py_GIL_DISABLED")
        and sys.maxsize > 2**32
    )


def _make_immortal(roots: list[Any]) -> None:
    """Makes everything the zygote holds immortal (PEP 683), where CPython has the layout
    for it, so that a kernel no longer copies a shared page merely by using an object on it.

    Every object a forked kernel uses gets its reference count written, and each such write
    into a page the zygote still shares copies that page: about 3,000 copies per kernel, most
    of its start-up cost.  A copy is cheap when the memory it lands in was just freed, but on
    a virtual machine whose host takes freed memory back (as these do), each new kernel of a
    growing fleet copies into memory the host has to supply anew: 8 µs a page instead of 2.5.
    Immortal objects keep their count as it is, so those pages stay shared.  The zygote's
    objects live as long as it does anyway; a kernel that drops one merely never frees it.

    Only where ``immortal_objects_supported``; elsewhere this does nothing, and kernels copy
    what they use, as before.
    """
    if not immortal_objects_supported():
        return
    pending = list(roots)
    while pending:
        obj = pending.pop()
        count = ctypes.c_ssize_t.from_address(id(obj))
        # An immortal object was seen before, or is one of CPython's own, which hold nothing
        # mortal that the collector does not list.  The count is the mark: a set of ids would
        # leave as many freed ints behind, scattered free blocks that kernels then allocate
        # into, each one a copied page.
        if count.value >= _IMMORTAL_REFCNT:
            continue
        count.value = _IMMORTAL_REFCNT
        # Strings, numbers and untracked tuples are not among the collector's objects; they
        # are reached through the containers that hold them.
        pending.extend(gc.get_referents(obj))
        if type(obj) is types.CodeType:
            # A code object shows the collector nothing, yet every run of its function counts
            # references to its constants (``LOAD_CONST``), logging and tracebacks to its
            # file's and its own names, and the interpreter's cache of class attributes to
            # the attribute names it looks up (``co_names``): the cache holds a reference to
            # each name it caches, dropped when another takes its place.
            pending.extend(
                (obj.co_consts, obj.co_filename, obj.co_names, obj.co_name, obj.co_qualname)
            )


#: Kernels this process forked and has yet to reap: pid to their ``record_dir``.
_kernels: dict[int, str] = {}
#: Whether a SIGCHLD must wait (see _reap_children), and whether one did.
_reaping_held = False
_reap_pending = False


def _record_and_reap(child: os.waitid_result) -> None:
    """Writes the exit record of ``child`` if it is a kernel, then reaps it.

    Called with ``WNOWAIT``, so the record is on disk before the kernel's pid goes: the agent,
    which sees the exit through a pidfd, reads the record once the pid is gone.  Formatted and
    written with plain os calls: every Python function a forked monitor runs for the first time
    copies the zygote's pages it touches.
    """
    record_dir = _kernels.pop(child.si_pid, None)
    if record_dir is not None:
        field = b"exit_code" if child.si_code == os.CLD_EXITED else b"signal"
        path = os.path.join(record_dir, "exit.json")
        try:
            fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b'{"at": %f, "%s": %d}' % (time.time(), field, child.si_status))
            finally:
                os.close(fd)
            os.replace(path + ".tmp", path)
        except OSError:
            # The session's directories are gone: nobody is left to read the record.
            pass
    os.waitpid(child.si_pid, 0)


def _reap_children(*_: object) -> None:
    """SIGCHLD: records and reaps every child that has ended (kernels and monitors).

    Signal handlers run in the main thread between two steps of Python code, this one too, so
    one that comes while children are reaped or a kernel is forked (before its pid is known,
    ``_fork_kernel``) is left to the reaping in progress or to the end of the fork.
    """
    global _reaping_held, _reap_pending
    if _reaping_held:
        _reap_pending = True
        return
    _reaping_held = True
    try:
        while True:
            _reap_pending = False
            while (
                child := os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            ) is not None:
                _record_and_reap(child)
            if not _reap_pending:
                return
    except ChildProcessError:
        return
    finally:
        _reaping_held = False


def _leave_zygote() -> None:
    """In a forked child (a kernel or a monitor): a session of its own, since it outlives the
    server and a Ctrl-C in the server's terminal is not for it, and the default handling of
    the signals the zygote catches or ignores."""
    os.setsid()
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def _become_kernel(req: SpawnRequest) -> None:
    """In the kernel process: limits, identity, stdio, then ipykernel (never returns)."""
    _leave_zygote()
    for name, (soft, hard) in req["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if req["cpu_affinity"]:
        os.sched_setaffinity(0, req["cpu_affinity"])
    log_fd = os.open(
        os.path.join(req["rundir"], "kernel.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    if req["uid"] is not None:
        os.fchown(log_fd, req["uid"], req["gid"] if req["gid"] is not None else -1)
        os.setgroups([])
        if req["gid"] is not None:
            os.setgid(req["gid"])
        os.setuid(req["uid"])
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)
    os.chdir(req["workdir"])
    os.environ.clear()
    os.environ.update(req["env"])
    if req.get("rehearsal"):
        rehearsal.record()
    from portside.kernel.host import run_kernel

    run_kernel(req["kernel_id"], req["workdir"], req["rundir"], req["connection"], req["spec"])


def _join_sandbox(req: SpawnRequest, namespaces: list[tuple[int, int]]) -> None:
    """In a forked child: the kernel's cgroups, then the sandbox's namespaces, in the order
    ``linux.NAMESPACES`` gives (their descriptors are closed once joined)."""
    for procs in req["cgroup_procs"]:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    for fd, flag in namespaces:
        linux.setns_fd(fd, flag)
        os.close(fd)


def _fork_kernel(req: SpawnRequest, namespaces: list[tuple[int, int]]) -> int:
    """Forks the kernel into the sandbox whose namespaces are given; returns its pid.

    The pid namespace is entered for this one fork (it applies to children only) and left
    again; the child joins the others itself.
    """
    global _reaping_held
    pid_namespace = [fd for fd, flag in namespaces if flag == linux.CLONE_NEWPID]
    others = [(fd, flag) for fd, flag in namespaces if flag != linux.CLONE_NEWPID]
    # A kernel that ends at once must still find its pid in _kernels.
    _reaping_held = True
    try:
        for fd in pid_namespace:
            linux.setns_fd(fd, linux.CLONE_NEWPID)
        try:
            pid = os.fork()
        except OSError:
            _leave_pid_namespace(pid_namespace)
            raise
        if pid == 0:
            try:
                _join_sandbox(req, others)
                # The kernel keeps nothing of the zygote's open files (its control socket).
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                _become_kernel(req)
            except BaseException:
                traceback.print_exc()
            os._exit(70)
        _leave_pid_namespace(pid_namespace)
        _kernels[pid] = req["record_dir"]
    finally:
        _reaping_held = False
    if _reap_pending:
        _reap_children()
    return pid


def _leave_pid_namespace(entered: list[int]) -> None:
    if entered:
        linux.setns_fd(_own_pid_namespace, linux.CLONE_NEWPID)


def _monitor(req: SpawnRequest, report_fd: int) -> None:
    """In a forked child, for a sandbox with its own user namespace: joins the sandbox, forks
    the kernel, then waits for it to end and records how."""
    _leave_zygote()
    assert req["holder_pid"] is not None
    _join_sandbox(req, linux.open_namespaces(req["holder_pid"]))
    kernel_pid = os.fork()
    if kernel_pid == 0:
        try:
            os.close(report_fd)
            _become_kernel(req)
        except BaseException:
            traceback.print_exc()
        os._exit(70)
    # Formatted by hand, not by the json module (see _record_and_reap).
    os.write(report_fd, b'{"kernel_pid": %d}' % kernel_pid)
    os.close(report_fd)
    linux.set_process_name("ps-monitor")
    # The monitor sees the run directory where the kernel does.
    _kernels[kernel_pid] = req["rundir"]
    ended = os.waitid(os.P_PID, kernel_pid, os.WEXITED | os.WNOWAIT)
    assert ended is not None  # None only with WNOHANG
    _record_and_reap(ended)


def _spawn_via_monitor(req: SpawnRequest) -> dict[str, Any]:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            # The child keeps nothing of the zygote's but the pipe to report through.
            os.close(read_fd)
            os.closerange(3, write_fd)
            os.closerange(write_fd + 1, os.sysconf("SC_OPEN_MAX"))
            _monitor(req, write_fd)
        except BaseException:
            traceback.print_exc()
            try:
                os.write(write_fd, json.dumps({"error": traceback.format_exc()}).encode())
            except OSError:
                pass
            code = 71
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as report:
        data = report.read()
    if not data:
        return {"ok": False, "error": "the kernel's monitor died before it reported"}
    result = json.loads(data)
    if "error" in result:
        return {"ok": False, "error": result["error"]}
    return {"ok": True, "kernel_pid": result["kernel_pid"]}


def _spawn(req: SpawnRequest) -> dict[str, Any]:
    holder = req["holder_pid"]
    namespaces = linux.open_namespaces(holder) if holder is not None else []
    try:
        if any(flag == linux.CLONE_NEWUSER for _, flag in namespaces):
            return _spawn_via_monitor(req)
        return {"ok": True, "kernel_pid": _fork_kernel(req, namespaces)}
    finally:
        for fd, _ in namespaces:
            os.close(fd)


def serve(control: socket.socket) -> None:
    """Answers the server's requests until it goes: it closed the socket, or it stopped while
    a request was in hand (then the reply finds no reader, or its unread request resets the
    connection).  Either way the kernels still need their parent (``outlive_server``)."""
    reader = control.makefile("rb")
    try:
        for line in reader:
            request = json.loads(line)
            op = request.pop("op")
            try:
                if op == "spawn":
                    reply = _spawn(request)
                elif op == "gather":
                    reply = {"ok": True, **rehearsal.gather(request["codes"], _make_immortal)}
                    _ready_to_fork()
                elif op == "ping":
                    reply = {"ok": True, "pid": os.getpid()}
                else:
                    reply = {"ok": False, "error": f"unknown op {op!r}"}
            except Exception as e:
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            control.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        return


def outlive_server() -> None:
    """Once the server has gone: records and reaps the kernels still running, then returns.

    They are sessions the next server re-attaches to; their exit records tell it how they
    ended.
    """
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    linux.set_process_name("ps-zygote-left")
    while True:
        try:
            child = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return
        if child is not None:
            _record_and_reap(child)


#: The zygote's own pid namespace, to return to after each fork into a sandbox's.
_own_pid_namespace = -1


def main() -> None:
    global _own_pid_namespace
    _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    linux.set_process_name("ps-zygote")
    signal.signal(signal.SIGCHLD, _reap_children)
    control = socket.socket(fileno=int(sys.argv[1]))
    # The threads the imports start (numpy's OpenBLAS starts one) inherit SIGCHLD blocked, so
    # it always comes to the main thread and wakes it from its wait for the next request: a
    # kernel that ends is reaped, and its record written, at once.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    _preload()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    control.sendall(json.dumps({"ok": True, "ready": True, "pid": os.getpid()}).encode() + b"\n")
    serve(control)
    outlive_server()


if __name__ == "__main__":
    main()
