"""Trying the Ray backend on one machine: ``portside serve`` starts its own Ray head.

With ``ray_address = "local"`` the server starts a head on 127.0.0.1 with its files in
``<data_dir>/ray`` and this machine's configured slots, runs sessions on it, and when it stops,
ends those sessions' kernels and the head with them.
"""

from __future__ import annotations

import subprocess

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, running_server
from ..integration.conftest import run
from .raycluster import LOOPBACK_ENV, assert_loopback_only, kill_node_kernels, require_ray

LOCAL_HEAD_CONFIG = """
dev = true

[appproxy]
port = 0

[agent]
backend = "ray"
ray_address = "local"
pool_size = 0

[resources]
cpu = 3
mem = "6g"
detect_gpus = false

[resources.mock_cuda]
devices = 1
"""


def _processes_mentioning(text: str) -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if text in line and "ps -eo" not in line]


def test_serve_starts_a_local_head_and_ends_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    require_ray()
    data_dir = tmp_path_factory.mktemp("lh")
    try:
        with running_server(
            data_dir, config_text=LOCAL_HEAD_CONFIG, extra_env=LOOPBACK_ENV, timeout=120
        ) as server:
            config = APIConfig(
                endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1]
            )
            with Session(config=config) as api:
                compute = api.ComputeSession.get_or_create(
                    "python", resources={"cpu": 2, "mem": "1g", "cuda.device": 1}
                )
                assert compute.get_info()["status"] == "RUNNING"
                assert run(compute, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")[0]
                # The head offers what [resources] says: 3 CPUs, so 4 can never be had.
                with pytest.raises(BackendAPIError) as refused:
                    api.ComputeSession.get_or_create("python", resources={"cpu": 4})
                assert refused.value.status == 400
                assert "the largest node of the Ray cluster has 3" in refused.value.data["msg"]
                assert_loopback_only()
            assert (data_dir / "ray").is_dir()
        # Stopped gracefully: the head, its processes and the session's sandbox are gone.
        assert not _processes_mentioning(str(data_dir / "ray"))
        assert not _processes_mentioning(str(data_dir / "nodes"))
    finally:
        kill_node_kernels(data_dir / "nodes")
