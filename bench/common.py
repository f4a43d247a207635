"""What the benchmarks share: a Portside server and a Kernel Gateway to measure, memory
accounting by process, and the result table.

Both systems are measured in the same run on the same machine, since figures taken on another
day on a noisy 2-core machine cannot be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from tests.harness import (
    DEV_ADMIN,
    REPO,
    RunningServer,
    kernel_state_files,
    kill_leftover_kernels,
    start_server,
)

from ai.backend.client.auth import generate_signature
from ai.backend.client.config import APIConfig
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import AsyncSession
from portside.agent.local.kernel import Processes
from portside.config import Config
from portside.kernel import IOPUB_COUNT_KEY

MiB = 1024 * 1024
#: The image every benchmark session uses; an alias of ``python:latest`` in the default config.
IMAGE = "python"
#: The distinct interpreters of the default images: images that share one share a warm pool.
DEFAULT_RUNTIME_COUNT = len({image.python for image in Config().images.values()})


# Statistics and the result table ---------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: with 30 samples a p95 is an observed value, not a blend."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def p50(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Row:
    """One line of a result table.

    ``target`` applies to Portside only; Kernel Gateway is the reference, not the goal.
    """

    metric: str
    portside: float | None
    jkg: float | None
    unit: str
    target: float | None = None
    higher_is_better: bool = False
    #: False where the two figures are not like for like (such as how many kernels were held).
    comparable: bool = True

    def ratio(self) -> float | None:
        """How many times better Portside is (above 1) or worse (below 1)."""
        if not self.comparable or self.portside is None or self.jkg is None:
            return None
        if not (self.portside > 0 and self.jkg > 0):
            return None
        return self.portside / self.jkg if self.higher_is_better else self.jkg / self.portside

    def met(self) -> bool | None:
        if self.target is None or self.portside is None:
            return None
        if self.higher_is_better:
            return self.portside >= self.target
        return self.portside <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'>=' if self.higher_is_better else '<='} {fmt(self.target, self.unit)}"


def fmt(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "-"
    if float(value).is_integer():
        text = f"{int(value)}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def _cells(row: Row) -> list[str]:
    ratio = row.ratio()
    met = row.met()
    return [
        row.metric,
        fmt(row.portside, row.unit),
        fmt(row.jkg, row.unit),
        "-" if ratio is None else f"{ratio:.1f}x",
        row.target_text(),
        "-" if met is None else ("yes" if met else "NO"),
    ]


HEADERS = ["metric", "Portside", "Kernel Gateway", "ratio", "target", "met?"]
RATIO_NOTE = "ratio: how many times better Portside is than Kernel Gateway"


def print_table(
    title: str,
    rows: Iterable[Row],
    notes: Iterable[str] = (),
    *,
    headers: Sequence[str] = HEADERS,
    ratio_note: str = RATIO_NOTE,
) -> None:
    """A plain-text table, the meaning of its ratio column and the notes under it."""
    lines = [_cells(r) for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    print()
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    print(f"({ratio_note})")
    for note in notes:
        print(f"- {note}")
    print(flush=True)


def markdown_table(rows: Iterable[Row], headers: Sequence[str] = HEADERS) -> str:
    out = ["| " + " | ".join(headers) + " |", "|---|---:|---:|---:|---|---|"]
    out += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    return "\n".join(out)


def machine_note() -> str:
    """The conditions of the run, since a busy machine moves every figure here."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    total = psutil.virtual_memory().total / 1024**3
    return (
        f"machine: {os.cpu_count()} CPUs, {total:.0f} GiB, load average {load} at the end; "
        f"Python {sys.version.split()[0]}"
    )


def environment_note() -> str:
    """The run's conditions and the peer's versions."""
    import jupyter_server
    import kernel_gateway as gateway_package

    return (
        f"{machine_note()}, Kernel Gateway {gateway_package.__version__} "
        f"(jupyter_server {jupyter_server.__version__}) with default settings"
    )


Results = tuple[list[Row], list[str]]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Options with their defaults, under the module's docstring as written."""


