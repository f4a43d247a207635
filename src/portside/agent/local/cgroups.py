"""Per-kernel cgroups: memory, cpu and pids limits, and out-of-memory detection.

cgroup v2 is used where its memory, cpu and pids controllers are enabled; otherwise the v1
hierarchies (these machines mount v1 memory/cpu/pids and offer only hugetlb in v2).  Without a
writable hierarchy limits fall back to rlimits, set by the zygote in the kernel process.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

log = logging.getLogger("portside.agent.cgroups")

ROOT = Path("/sys/fs/cgroup")
#: The controllers a kernel's limits need, in v2 and as v1 hierarchies.
CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000
#: Enough processes for real work, few enough to stop a fork bomb.
DEFAULT_PIDS_MAX = 1024


@dataclass(frozen=True, slots=True)
class Limits:
    cpu: Decimal | None
    mem: int | None
    pids: int = DEFAULT_PIDS_MAX


class CgroupDriver:
    """Creates, limits and removes one cgroup per kernel under a ``portside`` parent."""

    version: str

    def __init__(self, version: str, paths: dict[str, Path]) -> None:
        self.version = version
        #: Controller name (or "unified") to the ``portside`` parent directory.
        self.paths = paths
        #: The limits last written to each kernel's cgroup: a pooled kernel's limits are
        #: rewritten when a session takes it, and only what changed needs writing.
        self._written: dict[str, Limits] = {}

    @classmethod
    def detect(cls, instance: str) -> CgroupDriver | None:
        """The usable hierarchy, with a parent cgroup ``instance`` for this server's kernels."""
        unified = ROOT if (ROOT / "cgroup.controllers").exists() else ROOT / "unified"
        controllers_file = unified / "cgroup.controllers"
        if controllers_file.exists():
            enabled = set(controllers_file.read_text().split())
            if set(CONTROLLERS) <= enabled:
                parent = unified / instance
                try:
                    parent.mkdir(exist_ok=True)
                    (parent / "cgroup.subtree_control").write_text("+memory +cpu +pids")
                    return cls("v2", {"unified": parent})
                except OSError as e:
                    log.info("cgroup v2 is not usable: %s", e)
        paths = {}
        for controller in CONTROLLERS:
            base = ROOT / controller
            if not (base / "cgroup.procs").exists():
                return None
            parent = base / instance
            try:
                parent.mkdir(exist_ok=True)
            except OSError as e:
                log.info("cgroup v1 %s is not writable: %s", controller, e)
                return None
            paths[controller] = parent
        return cls("v1", paths)

    def _dirs(self, name: str) -> dict[str, Path]:
        return {controller: parent / name for controller, parent in self.paths.items()}

    def create(self, name: str, limits: Limits) -> list[str]:
        """Makes the kernel's cgroup; returns the ``cgroup.procs`` files to join it."""
        dirs = self._dirs(name)
        for path in dirs.values():
            path.mkdir(exist_ok=True)
        self.set_limits(name, limits)
        return [str(path / "cgroup.procs") for path in dirs.values()]

    def set_limits(self, name: str, limits: Limits) -> None:
        dirs = self._dirs(name)
        before = self._written.pop(name, None)
        mem_changed = before is None or before.mem != limits.mem
        cpu_changed = before is None or before.cpu != limits.cpu
        pids_changed = before is None or before.pids != limits.pids
        quota = int(limits.cpu * CPU_PERIOD_US) if limits.cpu else None
        if self.version == "v2":
            d = dirs["unified"]
            if mem_changed:
                (d / "memory.max").write_text(str(limits.mem) if limits.mem else "max")
            if before is None and (d / "memory.swap.max").exists():
                (d / "memory.swap.max").write_text("0")
            if cpu_changed:
                (d / "cpu.max").write_text(f"{quota or 'max'} {CPU_PERIOD_US}")
            if pids_changed:
                (d / "pids.max").write_text(str(limits.pids))
        else:
            mem, cpu = dirs["memory"], dirs["cpu"]
            if mem_changed:
                (mem / "memory.limit_in_bytes").write_text(str(limits.mem) if limits.mem else "-1")
                swap = mem / "memory.memsw.limit_in_bytes"
                if swap.exists() and limits.mem:
                    swap.write_text(str(limits.mem))
            if before is None:
                (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            if cpu_changed:
                (cpu / "cpu.cfs_quota_us").write_text(str(quota or -1))
            if pids_changed:
                (dirs["pids"] / "pids.max").write_text(str(limits.pids))
        self._written[name] = limits

    def oom_killed(self, name: str) -> bool:
        """Whether the kernel's cgroup has had a process killed for lack of memory."""
        dirs = self._dirs(name)
        path = (
            dirs["unified"] / "memory.events"
            if self.version == "v2"
            else (dirs["memory"] / "memory.oom_control")
        )
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except FileNotFoundError:
            return False
        return False

    def pids(self, name: str) -> list[int]:
        result: set[int] = set()
        for path in self._dirs(name).values():
            try:
                result.update(int(p) for p in (path / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                pass
        return sorted(result)

    def remove(self, name: str) -> bool:
        """Removes the kernel's cgroup; False while processes are still leaving it."""
        self._written.pop(name, None)
        removed = True
        for path in self._dirs(name).values():
            try:
                os.rmdir(path)
            except FileNotFoundError:
                pass
            except OSError:
                removed = False
        return removed

    def names(self) -> set[str]:
        """The kernel cgroups that exist, including ones a crashed server left behind."""
        return {p.name for parent in self.paths.values() for p in parent.iterdir() if p.is_dir()}


def remove_instance(instance: str, wait: float = 0.0) -> None:
    """Removes the parent cgroup ``instance`` and the kernel cgroups below it that are empty.

    A cgroup with processes in it cannot be removed, so a kernel that outlives its server keeps
    its own (and the parent).  ``wait`` gives the processes of kernels just killed that long to
    leave.  Each left-over cgroup would stay until the machine restarts, and every cgroup the
    kernel keeps makes creating the next one dearer.
    """
    parents = [ROOT / instance, ROOT / "unified" / instance]
    parents += [ROOT / controller / instance for controller in CONTROLLERS]
    deadline = time.monotonic() + wait
    for parent in parents:
        if not parent.is_dir():
            continue
        for path in [*(p for p in parent.iterdir() if p.is_dir()), parent]:
            while True:
                try:
                    os.rmdir(path)
                except FileNotFoundError:
                    pass
                except OSError:
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                break
