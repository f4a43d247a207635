"""The Ray backend's pure parts, without a cluster: slot translation and the node relay."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from portside.agent.ray.cluster import bundle_for, keeps_to_loopback, slots_from_ray
from portside.agent.ray.node import node_config
from portside.agent.ray.relay import Relay
from portside.appproxy.connect import ConnectError, open_socket
from portside.config import Config

GiB = 1024**3


def test_ray_resources_become_slots_without_rays_own_bookkeeping() -> None:
    node = {
        "CPU": 8.0,
        "memory": 40.0 * GiB,
        "GPU": 2.0,
        "cuda.shares": 0.5,
        "object_store_memory": 83886080.0,
        "node:127.0.0.1": 1.0,
        "node:__internal_head__": 1.0,
        "accelerator_type:A100": 1.0,
        "CPU_group_0_3f2a": 1.0,
        "bundle_group_3f2a": 1000.0,
    }
    assert slots_from_ray(node) == {
        "cpu": Decimal(8),
        "mem": Decimal(40 * GiB),
        "cuda.device": Decimal(2),
        "cuda.shares": Decimal("0.5"),
    }


def test_a_sessions_slots_become_one_bundle() -> None:
    slots = {
        "cpu": Decimal("0.5"),
        "mem": Decimal(GiB),
        "cuda.device": Decimal(1),
        "cuda.shares": Decimal("0.25"),
        "tpu": Decimal(0),
    }
    assert bundle_for(slots) == {"CPU": 0.5, "memory": float(GiB), "GPU": 1.0, "cuda.shares": 0.25}


@pytest.mark.parametrize(
    ("agent", "loopback"),
    [
        ({"ray_address": "local"}, True),
        ({"ray_address": "127.0.0.1:6379"}, True),
        ({"ray_address": "localhost:6379"}, True),
        ({"ray_address": "10.0.0.5:6379"}, False),
        ({"ray_address": "auto"}, False),
        ({"ray_address": "auto", "ray_node_ip": "127.0.0.1"}, True),
        ({"ray_address": "local", "ray_node_ip": "10.0.0.5"}, False),
    ],
)
def test_which_configurations_keep_ray_on_loopback(agent: dict[str, str], loopback: bool) -> None:
    config = Config.model_validate({"agent": {"backend": "ray", **agent}})
    assert keeps_to_loopback(config) is loopback


def test_a_node_agent_sees_its_node_as_its_machine(tmp_path: Path) -> None:
    server = Config.model_validate({"data_dir": str(tmp_path), "agent": {"pool_size": 3}})
    slots = {"cpu": "8", "mem": str(40 * GiB), "cuda.device": "2", "cuda.shares": "0.5"}
    config = node_config(server.model_dump(mode="json"), str(tmp_path / "node"), slots)
    assert config.data_dir == tmp_path / "node"
    assert config.agent.pool_size == 3
    assert (config.resources.cpu, config.resources.mem) == (8, str(40 * GiB))
    assert config.resources.mock_cuda.devices == 2
    assert config.resources.mock_cuda.shares == Decimal("0.5")
    assert config.resources.detect_gpus is False


async def test_the_relay_refuses_strangers_and_unknown_sessions() -> None:
    known = {"k1": "/nonexistent/connect.sock"}

    def broker_path(kernel_id: str) -> str:
        return known[kernel_id]

    relay = Relay("127.0.0.1", broker_path)
    await relay.start()
    endpoint = {
        "kind": "relay",
        "host": "127.0.0.1",
        "port": relay.port,
        "token": relay.token,
        "kernel_id": "k1",
        "app_port": 8080,
    }
    try:
        with pytest.raises(ConnectError, match="token is wrong"):
            await open_socket({**endpoint, "token": "guess"})
        with pytest.raises(ConnectError, match="not running on this node"):
            await open_socket({**endpoint, "kernel_id": "k2"})
        with pytest.raises(ConnectError):
            await open_socket(endpoint)  # the kernel's broker is not there
    finally:
        await relay.close()
        await asyncio.sleep(0)