def bench_main(
    doc: str | None,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Coroutine[Any, Any, Results]],
    title: str,
    *,
    printer: Callable[[str, Iterable[Row], Iterable[str]], None] = print_table,
    note: Callable[[], str] = environment_note,
) -> None:
    """A benchmark module's command line: its options and the common ones, the run, the
    table with the run's conditions last."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)
    add_common_arguments(parser)
    add_arguments(parser)
    table, extra = asyncio.run(run(parser.parse_args()))
    printer(title, table, [*extra, note()])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


#: Free page reporting hands a block of free memory to the host two seconds after it formed.
_REPORTING_DELAY = 5.0


async def hand_free_memory_back() -> bool:
    """Compacts the machine's free memory (as root), so that each window starts as on a freshly
    booted virtual machine, whatever ran before it.

    On a virtual machine whose balloon device reports free pages (these do), free memory that
    forms blocks of 2 MiB and more is handed back to the host, and the next touch of each of its
    pages makes the host supply it anew: about 8 µs a page here, against 2.5 µs for memory freed
    in smaller pieces, which the guest keeps.  So a window that fills memory (sessions kept)
    measured up to a third faster or slower depending on what the machine had freed before it.
    Compaction merges the small pieces into blocks that are then handed back: each window pays
    the fresh-memory price, as the first one after a boot does.  Elsewhere it only tidies the
    free memory.  False where this process may not do it.
    """
    try:
        with open("/proc/sys/vm/compact_memory", "w") as f:
            f.write("1")
    except OSError:
        return False
    await asyncio.sleep(_REPORTING_DELAY)
    return True


# Processes, memory and CPU --------------------------------------------------------------


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages split among the processes that map them, so the
    figures of many forked kernels add up to what they really cost."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


@dataclass
class ProcessTable:
    """One pass over /proc.  Asking psutil for a process's children scans every process on
    the machine each time, which with hundreds of kernels takes seconds per reading."""

    children: dict[int, list[int]]
    names: dict[int, str]

    @classmethod
    def read(cls) -> ProcessTable:
        children: dict[int, list[int]] = {}
        names: dict[int, str] = {}
        for p in psutil.process_iter(["ppid", "name"]):
            names[p.pid] = p.info["name"] or ""
            children.setdefault(p.info["ppid"] or 0, []).append(p.pid)
        return cls(children, names)

    def subtree(self, pid: int) -> list[int]:
        """``pid`` and all its descendants, if it is alive."""
        if pid not in self.names:
            return []
        out, todo = [], [pid]
        while todo:
            current = todo.pop()
            out.append(current)
            todo.extend(self.children.get(current, ()))
        return out


def descendants(pid: int) -> list[int]:
    return ProcessTable.read().subtree(pid)[1:]


@dataclass
class KernelProcs:
    kernel_id: str
    pooled: bool
    #: pid to role: kernel, bwrap, holder (the sandbox's ``sh``), other.
    roles: dict[int, str] = field(default_factory=dict)


def kernel_processes(data_dir: Path, table: ProcessTable | None = None) -> list[KernelProcs]:
    """Every kernel's processes, from the state files the agent keeps per kernel.

    A kernel is its sandbox (two bubblewrap processes and the ``sh`` holder, children of
    the server) plus the kernel itself (a child of the zygote); the kernel lives in the
    sandbox's pid namespace but is forked outside it, so the two halves are found from the
    recorded pids, not from one subtree.
    """
    table = table or ProcessTable.read()
    found = []
    for state_file in kernel_state_files(data_dir):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not state.get("processes"):
            continue
        procs = Processes.from_dict(state["processes"])
        entry = KernelProcs(state["kernel_id"], bool(state.get("pooled")))
        roots = [procs.kernel_pid]
        if procs.holder is not None:
            roots.append(procs.holder.bwrap_pid)
        for root in roots:
            for pid in table.subtree(root):
                entry.roles[pid] = _role(pid, table.names.get(pid, ""), procs)
        found.append(entry)
    return found


def _role(pid: int, name: str, procs: Processes) -> str:
    if pid == procs.kernel_pid:
        return "kernel"
    if name == "bwrap":
        return "bwrap"
    if name == "sh":
        return "holder"
    return "other"


def zygote_pids(server_pid: int, table: ProcessTable) -> set[int]:
    """The server's children that run ``portside.kernel.zygote`` (one per runtime)."""
    found = set()
    for pid in table.children.get(server_pid, ()):
        try:
            if "portside.kernel.zygote" in " ".join(psutil.Process(pid).cmdline()):
                found.add(pid)
        except psutil.Error:
            pass
    return found


