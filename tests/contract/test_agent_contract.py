"""The Agent protocol's contract, one suite for both backends.

Each test drives an agent directly, the way the session, execution and app services do: the
local backend on this machine, and the Ray backend on a one-node Ray cluster on loopback with
the same configuration.  What a user of the API would notice (output, files, terminals, apps,
restarts, a killed kernel's reason) must be the same on both.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from portside.agent.base import Agent, AgentError, ExecResult, KernelExit, KernelInfo, KernelSpec
from portside.appproxy.connect import ConnectError, open_socket
from portside.config import Config, ImageConfig
from portside.images import ImageRegistry

from ..harness import kill_leftover_kernels
from ..ray.raycluster import GiB, assert_loopback_only, kill_node_kernels, require_ray

IMAGE = "python:latest"


def _config(data_dir: Path, backend: str, ray_address: str = "local") -> Config:
    return Config.model_validate(
        {
            "data_dir": str(data_dir),
            "agent": {"backend": backend, "pool_size": 1, "ray_address": ray_address},
            "resources": {"cpu": 2, "mem": "2g", "detect_gpus": False},
            "images": {IMAGE: ImageConfig(aliases=["python"]).model_dump()},
        }
    )


@dataclass
class Subject:
    """An agent under test, and the kernel exits it reported."""

    agent: Agent
    exits: list[KernelExit] = field(default_factory=list)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    kernels: list[str] = field(default_factory=list)

    async def on_exit(self, event: KernelExit) -> None:
        self.exits.append(event)
        self.exited.set()

    async def create(self, **environ: str) -> KernelInfo:
        spec = KernelSpec(
            session_id=str(uuid.uuid4()),
            image=IMAGE,
            resources={"cpu": "1", "mem": "268435456"},
            environ=environ,
        )
        info = await self.agent.create_kernel(spec)
        self.kernels.append(info.kernel_id)
        return info

    @contextlib.asynccontextmanager
    async def fresh(self) -> AsyncIterator[str]:
        """A kernel of its own for one test, destroyed after it (freeing its place)."""
        info = await self.create()
        try:
            yield info.kernel_id
        finally:
            if info.kernel_id in self.kernels:
                self.kernels.remove(info.kernel_id)
                await self.agent.destroy_kernel(info.kernel_id)

    async def run(self, kernel_id: str, code: str, mode: str = "query") -> ExecResult:
        """One query to its end, continuing while it says ``continued``."""
        result = await self.agent.execute(kernel_id, None, mode, code, {}, 5.0)
        while result.status == "continued":
            result = await self.agent.execute(kernel_id, result.run_id, "continue", "", {}, 5.0)
        return result


def _stdout(result: ExecResult) -> str:
    return "".join(str(data) for kind, data in result.console if kind == "stdout")


def _stderr(result: ExecResult) -> str:
    return "".join(str(data) for kind, data in result.console if kind == "stderr")


async def _local_subject(tmp: Path) -> AsyncIterator[Subject]:
    from portside.agent.local.agent import LocalAgent

    config = _config(tmp / "local", "local")
    subject = Subject(LocalAgent(config, ImageRegistry(config.images, os.uname().machine)))
    await subject.agent.start([], subject.on_exit)
    try:
        yield subject
    finally:
        for kernel_id in subject.kernels:
            await subject.agent.destroy_kernel(kernel_id)
        await subject.agent.close()
        kill_leftover_kernels(config.data_dir)


async def _ray_subject(tmp: Path) -> AsyncIterator[Subject]:
    require_ray()
    from portside.agent.ray.agent import RayAgent

    from ..ray.raycluster import loopback_cluster

    with loopback_cluster(tmp / "r", [{"num_cpus": 2, "memory": 2 * GiB}]) as (cluster, _):
        config = _config(tmp / "ray", "ray", cluster.address)
        subject = Subject(RayAgent(config, ImageRegistry(config.images, os.uname().machine)))
        await subject.agent.start([], subject.on_exit)
        try:
            yield subject
            assert_loopback_only()
        finally:
            for kernel_id in subject.kernels:
                await subject.agent.destroy_kernel(kernel_id)
            await subject.agent.close()
    kill_node_kernels(config.data_dir / "nodes")


SUBJECTS: dict[str, Callable[[Path], AsyncIterator[Subject]]] = {
    "local": _local_subject,
    "ray": _ray_subject,
}


@pytest.fixture(scope="module", params=sorted(SUBJECTS))
async def subject(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Subject]:
    async for subject in SUBJECTS[request.param](tmp_path_factory.mktemp(request.param)):
        yield subject


@pytest.fixture(scope="module")
async def kernel(subject: Subject) -> str:
    """One kernel that the read-mostly tests share."""
    return (await subject.create(GREETING="hello")).kernel_id


async def _eventually(check: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.2)


# -- kernels and execution ---------------------------------------------------------------


async def test_a_new_kernel_runs_code_with_the_session_environment(
    subject: Subject, kernel: str
) -> None:
    result = await subject.run(kernel, "import os; print(os.environ['GREETING'], 6 * 7)")
    assert result.status == "finished"
    assert _stdout(result) == "hello 42\n"


async def test_query_mode_keeps_state_and_reports_errors(subject: Subject, kernel: str) -> None:
    await subject.run(kernel, "counter = 20")
    assert _stdout(await subject.run(kernel, "counter += 1; print(counter)")) == "21\n"
    failed = await subject.run(kernel, "1/0")
    assert failed.exit_code == 1
    assert any(kind == "stderr" and "ZeroDivisionError" in data for kind, data in failed.console)


async def test_tracebacks_and_sources_name_the_cells_they_come_from(
    subject: Subject, kernel: str
) -> None:
    await subject.run(kernel, "def halve(x):\n    return x / (x - x)")
    failed = await subject.run(kernel, "y = 2\nhalve(y)")
    assert failed.exit_code == 1
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", _stderr(failed))
    # The failing cell and line, then the cell the function came from, with its source line.
    assert re.search(r"Cell In\[\d+\], line 2\n.*\n-+> 2 halve\(y\)", traceback), traceback
    assert re.search(r"Cell In\[\d+\], line 2, in halve\(x\)", traceback), traceback
    assert "return x / (x - x)" in traceback
    source = await subject.run(kernel, "import inspect\nprint(inspect.getsource(halve), end='')")
    assert _stdout(source) == "def halve(x):\n    return x / (x - x)\n"


async def test_the_cell_after_a_failed_one_runs(subject: Subject, kernel: str) -> None:
    for attempt in range(20):
        failed = await subject.run(kernel, "1 / 0")
        assert failed.exit_code == 1
        ran = await subject.run(kernel, f"attempt = {attempt}\nprint(attempt)")
        assert _stdout(ran) == f"{attempt}\n"


async def test_input_is_asked_for_and_answered(subject: Subject, kernel: str) -> None:
    asked = await subject.agent.execute(kernel, None, "query", 'print("hi", input("Who? "))', {}, 5)
    assert asked.status == "waiting-input"
    assert asked.console == [["stdout", "Who? "]]
    answered = await subject.agent.execute(kernel, asked.run_id, "input", "Ada", {}, 5)
    assert answered.status == "finished"
    assert answered.console == [["stdout", "hi Ada\n"]]


async def test_long_runs_come_back_in_slices(subject: Subject, kernel: str) -> None:
    code = "import time\nprint('a', flush=True)\ntime.sleep(1.5)\nprint('b')"
    first = await subject.agent.execute(kernel, None, "query", code, {}, 0.5)
    assert first.status == "continued"
    outputs = [_stdout(first)]
    result = first
    while result.status == "continued":
        result = await subject.agent.execute(kernel, first.run_id, "continue", "", {}, 0.5)
        outputs.append(_stdout(result))
    assert result.status == "finished"
    assert "".join(outputs) == "a\nb\n"


async def test_batch_mode_builds_then_runs(subject: Subject, kernel: str) -> None:
    program = b"print('built:', open('out').read())"
    await subject.agent.upload_file(kernel, "job/main.py", program, 1024)
    opts = {"build": "cd job && echo ok > out", "exec": "cd job && python main.py"}
    result = await subject.agent.execute(kernel, None, "batch", "", opts, 10)
    console = list(result.console)
    while result.status not in ("finished", "exec-timeout"):
        result = await subject.agent.execute(kernel, result.run_id, "continue", "", {}, 10)
        console += result.console
    assert result.status == "finished"
    assert result.exit_code == 0
    assert "built: ok" in "".join(str(data) for kind, data in console if kind == "stdout")


async def test_complete_interrupt_and_logs(subject: Subject, kernel: str) -> None:
    assert "import" in await subject.agent.complete(kernel, "impo", 4)
    sleep = "import time; time.sleep(30)"
    started = await subject.agent.execute(kernel, None, "query", sleep, {}, 0.5)
    assert started.status == "continued"
    await subject.agent.interrupt(kernel)
    result = await subject.agent.execute(kernel, started.run_id, "continue", "", {}, 10)
    assert result.status == "finished"
    assert "KeyboardInterrupt" in str(result.console)
    assert isinstance(await subject.agent.get_logs(kernel), str)


# -- files -------------------------------------------------------------------------------


async def test_files_upload_list_and_download(subject: Subject, kernel: str) -> None:
    await subject.agent.upload_file(kernel, "docs/note.txt", b"contract", 1024)
    listing = await subject.agent.list_files(kernel, "docs")
    assert [f["filename"] for f in listing["files"]] == ["note.txt"]
    archive = await subject.agent.download_tar(kernel, "docs/note.txt", 1 << 20)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("note.txt")
        assert member is not None
        assert member.read() == b"contract"
    with pytest.raises(AgentError):
        await subject.agent.upload_file(kernel, "big.bin", b"x" * 2048, 1024)


# -- terminals ---------------------------------------------------------------------------


async def test_a_terminal_echoes_what_is_typed(subject: Subject, kernel: str) -> None:
    pty = await subject.agent.open_pty(kernel, 24, 80)
    seen = bytearray()

    async def read_until(marker: bytes) -> None:
        async for chunk in pty.output():
            seen.extend(chunk)
            if marker in seen:
                return

    reader = asyncio.create_task(read_until(b"contract-3"))
    try:
        await pty.resize(30, 100)
        await pty.write(b"echo contract-$((1+2))\n")
        await asyncio.wait_for(reader, 20)
    finally:
        reader.cancel()
        await pty.close()
    assert b"contract-3" in seen


# -- apps --------------------------------------------------------------------------------


async def _http_get(endpoint: dict[str, Any]) -> bytes:
    sock = await open_socket(endpoint)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET / HTTP/1.0\r\nHost: app\r\n\r\n")
    await writer.drain()
    body = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return body


async def test_an_app_is_reachable_through_its_endpoint(subject: Subject, kernel: str) -> None:
    await subject.agent.upload_file(kernel, "site/index.html", b"<p>contract app</p>", 1024)
    command = [sys.executable, "-m", "http.server", "8321", "--bind", "127.0.0.1", "-d", "site"]
    result = await subject.agent.start_app(kernel, "web", 8321, command, {})
    assert result["status"] in ("started", "running")
    again = await subject.agent.start_app(kernel, "web", 8321, command, {})
    assert again["status"] == "running"
    body = await _http_get(subject.agent.app_endpoint(kernel, 8321))
    assert body.startswith(b"HTTP/1.0 200")
    assert b"contract app" in body
    await subject.agent.stop_app(kernel, "web")
    endpoint = subject.agent.app_endpoint(kernel, 8321)

    async def refused() -> bool:
        try:
            sock = await open_socket(endpoint)
        except ConnectError:
            return True
        sock.close()
        return False

    await _eventually(refused, 10)


async def test_a_port_nothing_listens_on_is_refused(subject: Subject, kernel: str) -> None:
    with pytest.raises(ConnectError):
        await open_socket(subject.agent.app_endpoint(kernel, 8999))


# -- restarts, ends and deaths -----------------------------------------------------------


async def test_restart_loses_variables_but_keeps_files(subject: Subject) -> None:
    async with subject.fresh() as kernel_id:
        await subject.run(kernel_id, "kept = 1; open('kept.txt', 'w').write('file')")
        await subject.agent.restart_kernel(kernel_id)
        result = await subject.run(kernel_id, "print(open('kept.txt').read()); print(kept)")
    assert _stdout(result) == "file\n"
    assert "NameError" in str(result.console)


async def test_a_destroyed_kernel_is_gone(subject: Subject) -> None:
    kernel_id = (await subject.create()).kernel_id
    await subject.agent.destroy_kernel(kernel_id)
    subject.kernels.remove(kernel_id)
    with pytest.raises(AgentError) as failure:
        await subject.agent.execute(kernel_id, None, "query", "1", {}, 5)
    assert failure.value.kind == "gone"


async def test_a_killed_kernel_reports_why_it_exited(subject: Subject) -> None:
    async with subject.fresh() as kernel_id:
        assert subject.agent.kernel_exit(kernel_id) is None
        suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
        with contextlib.suppress(AgentError):
            await subject.agent.execute(kernel_id, None, "query", suicide, {}, 10)

        async def reported() -> bool:
            return any(e.kernel_id == kernel_id for e in subject.exits)

        await _eventually(reported)
        exit_info = subject.agent.kernel_exit(kernel_id)
    event = next(e for e in subject.exits if e.kernel_id == kernel_id)
    assert "signal 9" in event.reason
    assert exit_info is not None
    assert "signal 9" in exit_info.reason


async def test_the_capacity_is_what_was_configured(subject: Subject) -> None:
    capacity = await subject.agent.capacity()
    assert capacity["cpu"] == 2
    assert capacity["mem"] == 2 * GiB
