"""A three-node Ray cluster on loopback and a Portside server using it, shared by tests/ray.

Node 1 (the head) and node 3 are small; node 2 is the large one and the only one with (mock)
GPUs, enough for the seed's "8 CPUs, 32 GiB, 2 CUDA devices" example; only node 3 offers
fractional GPU shares (``cuda.shares``).  So where a session lands follows from what it asks.
The server's own ``[resources]`` are left out on purpose: with the Ray backend, capacity is
the cluster's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..e2e.examples import OURS, ClientPython
from ..harness import RunningServer, start_server
from ..integration.conftest import api, new_session
from .raycluster import (
    LOOPBACK_ENV,
    GiB,
    assert_loopback_only,
    kill_node_kernels,
    loopback_cluster,
    node_args,
    require_ray,
)

#: Node 1 is the head.  Keys are Cluster.add_node's arguments.
NODES: list[dict[str, Any]] = [
    {"num_cpus": 2, "memory": 4 * GiB},
    {"num_cpus": 8, "memory": 40 * GiB, "num_gpus": 2},
    {"num_cpus": 2, "memory": 4 * GiB, "resources": {"cuda.shares": 4}},
]

RAY_CONFIG = """
dev = true
log_level = "info"
max_upload_file_size = 4194304

[appproxy]
port = 0

[agent]
backend = "ray"
ray_address = "{address}"
pool_size = 1
"""


@dataclass
class RayCluster:
    """The running cluster and its nodes' ids, in the order of ``NODES``."""

    cluster: Any
    node_ids: list[str]
    temp_dir: Path
    #: Where servers on this cluster keep their nodes' kernels, to end what is left of them.
    node_roots: list[Path] = field(default_factory=list)

    def node(self, index: int) -> Any:
        """The ``ray._private.node.Node`` of node ``index`` (1-based, as in the docstring)."""
        wanted = self.node_ids[index - 1]
        for node in self.cluster.list_all_nodes():
            if node.node_id == wanted:
                return node
        raise LookupError(wanted)

    def replace_node(self, index: int) -> str:
        """Starts a node like node ``index`` of ``NODES`` in its place; its id."""
        node = self.cluster.add_node(**node_args(self.temp_dir, NODES[index - 1]))
        self.node_ids[index - 1] = node.node_id
        return str(node.node_id)


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    require_ray()
    temp_dir = tmp_path_factory.mktemp("r")
    with loopback_cluster(temp_dir, NODES) as (cluster, nodes):
        running = RayCluster(cluster, [node.node_id for node in nodes], temp_dir)
        yield running
    # Only now: until their node agents are gone, they refill their warm pools.
    for root in running.node_roots:
        kill_node_kernels(root)


@pytest.fixture(scope="package")
def server(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """``portside serve`` with ``backend = "ray"``, joined to the test cluster."""
    data_dir = tmp_path_factory.mktemp("srv")
    ray_cluster.node_roots.append(data_dir / "nodes")
    running = start_server(
        data_dir,
        config_text=RAY_CONFIG.format(address=ray_cluster.cluster.address),
        extra_env=LOOPBACK_ENV,
        timeout=120,
    )
    try:
        yield running
        assert_loopback_only()
    finally:
        code = running.stop()
        if code not in (0, -15):
            print(running.log_tail())


def restart(server: RunningServer) -> None:
    """Stops the server, leaving its sessions running on the cluster, and starts it again.

    The same object then describes the new process (its port is a new one).
    """
    server.stop(keep_kernels=True)
    config_text = (server.data_dir / "portside-test.toml").read_text()
    again = start_server(
        server.data_dir, config_text=config_text, extra_env=server.extra_env, timeout=120
    )
    server.api_url, server.process, server.info = again.api_url, again.process, again.info


@pytest.fixture
def client() -> ClientPython:
    """The seed examples run with our SDK here (tests/e2e runs them with every client)."""
    return OURS


#: The SDK session and session factory of tests/integration, here on this package's server.
__all__ = ["api", "new_session"]