@dataclass
class PortsideMemory:
    server_rss: int
    server_pss: int
    zygote_pss: int
    sessions: int
    session_pss: int
    pooled: int
    pool_pss: int
    #: PSS of session kernels' processes by role, summed over sessions.
    by_role: dict[str, int]
    #: Processes below the server that belong to no kernel and are not the zygote.
    unaccounted_pss: int
    #: Session processes that are not descendants of the server (reparented away).
    outside_tree: int

    @property
    def total_pss(self) -> int:
        return self.zygote_pss + self.session_pss + self.pool_pss + self.unaccounted_pss


def portside_memory(server: RunningServer) -> PortsideMemory:
    server_pid = server.process.pid
    table = ProcessTable.read()
    tree = set(table.subtree(server_pid)) - {server_pid}
    zygotes = zygote_pids(server_pid, table)
    kernels = kernel_processes(server.data_dir, table)
    owned: set[int] = set()
    by_role: dict[str, int] = {}
    session_pss = pool_pss = sessions = pooled = outside = 0
    for k in kernels:
        total = 0
        for pid, role in k.roles.items():
            size = pss_bytes(pid)
            total += size
            if not k.pooled:
                by_role[role] = by_role.get(role, 0) + size
                if pid not in tree:
                    outside += 1
        owned.update(k.roles)
        if k.pooled:
            pool_pss += total
            pooled += 1
        else:
            session_pss += total
            sessions += 1
    unaccounted = sum(pss_bytes(pid) for pid in tree - owned - zygotes)
    return PortsideMemory(
        server_rss=rss_bytes(server_pid),
        server_pss=pss_bytes(server_pid),
        zygote_pss=sum(pss_bytes(pid) for pid in zygotes),
        sessions=sessions,
        session_pss=session_pss,
        pooled=pooled,
        pool_pss=pool_pss,
        by_role=by_role,
        unaccounted_pss=unaccounted,
        outside_tree=outside,
    )


def cpu_by_role(server: RunningServer) -> dict[str, float]:
    """CPU seconds used so far by the server, the zygote and each role of kernel process.

    Only live processes count, so compare two readings across a span in which no kernel ends.
    """
    server_pid = server.process.pid
    table = ProcessTable.read()
    zygotes = zygote_pids(server_pid, table)
    out: dict[str, float] = {"server": cpu_seconds(server_pid), "zygote": 0.0}
    owned: set[int] = set()
    for k in kernel_processes(server.data_dir, table):
        for pid, role in k.roles.items():
            out[role] = out.get(role, 0.0) + cpu_seconds(pid)
            owned.add(pid)
    for pid in set(table.subtree(server_pid)) - {server_pid} - owned:
        role = "zygote" if pid in zygotes else "other"
        out[role] = out.get(role, 0.0) + cpu_seconds(pid)
    return out


def refill_cpu_seconds(server: RunningServer, zygotes: set[int]) -> float:
    """CPU time of what a pool refill keeps busy: the server, its zygote and the pooled
    kernels (idle session kernels, which tick over on their own, are left out)."""
    total = cpu_seconds(server.process.pid) + sum(cpu_seconds(pid) for pid in zygotes)
    for state_file in kernel_state_files(server.data_dir):
        try:
            state = json.loads(state_file.read_text())
            if state.get("pooled") and state.get("processes"):
                total += cpu_seconds(state["processes"]["kernel_pid"])
        except (OSError, KeyError, json.JSONDecodeError):
            continue
    return total


# Portside --------------------------------------------------------------------------------

#: A pool this size keeps create-to-first-output off the cold path for sequential users and
#: absorbs short bursts; larger pools only add idle kernels (see session_start's output).
DEFAULT_POOL_SIZE = 4


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pool-size",
        type=int,
        default=DEFAULT_POOL_SIZE,
        help="Portside's warm kernels per runtime ([agent] pool_size)",
    )


