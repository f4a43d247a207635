"""A kernel that dies while starting is reported at once, not after the connect timeout."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from portside.agent.base import AgentError, KernelSpec
from portside.agent.local.kernel import LocalKernel


def unsandboxed_kernel(tmp_path: Path, kernel_id: str) -> LocalKernel:
    return LocalKernel(
        kernel_id=kernel_id,
        spec=KernelSpec(session_id="s", image="python", resources={}),
        base=tmp_path / "run-base",
        scratch=tmp_path / "scratch",
        uid=None,
        sandboxed=False,
        cgroup=None,
        devices=[],
    )


async def test_a_kernel_that_exits_before_its_control_socket_fails_fast(tmp_path: Path) -> None:
    kernel = unsandboxed_kernel(tmp_path, "7d4f0c4e-3f43-4a4e-9a51-0c2f4f0f6a10")
    # The control socket never appears; the kernel's process ends a moment after the start.
    asyncio.get_running_loop().call_later(0.2, kernel.exited.set)
    started = time.monotonic()
    with pytest.raises(AgentError, match="exited while it was starting"):
        await kernel.connect(timeout=30)
    assert time.monotonic() - started < 5


async def test_a_kernel_that_exits_before_it_announces_itself_fails_fast(tmp_path: Path) -> None:
    kernel = unsandboxed_kernel(tmp_path, "0b6d7f38-2b8e-4a55-8f4c-6c0f3e6b2d71")
    kernel.rundir.mkdir(parents=True)
    # A new kernel says it is up through a FIFO; this one never does, and its process ends.
    kernel.expect_ready()
    asyncio.get_running_loop().call_later(0.2, kernel.exited.set)
    started = time.monotonic()
    with pytest.raises(AgentError, match="exited while it was starting"):
        await kernel.connect(timeout=30)
    assert time.monotonic() - started < 5
    await kernel.disconnect()
