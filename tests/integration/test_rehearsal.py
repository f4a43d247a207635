"""The local agent's rehearsal kernel, run before it fills its pool."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from pathlib import Path

import pytest

from portside.agent.base import KernelExit, KernelSpec
from portside.agent.local.agent import LocalAgent
from portside.config import Config, ImageConfig
from portside.images import ImageRegistry

from ..harness import kill_leftover_kernels

IMAGE = "python:latest"
GATHERED = "the zygote gathered the code its kernels run"


async def test_the_zygote_gathers_the_code_a_rehearsal_ran_before_the_pool_fills(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path),
            "agent": {"pool_size": 1},
            "resources": {"cpu": 2, "mem": "2g", "detect_gpus": False},
            "images": {IMAGE: ImageConfig().model_dump()},
        }
    )
    agent = LocalAgent(config, ImageRegistry(config.images, os.uname().machine))
    caplog.set_level(logging.INFO, logger="portside.agent")

    async def on_exit(event: KernelExit) -> None:
        pass

    await agent.start([], on_exit)
    try:
        (pool,) = agent.pools.values()
        async with asyncio.timeout(120):
            while not pool.ready:
                await asyncio.sleep(0.05)
        (record,) = [r for r in caplog.records if r.getMessage() == GATHERED]
        gathered = {k: getattr(record, k) for k in ("functions", "pages_before", "pages_after")}
        # A kernel's start and first cell run several hundred of the zygote's functions, whose
        # code lay over a page each or so; gathered, it fills a fraction of those pages.
        assert gathered["functions"] > 300, gathered
        assert gathered["pages_after"] * 2 < gathered["pages_before"], gathered
        # The rehearsal kernel is gone; the pool's kernel was forked after the gathering.
        assert list(agent.kernels) == pool.ready
        assert [p.parent.name for p in agent.run_root.glob("*/state.json")] == [
            kernel.base.name for kernel in agent.kernels.values()
        ]
        info = await agent.create_kernel(
            KernelSpec(session_id=str(uuid.uuid4()), image=IMAGE, resources={})
        )
        result = await agent.execute(info.kernel_id, None, "query", "print(6 * 7)", {}, None)
        assert result.status == "finished"
        assert result.console == [["stdout", "42\n"]]
    finally:
        await agent.close()
        kill_leftover_kernels(config.data_dir)