def portside_config(pool_size: int) -> str:
    """The test configuration (tests/harness.py) with capacity that never limits, the
    default log level, idle sessions kept for an hour, the chosen warm pool, and an app proxy
    on a free port so benchmarks run beside other servers."""
    return f"""
dev = true
idle_timeout = 3600

[resources]
cpu = 4096
mem = "2048g"
detect_gpus = false

[resources.mock_cuda]
devices = 4
shares = 8

[agent]
pool_size = {pool_size}

[appproxy]
port = 0
"""


@dataclass
class Output:
    status: str
    stdout: str


async def run_code(session: ComputeSession, code: str) -> Output:
    """One ``execute`` call, continued until the run finishes (a quick cell finishes in one)."""
    run_id = uuid.uuid4().hex[:16]
    result = await session.execute(run_id, code, mode="query")
    stdout = ""
    while True:
        stdout += "".join(text for kind, text in result.get("console", []) if kind == "stdout")
        if result["status"] != "continued":
            return Output(result["status"], stdout)
        result = await session.execute(run_id, "", mode="continue")


class Portside:
    """A server in its own data directory, with an SDK session and the sessions made through
    it, so that everything is destroyed again, whatever fails."""

    def __init__(self, server: RunningServer, api: AsyncSession, pool_size: int) -> None:
        self.server = server
        self.api = api
        self.pool_size = pool_size
        self.sessions: dict[str, ComputeSession] = {}
        self._count = 0

    @property
    def data_dir(self) -> Path:
        return self.server.data_dir

    def new_name(self, prefix: str = "bench") -> str:
        self._count += 1
        return f"{prefix}-{self._count}-{uuid.uuid4().hex[:6]}"

    async def create(self, name: str | None = None) -> ComputeSession:
        name = name or self.new_name()
        session = await self.api.ComputeSession.get_or_create(IMAGE, name=name)
        self.sessions[name] = session
        return session

    async def destroy(self, session: ComputeSession) -> None:
        assert session.name is not None
        self.sessions.pop(session.name, None)
        try:
            await session.destroy(forced=True)
        except Exception as e:
            log(f"destroying {session.name} failed: {e!r}")

    async def destroy_all(self, concurrency: int = 8) -> None:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(session: ComputeSession) -> None:
            async with semaphore:
                await self.destroy(session)

        await asyncio.gather(*(one(s) for s in list(self.sessions.values())))

    def pooled_ready(self) -> int:
        """Pooled kernels whose state file exists (written once the kernel was forked)."""
        count = 0
        for state_file in kernel_state_files(self.data_dir):
            with contextlib.suppress(OSError, json.JSONDecodeError):
                count += bool(json.loads(state_file.read_text()).get("pooled"))
        return count

    def check_alive(self) -> None:
        if self.server.process.poll() is not None:
            raise RuntimeError(
                f"the Portside server exited with {self.server.process.returncode}:\n"
                + self.server.log_tail()
            )

    async def wait_pool_full(self, timeout: float = 120.0) -> float:
        """Waits until every image's pool is full and the refill has gone quiet; returns the
        seconds waited, which is how long a refill takes from where it stood."""
        start = time.monotonic()
        expected = self.pool_size * DEFAULT_RUNTIME_COUNT
        zygotes = zygote_pids(self.server.process.pid, ProcessTable.read())
        quiet = 0
        last, last_at = refill_cpu_seconds(self.server, zygotes), time.monotonic()
        while time.monotonic() - start < timeout:
            await asyncio.sleep(0.25)
            self.check_alive()
            now, now_at = refill_cpu_seconds(self.server, zygotes), time.monotonic()
            busy = (now - last) / (now_at - last_at)
            last, last_at = now, now_at
            # Two quiet readings in a row: CPU times tick in 10 ms steps.
            quiet = quiet + 1 if busy < 0.15 else 0
            if quiet >= 2 and self.pooled_ready() >= expected:
                return time.monotonic() - start
        log(f"portside: the warm pool did not settle in {timeout:.0f} s; going on")
        return time.monotonic() - start


def _raise_policy(data_dir: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "portside",
            "admin",
            "policy",
            "set",
            "default",
            "--max-concurrent-sessions",
            "1000",
            "--unlisted",
            "UNLIMITED",
            "--config",
            str(data_dir / "portside-test.toml"),
            "--data-dir",
            str(data_dir),
        ],
        check=True,
        capture_output=True,
        cwd=REPO,
    )


