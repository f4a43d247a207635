"""Joining (or starting) a Ray cluster, and translating Portside's slots into Ray's resources.

Ray is imported only here and in the actors, so a server on the local backend never needs it.
The translations are pure functions: a session's ``cpu``, ``mem``, ``cuda.device`` become Ray's
``CPU``, ``memory`` (bytes) and ``GPU``; any other slot (``cuda.shares``, a custom accelerator)
keeps its name as a Ray custom resource.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from portside.config import Config
from portside.resources import Slots, parse_binary_size

log = logging.getLogger("portside.agent.ray")

#: The Ray namespace of Portside's named actors and placement groups: every API server joining
#: the cluster finds the same node agents and reservations there.
NAMESPACE = "portside"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

_RAY_TO_SLOT = {"CPU": "cpu", "memory": "mem", "GPU": "cuda.device"}
_SLOT_TO_RAY = {slot: name for name, slot in _RAY_TO_SLOT.items()}


def _is_internal(name: str) -> bool:
    """Resources Ray keeps for itself: node labels, the object store, placement-group shares."""
    return (
        name.startswith(("node:", "accelerator_type:"))
        or name == "object_store_memory"
        or "_group_" in name
        or name == "bundle"
    )


def slots_from_ray(resources: Mapping[str, float]) -> Slots:
    """A node's (or a cluster's) Ray resources as Portside slots."""
    slots: Slots = {}
    for name, amount in resources.items():
        if _is_internal(name) or amount <= 0:
            continue
        slot = _RAY_TO_SLOT.get(name, name)
        # Ray keeps amounts as fixed-point floats; 4 decimals is its own granularity.
        value = Decimal(int(amount)) if slot == "mem" else Decimal(str(round(amount, 4)))
        slots[slot] = value.normalize() if value != value.to_integral_value() else value
    return slots


def bundle_for(slots: Mapping[str, Decimal]) -> dict[str, float]:
    """The placement-group bundle that holds a session with these slots on one node."""
    bundle: dict[str, float] = {}
    for slot, amount in slots.items():
        if amount <= 0:
            continue
        name = _SLOT_TO_RAY.get(slot, slot)
        bundle[name] = float(int(amount)) if slot == "mem" else float(amount)
    return bundle


@dataclass(frozen=True, slots=True)
class NodeView:
    node_id: str
    alive: bool
    address: str
    slots: Slots


def list_nodes() -> list[NodeView]:
    """Every node the cluster has known, alive or dead (a blocking call: run it in a thread)."""
    return [
        NodeView(
            node_id=node["NodeID"],
            alive=bool(node["Alive"]),
            address=str(node.get("NodeManagerAddress", "")),
            slots=slots_from_ray(node.get("Resources", {})),
        )
        for node in _ray_nodes()
    ]


def _ray_nodes() -> list[dict[str, Any]]:
    import ray

    # Typed as Any: Ray's annotations are partial, and absent where Ray is not installed.
    table: Any = ray.nodes
    return list(table())


def _host_of(address: str) -> str:
    if address.startswith("ray://"):
        address = address.removeprefix("ray://")
    host, _, _ = address.rpartition(":")
    return host.strip("[]") or address


def keeps_to_loopback(config: Config) -> bool:
    """Whether every Ray connection of this server must stay on 127.0.0.1."""
    agent = config.agent
    if agent.ray_node_ip:
        return agent.ray_node_ip in LOOPBACK_HOSTS
    return agent.ray_address == "local" or _host_of(agent.ray_address) in LOOPBACK_HOSTS


def _local_head_options(config: Config) -> dict[str, Any]:
    """A head for trying the backend on one machine: this machine's slots, files in data_dir."""
    res = config.resources
    temp_dir = config.data_dir / "ray"
    temp_dir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "include_dashboard": False,
        "_temp_dir": str(temp_dir),
    }
    if res.cpu:
        options["num_cpus"] = res.cpu
    mem = parse_binary_size(res.mem)
    if mem:
        options["_memory"] = int(mem)
    if res.mock_cuda.devices:
        options["num_gpus"] = res.mock_cuda.devices
    if res.mock_cuda.shares:
        options["resources"] = {"cuda.shares": float(res.mock_cuda.shares)}
    return options


_RAY_TIMESTAMP = "_ray_timestamp_ns"


def _drop_ray_timestamps() -> None:
    """Keeps Ray's ``_ray_timestamp_ns`` off Portside's log lines.

    Importing Ray installs a log record factory that adds it to every record of the process;
    Portside's formatters print every extra field.  Ray's own formatters do without it.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "drops_ray_timestamp", False):
        return

    def without_ray_timestamp(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.__dict__.pop(_RAY_TIMESTAMP, None)
        return record

    without_ray_timestamp.drops_ray_timestamp = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(without_ray_timestamp)


def connect(config: Config) -> bool:
    """Joins the configured cluster (or starts a local head); True if this server started it.

    On loopback, Ray would still rewrite ``127.0.0.1`` into the machine's routed address when
    it resolves a cluster address; ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is the switch that
    makes it keep loopback (it must be set before Ray is imported, and is inherited by a local
    head's processes).
    """
    loopback = keeps_to_loopback(config)
    if loopback:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray
    from ray._private import ray_constants

    if loopback and ray_constants.ENABLE_RAY_CLUSTER:
        # Ray was imported before the switch above could take effect (a test process, say).
        ray_constants.ENABLE_RAY_CLUSTER = False
    _drop_ray_timestamps()
    if ray.is_initialized():
        return False
    agent = config.agent
    node_ip = agent.ray_node_ip or ("127.0.0.1" if loopback else None)
    options: dict[str, Any] = {
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if node_ip:
        options["_node_ip_address"] = node_ip
    if agent.ray_address == "local":
        options.update(_local_head_options(config))
        ray.init(address="local", **options)
        log.warning("started a local Ray head (its files are in %s)", config.data_dir / "ray")
        return True
    ray.init(address=agent.ray_address, **options)
    return False
