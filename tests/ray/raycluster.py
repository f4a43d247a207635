"""Ray clusters for tests: several nodes on this machine, every connection on 127.0.0.1.

Ray's own test utility (``ray.cluster_utils.Cluster``) starts a head and nodes as local
processes, each with its resources (mock GPUs included), and can remove one to simulate a node
dying.  Ray would turn ``127.0.0.1`` into the machine's routed address when it resolves an
address; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set before Ray is imported, keeps it on
loopback, and ``assert_loopback_only`` checks that it did.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..harness import missing

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

GiB = 1024**3
#: Environment for processes that join a loopback cluster (a Portside server, say).
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def require_ray() -> None:
    """Ray is an optional extra: without it these tests skip, except in CI, where they fail."""
    try:
        import ray  # noqa: F401
    except ImportError:
        reason = "Ray is not installed: pip install 'portside[ray]'"
        missing(reason)


def node_args(temp_dir: Path, node: dict[str, Any]) -> dict[str, Any]:
    return {
        "node_ip_address": "127.0.0.1",
        "include_dashboard": False,
        "temp_dir": str(temp_dir),
        "memory": node.get("memory", 2 * GiB),
        "object_store_memory": 80 * 1024 * 1024,
        **{k: v for k, v in node.items() if k != "memory"},
    }


@contextmanager
def loopback_cluster(
    temp_dir: Path, nodes: list[dict[str, Any]]
) -> Iterator[tuple[Any, list[Any]]]:
    """A Ray cluster of ``nodes`` (the first is the head), its files under ``temp_dir``; with
    it, its nodes in the order of ``nodes`` (the cluster keeps them unordered).

    Node death is noticed within about two seconds, so a test of it does not wait long.
    """
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    # Ray imported earlier in this process, before the variable above was set, would not
    # have seen it.
    ray_constants.ENABLE_RAY_CLUSTER = False
    temp_dir.mkdir(parents=True, exist_ok=True)
    previous_tmpdir = os.environ.get("RAY_TMPDIR")
    # Ray writes the address of the newest cluster into $RAY_TMPDIR/ray: the test's, not /tmp.
    os.environ["RAY_TMPDIR"] = str(temp_dir)
    (temp_dir / "ray").mkdir(exist_ok=True)
    head = {
        **node_args(temp_dir, nodes[0]),
        # Not Ray's fixed default port: another cluster may run on this machine.
        "dashboard_agent_listen_port": None,
        # Two Python processes fewer to start: no autoscaler, no log forwarding to drivers.
        "no_monitor": True,
        "include_log_monitor": False,
        "_system_config": {
            "health_check_initial_delay_ms": 0,
            "health_check_period_ms": 500,
            "health_check_failure_threshold": 3,
        },
    }
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        added = [cluster.head_node]
        for node in nodes[1:]:
            added.append(cluster.add_node(**node_args(temp_dir, node)))
        cluster.wait_for_nodes()
        yield cluster, added
    finally:
        cluster.shutdown()
        if previous_tmpdir is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = previous_tmpdir


def kill_node_kernels(node_root: Path) -> None:
    """Ends the sandboxes node agents left (a removed node's, a pool's) under ``node_root``."""
    from ..harness import kill_leftover_kernels

    if node_root.is_dir():
        for node_dir in node_root.iterdir():
            kill_leftover_kernels(node_dir)


def _ray_side(pid: int) -> bool:
    """Ray's processes, and the Python processes that joined the cluster (tests, servers)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False
    return "ray" in cmdline or "_raylet" in maps


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host == "::1" or host.startswith("::ffff:127.")


def assert_loopback_only() -> None:
    """No Ray process (nor a process using Ray) listens on, or talks to, a non-loopback address."""
    for options in ("-Htnlp", "-Htnp"):
        lines = subprocess.run(
            ["ss", options], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        for line in lines:
            fields = line.split()
            pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
            if len(fields) < 5 or not any(_ray_side(pid) for pid in pids):
                continue
            local, peer = fields[3], fields[4]
            assert _is_loopback(local), f"a Ray-side socket is not on loopback: {line}"
            if not peer.endswith(":*"):
                assert _is_loopback(peer), f"a Ray-side socket is not on loopback: {line}"