@asynccontextmanager
async def portside_server(pool_size: int) -> AsyncIterator[Portside]:
    data_dir = Path(tempfile.mkdtemp(prefix="portside-bench-"))
    server: RunningServer | None = None
    try:
        server = await asyncio.to_thread(
            start_server, data_dir, config_text=portside_config(pool_size)
        )
        await asyncio.to_thread(_raise_policy, data_dir)
        config = APIConfig(
            endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1]
        )
        async with AsyncSession(config=config) as api:
            portside = Portside(server, api, pool_size)
            try:
                yield portside
            finally:
                await portside.destroy_all()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)
        else:
            kill_leftover_kernels(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def session_kernel_state(data_dir: Path, session_id: uuid.UUID) -> dict[str, Any]:
    for state_file in kernel_state_files(data_dir):
        state: dict[str, Any] = json.loads(state_file.read_text())
        if state.get("spec", {}).get("session_id") == str(session_id):
            return state
    raise LookupError(f"no kernel state for session {session_id}")


async def direct_round_trips(
    data_dir: Path, session_id: uuid.UUID, count: int, code: str = "print(1)"
) -> list[float]:
    """``code`` sent straight to a session's kernel over its IPC sockets with jupyter_client,
    bypassing the server: the floor under any REST round trip.

    A round trip ends as the agent's run does: with the ``execute_reply`` and as many IOPub
    messages as the reply counted (``IOPUB_COUNT_KEY``), or, from a reply without a count, with
    the ``idle`` status.
    """
    from jupyter_client.asynchronous import AsyncKernelClient

    state = session_kernel_state(data_dir, session_id)
    client = AsyncKernelClient()
    client.load_connection_info(
        {
            "transport": "ipc",
            "ip": str(Path(state["base"]) / "run" / "kernel"),
            "shell_port": 1,
            "iopub_port": 2,
            "stdin_port": 3,
            "control_port": 4,
            "hb_port": 5,
            "key": state["connection_key"].encode(),
            "signature_scheme": "hmac-sha256",
        }
    )
    client.start_channels(hb=False)
    times: list[float] = []
    try:
        # The IOPub subscription needs a moment before it receives anything.
        await asyncio.sleep(0.5)
        for i in range(count + 5):
            start = time.perf_counter()
            msg_id = client.execute(code, store_history=False)
            while True:
                reply = await asyncio.wait_for(client.get_shell_msg(), 10)
                if reply["parent_header"].get("msg_id") == msg_id:
                    break
            expected = reply["metadata"].get(IOPUB_COUNT_KEY)
            published = 0
            while expected is None or published < expected:
                msg = await asyncio.wait_for(client.get_iopub_msg(), 10)
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                published += 1
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            if i >= 5:
                times.append(time.perf_counter() - start)
    finally:
        client.stop_channels()
    return times


class RawClient:
    """Signed REST calls on a bare aiohttp session, to tell the SDK's own cost apart from the
    server's."""

    def __init__(self, portside: Portside) -> None:
        self.config = portside.api.config
        self.version = portside.api.api_version_str
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.http.close()

    async def execute(self, session_id: str, code: str) -> dict[str, Any]:
        path = f"/session/{session_id}"
        body = json.dumps({"mode": "query", "code": code, "runId": uuid.uuid4().hex[:16]}).encode()
        date = dt.datetime.now(dt.UTC)
        content_type = "application/json"
        auth, _ = generate_signature(
            method="POST",
            version=self.version,
            endpoint=self.config.endpoint,
            date=date,
            rel_url=path,
            content_type=content_type,
            access_key=self.config.access_key,
            secret_key=self.config.secret_key,
        )
        headers = {
            "Date": date.isoformat(),
            "Content-Type": content_type,
            "X-BackendAI-Version": self.version,
            **auth,
        }
        url = str(self.config.endpoint).rstrip("/") + path
        async with self.http.post(url, data=body, headers=headers) as resp:
            resp.raise_for_status()
            result: dict[str, Any] = (await resp.json())["result"]
            return result


# Jupyter Kernel Gateway ------------------------------------------------------------------


class KernelGatewayClosed(RuntimeError):
    """The gateway closed a kernel's WebSocket before the request was answered."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class JkgOutput:
    first_output: float
    idle: float
    stdout: str


class KernelGateway:
    """Jupyter Kernel Gateway as users get it: default settings, reached over REST and the
    kernel WebSocket with plain Jupyter protocol messages."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="jkg-bench-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.http: aiohttp.ClientSession | None = None
        self.kernels: set[str] = set()
        self.session_id = uuid.uuid4().hex

    async def start(self, timeout: float = 60.0) -> None:
        jupyter = Path(sys.executable).parent / "jupyter"
        with (self.log_dir / "gateway.log").open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(jupyter),
                    "kernelgateway",
                    "--KernelGatewayApp.ip=127.0.0.1",
                    f"--KernelGatewayApp.port={self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.log_dir,
            )
        self.http = aiohttp.ClientSession()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kernel gateway exited:\n{self.log_tail()}")
            try:
                async with self.http.get(self.url + "/api") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"kernel gateway did not start in time:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.log_dir / "gateway.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def create_kernel(self) -> str:
        assert self.http is not None
        async with self.http.post(self.url + "/api/kernels", json={"name": "python3"}) as resp:
            resp.raise_for_status()
            kernel_id: str = (await resp.json())["id"]
        self.kernels.add(kernel_id)
        return kernel_id

    async def delete_kernel(self, kernel_id: str) -> None:
        assert self.http is not None
        self.kernels.discard(kernel_id)
        try:
            async with self.http.delete(f"{self.url}/api/kernels/{kernel_id}") as resp:
                await resp.read()
        except aiohttp.ClientError as e:
            log(f"deleting kernel {kernel_id} failed: {e!r}")

    def connect(self, kernel_id: str) -> Any:
        assert self.http is not None
        return self.http.ws_connect(
            f"ws://127.0.0.1:{self.port}/api/kernels/{kernel_id}/channels", max_msg_size=0
        )

    async def execute(
        self, ws: aiohttp.ClientWebSocketResponse, code: str, timeout: float = 120.0
    ) -> JkgOutput:
        """Sends ``execute_request`` and waits for its output and the kernel's return to idle;
        times are seconds from the send."""
        msg_id = uuid.uuid4().hex
        message = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "bench",
                "session": self.session_id,
                "date": dt.datetime.now(dt.UTC).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
            "channel": "shell",
            "buffers": [],
        }
        start = time.perf_counter()
        await ws.send_str(json.dumps(message))
        first_output: float | None = None
        stdout = ""
        async with asyncio.timeout(timeout):
            while True:
                frame = await ws.receive()
                if frame.type != aiohttp.WSMsgType.TEXT:
                    raise KernelGatewayClosed(f"kernel websocket closed: {frame!r}")
                msg = json.loads(frame.data)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg.get("msg_type") or msg["header"]["msg_type"]
                if kind == "stream" and msg["content"].get("name") == "stdout":
                    stdout += msg["content"]["text"]
                    if first_output is None:
                        first_output = time.perf_counter() - start
                elif kind == "status" and msg["content"]["execution_state"] == "idle":
                    idle = time.perf_counter() - start
                    first = first_output if first_output is not None else idle
                    return JkgOutput(first, idle, stdout)

    def kernel_pids(self) -> list[int]:
        if self.process is None:
            return []
        return descendants(self.process.pid)

    async def stop(self) -> None:
        for kernel_id in list(self.kernels):
            await self.delete_kernel(kernel_id)
        if self.http is not None:
            await self.http.close()
        if self.process is not None:
            children = []
            for pid in descendants(self.process.pid):
                with contextlib.suppress(psutil.Error):
                    children.append(psutil.Process(pid))
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(self.process.wait, 15)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    await asyncio.to_thread(self.process.wait)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.kill()
        shutil.rmtree(self.log_dir, ignore_errors=True)


@asynccontextmanager
async def kernel_gateway() -> AsyncIterator[KernelGateway]:
    gateway = KernelGateway()
    try:
        await gateway.start()
        yield gateway
    finally:
        await gateway.stop()
