"""The Agent protocol: what the server asks of whatever runs kernels.

It is small and shaped like a process API (create, destroy, execute, files, terminal), and every
argument and result is a plain serializable value, so the same calls can cross a process or
machine boundary: the local backend answers them in this process, the Ray backend in actors on
other nodes.  Both pass the same contract tests (tests/contract).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class MountSpec:
    """A data folder to bind into the sandbox."""

    name: str
    host_path: str
    kernel_path: str
    read_only: bool


@dataclass(frozen=True, slots=True)
class KernelSpec:
    session_id: str
    #: The canonical image name; the agent maps it to a runtime.
    image: str
    #: Granted slots as strings, e.g. ``{"cpu": "2", "mem": "1073741824"}``.
    resources: dict[str, str]
    environ: dict[str, str] = field(default_factory=dict)
    mounts: tuple[MountSpec, ...] = ()
    bootstrap_script: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelSpec:
        data = dict(data)
        data["mounts"] = tuple(MountSpec(**m) for m in data.get("mounts", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class KernelInfo:
    """What the server stores about a running kernel, to reach it again after a restart."""

    kernel_id: str
    agent_id: str
    #: How the kernel is isolated, in words (``bwrap+cgroup-v1``, ``process``, ...).
    isolation: str
    #: The host name or address where the kernel's apps listen.
    host: str
    #: Backend-specific details (process ids, paths); opaque to the server.
    attach: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelInfo:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ExecResult:
    """One answer of an execute loop (runtime-semantics.md s.1.3)."""

    run_id: str
    status: str
    exit_code: int | None
    options: dict[str, Any] | None
    console: list[list[Any]]

    def to_api(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "status": self.status,
            "exitCode": self.exit_code,
            "options": self.options,
            "files": [],
            "console": self.console,
        }


@dataclass(frozen=True, slots=True)
class KernelExit:
    """Why a kernel stopped without being asked to."""

    kernel_id: str
    reason: str
    out_of_memory: bool = False
    signal: int | None = None
    exit_code: int | None = None


class AgentError(Exception):
    """An agent could not do what was asked; ``kind`` says how the API should report it."""

    def __init__(self, message: str, kind: str = "internal") -> None:
        super().__init__(message)
        self.kind = kind


ExitCallback = Callable[[KernelExit], Awaitable[None]]


class Pty(Protocol):
    """An interactive terminal in a kernel's sandbox."""

    def output(self) -> AsyncIterator[bytes]: ...

    async def write(self, data: bytes) -> None: ...

    async def resize(self, rows: int, cols: int) -> None: ...

    async def close(self) -> None: ...


class Agent(Protocol):
    agent_id: str
    isolation: str

    async def start(self, live: list[KernelInfo], on_exit: ExitCallback) -> dict[str, bool]:
        """Starts the agent, re-attaching ``live`` kernels; returns which of them survived."""

    async def close(self) -> None: ...

    async def capacity(self) -> dict[str, Decimal]:
        """The slots this agent offers in total."""

    async def create_kernel(self, spec: KernelSpec) -> KernelInfo: ...

    async def destroy_kernel(self, kernel_id: str) -> None: ...

    async def restart_kernel(self, kernel_id: str) -> None:
        """Replaces the kernel process: state is lost, files are kept."""

    async def execute(
        self,
        kernel_id: str,
        run_id: str | None,
        mode: str,
        code: str,
        opts: dict[str, Any],
        flush_timeout: float | None,
    ) -> ExecResult: ...

    def holds_run(self, kernel_id: str, run_id: str) -> bool:
        """Whether this agent instance has the run (its output and input prompt) in hand."""

    async def interrupt(self, kernel_id: str) -> None: ...

    async def complete(self, kernel_id: str, code: str, cursor: int) -> list[str]: ...

    async def upload_file(self, kernel_id: str, path: str, data: bytes, max_size: int) -> None: ...

    async def download_tar(self, kernel_id: str, path: str, max_size: int) -> bytes: ...

    async def list_files(self, kernel_id: str, path: str) -> dict[str, Any]: ...

    async def get_logs(self, kernel_id: str) -> str: ...

    async def open_pty(self, kernel_id: str, rows: int, cols: int) -> Pty: ...

    async def start_app(
        self,
        kernel_id: str,
        name: str,
        port: int,
        command: list[str] | None,
        env: dict[str, str],
        *,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Starts an app in the session: ``{"status": "started"|"running"|"failed", ...}``.

        ``wait`` waits until the app listens on ``port``.
        """

    async def stop_app(self, kernel_id: str, name: str) -> None: ...

    def app_endpoint(self, kernel_id: str, port: int) -> dict[str, Any]:
        """How the app proxy connects to a port inside the session (see appproxy/connect.py)."""

    def knows(self, kernel_id: str) -> bool:
        """Whether this agent instance is connected to the kernel."""

    async def adopt(self, info: KernelInfo) -> bool:
        """Connects to a kernel another server started; False if it is gone."""

    def kernel_exit(self, kernel_id: str) -> KernelExit | None:
        """Why a kernel this agent knew has died, if it has."""


@runtime_checkable
class Placer(Protocol):
    """An agent whose cluster places sessions on nodes itself (the Ray backend).

    Such an agent has no single capacity to plan against: the server keeps a session PENDING
    until ``reserve`` says the cluster has found it a place, and leaves the choice of node and
    the order of the queue to the cluster.
    """

    def offered(self) -> dict[str, Decimal]:
        """The slots the cluster's live nodes offer together, as last seen (nodes come and go)."""

    def never_fits(self, requested: Mapping[str, Decimal]) -> list[str]:
        """Why no node could ever hold ``requested``, even empty; an empty list if one could."""

    async def reserve(
        self, session_id: str, requested: Mapping[str, Decimal], on_placed: Callable[[], None]
    ) -> str | None:
        """Queues a place for the session (once); None when it has one, else why it waits.

        ``on_placed`` is called when a waiting reservation gets its place.  ``create_kernel``
        for the session then starts its kernel there.
        """

    async def release_unwanted(self, wanted: set[str]) -> None:
        """Gives up the places of sessions not in ``wanted`` that have no kernel yet."""


def placer_of(agent: Agent) -> Placer | None:
    """The agent as a ``Placer`` when it places sessions itself, else None."""
    return agent if isinstance(agent, Placer) else None
