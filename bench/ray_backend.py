"""What the Ray backend costs a user, against the local backend, in the same run.

Two servers with the same configuration but ``[agent] backend``, one after the other (never at
once, as each would take the other's cores): the local backend, then the Ray backend with a
head the server starts itself on 127.0.0.1 (``ray_address = "local"``).  On the Ray backend a
session is a placement group Ray must schedule, then a kernel its node agent (an actor) starts,
and every call crosses an actor call: the figures show what that adds.

- **create → first output**: from ``get_or_create`` until ``print(1)``'s output arrived, one
  creation a second (the warm pool refills between them), each destroyed before the pause.
- **print(1) round trip**: one SDK ``execute`` in a running session.

    .venv/bin/python -m bench.ray_backend [--creations 20] [--round-trips 50] [--pool-size 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness import (
    DEV_ADMIN,
    RunningServer,
    kernel_state_files,
    kill_leftover_kernels,
    start_server,
)

from ai.backend.client.config import APIConfig
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import AsyncSession
from bench.common import fmt, log, p50, percentile, run_code

BACKENDS = ("local", "ray")


def config_text(backend: str, pool_size: int) -> str:
    """Capacity that never limits, sessions kept for an hour, the chosen warm pool."""
    ray = 'ray_address = "local"\n' if backend == "ray" else ""
    return f"""
dev = true
idle_timeout = 3600

[resources]
cpu = 64
mem = "64g"
detect_gpus = false

[agent]
backend = "{backend}"
pool_size = {pool_size}
{ray}
[appproxy]
port = 0
"""


@dataclass
class Figures:
    first_output: list[float] = field(default_factory=list)
    create_call: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    server_start: float = 0.0


def _agent_dirs(data_dir: Path) -> list[Path]:
    """The data directories of the local agents: the server's own, or each Ray node's."""
    return [data_dir, *(data_dir / "nodes").glob("*/")]


def pooled_kernels(data_dir: Path) -> int:
    count = 0
    for agent_dir in _agent_dirs(data_dir):
        for state_file in kernel_state_files(agent_dir):
            with suppress(OSError, json.JSONDecodeError):
                count += bool(json.loads(state_file.read_text()).get("pooled"))
    return count


async def wait_pool(data_dir: Path, pool_size: int, timeout: float = 120) -> None:
    """Until the warm pool has ``pool_size`` kernels and stopped growing for a second."""
    deadline = time.monotonic() + timeout
    last, steady_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = pooled_kernels(data_dir)
        if count != last:
            last, steady_since = count, time.monotonic()
        elif count >= pool_size and time.monotonic() - steady_since > 1.0:
            return
        await asyncio.sleep(0.2)
    log(f"the warm pool did not settle ({last} kernels); going on")


@asynccontextmanager
async def server(backend: str, pool_size: int) -> AsyncIterator[tuple[RunningServer, float]]:
    # Short: Ray's socket paths under <data_dir>/ray must stay within 107 bytes.
    data_dir = Path(tempfile.mkdtemp(prefix=f"psb-{backend[0]}-"))
    running: RunningServer | None = None
    start = time.perf_counter()
    try:
        running = await asyncio.to_thread(
            start_server, data_dir, config_text=config_text(backend, pool_size), timeout=180
        )
        yield running, time.perf_counter() - start
    finally:
        if running is not None:
            await asyncio.to_thread(running.stop)
        for agent_dir in _agent_dirs(data_dir):
            kill_leftover_kernels(agent_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


async def measure(backend: str, args: argparse.Namespace) -> Figures:
    figures = Figures()
    async with server(backend, args.pool_size) as (running, started):
        figures.server_start = started
        log(f"{backend}: server up in {started:.1f} s; waiting for the warm pool")
        await wait_pool(running.data_dir, args.pool_size)
        config = APIConfig(
            endpoint=running.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1]
        )
        async with AsyncSession(config=config) as api:

            async def create() -> tuple[ComputeSession, float]:
                start = time.perf_counter()
                name = f"bench-{uuid.uuid4().hex[:8]}"
                session = await api.ComputeSession.get_or_create("python", name=name)
                return session, start

            # One unmeasured session: connections, caches, the node agent's first kernel.
            warm, _ = await create()
            await run_code(warm, "print(1)")
            await warm.destroy(forced=True)
            await wait_pool(running.data_dir, args.pool_size)
            log(f"{backend}: {args.creations} paced creations")
            for _ in range(args.creations):
                session, start = await create()
                created = time.perf_counter()
                out = await run_code(session, "print(1)")
                if out.stdout != "1\n":
                    raise RuntimeError(f"{backend}: unexpected output {out!r}")
                figures.first_output.append(time.perf_counter() - start)
                figures.create_call.append(created - start)
                await session.destroy(forced=True)
                await asyncio.sleep(args.pause)
            log(f"{backend}: {args.round_trips} print(1) round trips")
            session, _ = await create()
            try:
                for _ in range(5):
                    await run_code(session, "print(1)")
                for _ in range(args.round_trips):
                    start = time.perf_counter()
                    await run_code(session, "print(1)")
                    figures.round_trip.append(time.perf_counter() - start)
            finally:
                await session.destroy(forced=True)
    return figures


def table(results: dict[str, Figures]) -> list[list[str]]:
    ms = 1000.0
    local, ray = results["local"], results["ray"]
    metrics = [
        ("create → first output, p50", p50(local.first_output), p50(ray.first_output)),
        (
            "create → first output, p95",
            percentile(local.first_output, 95),
            percentile(ray.first_output, 95),
        ),
        ("create call alone, p50", p50(local.create_call), p50(ray.create_call)),
        ("print(1) round trip, p50", p50(local.round_trip), p50(ray.round_trip)),
        (
            "print(1) round trip, p95",
            percentile(local.round_trip, 95),
            percentile(ray.round_trip, 95),
        ),
    ]
    rows = [
        [name, fmt(a * ms, "ms"), fmt(b * ms, "ms"), f"{b / a:.1f}x" if a > 0 else "-"]
        for name, a, b in metrics
    ]
    rows.append(
        [
            "server start (to serving)",
            fmt(local.server_start, "s"),
            fmt(ray.server_start, "s"),
            "-",
        ]
    )
    return rows


def markdown(rows: list[list[str]]) -> str:
    lines = ["| metric | local backend | Ray backend | Ray / local |", "|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    results = {backend: await measure(backend, args) for backend in BACKENDS}
    print()
    print(
        f"Ray backend vs local backend ({args.creations} paced creations, "
        f"{args.round_trips} round trips, pool_size {args.pool_size}, one machine)"
    )
    print(markdown(table(results)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--creations", type=int, default=20)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between creations")
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--pool-size", type=int, default=2, help="warm kernels ([agent])")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
