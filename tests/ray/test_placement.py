"""Sessions on a Ray cluster: placed by what they ask for, refused, queued, and failed over.

Everything goes through the API with our SDK, as a user would see it: where a session runs
(GraphQL's ``containers { agent }`` names the node), the 400 for a request no node can hold,
PENDING with a reason while the cluster is full, and ERROR with a reason when a node dies.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from ai.backend.client.config import APIConfig
from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from ..integration.conftest import run
from .conftest import RayCluster, restart
from .raycluster import assert_loopback_only


def _node_of(api: Session, compute: Any) -> str:
    """The Ray node id of the node a session's kernel runs on."""
    detail = api.Admin.query(
        "query($id: UUID!) { compute_session(id: $id) { containers { agent } } }",
        {"id": str(compute.id)},
    )
    agent = str(detail["compute_session"]["containers"][0]["agent"])
    assert agent.startswith("ray:"), agent
    return agent.removeprefix("ray:")


def _wait_status(compute: Any, wanted: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (info := compute.get_info())["status"] != wanted:
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    return dict(info)


def test_sessions_land_where_their_resources_are(
    api: Session, new_session: Callable[..., Any], ray_cluster: RayCluster
) -> None:
    gpu = new_session(resources={"cpu": 1, "mem": "512m", "cuda.device": 1})
    shares = new_session(resources={"cpu": 1, "mem": "512m", "cuda.shares": "0.5"})
    assert _node_of(api, gpu) == ray_cluster.node_ids[1]
    assert _node_of(api, shares) == ray_cluster.node_ids[2]
    visible = run(gpu, "import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")[0]
    assert len(visible.strip().split(",")) == 1
    assert run(shares, "print('on node 3')")[0] == "on node 3\n"
    assert_loopback_only()


def test_a_request_no_node_can_hold_is_refused(api: Session) -> None:
    cases = [
        ({"cpu": 1, "cuda.device": 3}, "cuda.device: 3 requested, the largest node"),
        ({"cpu": 16}, "cpu: 16 requested, the largest node of the Ray cluster has 8"),
        # Each fits some node, but no node has both.
        ({"cpu": 1, "cuda.device": 1, "cuda.shares": 1}, "no single node"),
    ]
    for resources, message in cases:
        with pytest.raises(BackendAPIError) as e:
            api.ComputeSession.get_or_create("python", resources=resources)
        assert e.value.status == 400, resources
        assert message in e.value.data.get("msg", ""), e.value.data


def test_a_session_beyond_free_capacity_waits_then_runs(
    api: Session, new_session: Callable[..., Any], ray_cluster: RayCluster
) -> None:
    holder = new_session(resources={"cpu": 1, "mem": "512m", "cuda.device": 2})
    waiting = new_session(resources={"cpu": 1, "mem": "512m", "cuda.device": 1}, enqueue_only=True)
    deadline = time.monotonic() + 20
    while not (info := waiting.get_info())["statusInfo"]:
        assert time.monotonic() < deadline, "the scheduler never said why the session waits"
        time.sleep(0.2)
    assert info["status"] == "PENDING"
    assert "waiting for a node of the Ray cluster with" in info["statusInfo"]
    assert "cuda.device 1" in info["statusInfo"]
    time.sleep(2)
    assert waiting.get_info()["status"] == "PENDING"
    holder.destroy()
    _wait_status(waiting, "RUNNING")
    assert _node_of(api, waiting) == ray_cluster.node_ids[1]
    assert run(waiting, "print('my turn')")[0] == "my turn\n"


def test_sessions_keep_running_while_the_server_restarts(server: RunningServer) -> None:
    """The kernels live on the cluster: a restarted server finds them again, state and all."""
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as api:
        compute = api.ComputeSession.get_or_create("python", name=f"r-{uuid.uuid4().hex[:8]}")
        run(compute, "answer = 42")
        node = _node_of(api, compute)
    restart(server)
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    with Session(config=config) as api:
        compute = api.ComputeSession.from_session_id(compute.id)
        try:
            assert compute.get_info()["status"] == "RUNNING"
            assert run(compute, "print(answer)")[0] == "42\n"
            assert _node_of(api, compute) == node
        finally:
            compute.destroy()


def test_a_dead_node_fails_its_sessions_and_the_rest_go_on(
    api: Session, new_session: Callable[..., Any], ray_cluster: RayCluster
) -> None:
    doomed = new_session(resources={"cpu": 1, "mem": "512m", "cuda.shares": 1})
    survivor = new_session(resources={"cpu": 1, "mem": "512m", "cuda.device": 1})
    node3 = ray_cluster.node_ids[2]
    assert _node_of(api, doomed) == node3
    run(survivor, "state = 'kept'")
    ray_cluster.cluster.remove_node(ray_cluster.node(3), allow_graceful=False)
    try:
        info = _wait_status(doomed, "ERROR", timeout=60)
        assert f"the Ray node {node3} running the kernel died" in info["statusInfo"]
        # The other node's session is untouched, and the API keeps answering.
        assert survivor.get_info()["status"] == "RUNNING"
        assert run(survivor, "print(state)")[0] == "kept\n"
        other = new_session(resources={"cpu": 1, "mem": "256m"})
        assert run(other, "print('still scheduling')")[0] == "still scheduling\n"
        # Only node 3 offered cuda.shares: now nothing can.
        with pytest.raises(BackendAPIError) as e:
            api.ComputeSession.get_or_create("python", resources={"cuda.shares": 1})
        assert e.value.status == 400
    finally:
        # A replacement node 3 joins; the server starts its agent and places sessions there.
        replacement = ray_cluster.replace_node(3)
    _wait_for_node(api, new_session, replacement)


def _wait_for_node(api: Session, new_session: Callable[..., Any], node_id: str) -> None:
    deadline = time.monotonic() + 60
    compute = None
    while compute is None:
        try:
            compute = new_session(resources={"cpu": 1, "mem": "256m", "cuda.shares": 1})
        except BackendAPIError as e:
            # Until the server has seen the node join, nothing offers cuda.shares.
            if e.status != 400 or time.monotonic() > deadline:
                raise
            time.sleep(1)
    assert _node_of(api, compute) == node_id
    assert run(compute, "print('new node')")[0] == "new node\n"
