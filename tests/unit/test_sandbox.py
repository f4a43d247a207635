"""A sandbox that fails to start, or whose start is given up on, leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from portside.agent.base import AgentError, MountSpec
from portside.agent.local.sandbox import Holder, reap, start_holder


def children() -> set[int]:
    """The child processes of this test's process, ended but uncollected ones included."""
    return {child.pid for child in psutil.Process().children()}


async def start(
    tmp_path: Path, mounts: tuple[MountSpec, ...] = ()
) -> tuple[Holder, subprocess.Popen[bytes]]:
    workdir = tmp_path / "work"
    rundir = tmp_path / "run"
    workdir.mkdir(exist_ok=True)
    rundir.mkdir(exist_ok=True)
    return await start_holder(
        hostname="s-test",
        workdir=workdir,
        rundir=rundir,
        runtime=[],
        mounts=mounts,
        cgroup_procs=[],
    )


async def test_a_started_sandbox_ends_with_its_holder_and_is_collected(tmp_path: Path) -> None:
    before = children()
    holder, bwrap = await start(tmp_path)
    assert bwrap.pid in children()
    os.kill(holder.init_pid, signal.SIGKILL)
    await asyncio.wait_for(reap(bwrap), 10)
    assert bwrap.returncode is not None
    assert children() <= before


async def test_a_sandbox_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    missing = MountSpec(
        name="data",
        host_path=str(tmp_path / "no-such-folder"),
        kernel_path="/home/work/data",
        read_only=False,
    )
    before = children()
    with pytest.raises(AgentError, match=r"the sandbox did not start: .*no-such-folder"):
        await start(tmp_path, (missing,))
    assert children() <= before


async def test_a_start_cancelled_at_any_point_leaves_no_sandbox(tmp_path: Path) -> None:
    # A start takes a few milliseconds; cancelled after 0 to 20 ms, some starts are caught
    # before bubblewrap runs, some while it is being started, some while it builds the
    # sandbox, and some once it has started.
    before = children()
    for step in range(40):
        starting = asyncio.ensure_future(start(tmp_path))
        await asyncio.sleep(step * 0.0005)
        starting.cancel()
        try:
            holder, bwrap = await starting
        except asyncio.CancelledError:
            pass
        else:
            os.kill(holder.init_pid, signal.SIGKILL)
            await asyncio.wait_for(reap(bwrap), 10)
        # Whatever the start had got to, nothing of it runs on or is left uncollected.
        assert children() <= before, f"cancelled after {step * 0.5} ms"
