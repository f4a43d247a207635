"""How long a user waits: from the create call to the first output of ``print(1)``, and the
round trip of one ``print(1)`` afterwards.

Creations are paced so the warm pool can refill between them, which is how a person (or a
notebook front end) opens sessions; a back-to-back series shows what happens once the pool is
drained.  Every Portside session is made with a fresh name, so none is reused.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    DEFAULT_RUNTIME_COUNT,
    RawClient,
    Row,
    bench_main,
    direct_round_trips,
    kernel_gateway,
    log,
    p50,
    percentile,
    portside_server,
    run_code,
)

TARGET_FIRST_OUTPUT_MS = 100.0
TARGET_ROUND_TRIP_MS = 5.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("session_start")
    group.add_argument("--creations", type=int, default=30, help="paced Portside creations")
    group.add_argument(
        "--pause", type=float, default=1.0, help="seconds between paced creations (pool refill)"
    )
    group.add_argument(
        "--back-to-back", type=int, default=15, help="Portside creations without pauses"
    )
    group.add_argument("--jkg-creations", type=int, default=10, help="Kernel Gateway kernels")
    group.add_argument(
        "--round-trips", type=int, default=200, help="print(1) round trips each (a stable median)"
    )
    group.add_argument(
        "--paced-round-trips", type=int, default=20, help="print(1) round trips after a pause"
    )
    group.add_argument(
        "--think", type=float, default=1.5, help="seconds of pause before each paced round trip"
    )


@dataclass
class PortsideStart:
    first_output: list[float] = field(default_factory=list)
    create_call: list[float] = field(default_factory=list)
    first_execute: list[float] = field(default_factory=list)
    back_to_back: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    raw_round_trip: list[float] = field(default_factory=list)
    #: Each after a pause, as a person runs one cell, reads, then runs the next.
    paced_round_trip: list[float] = field(default_factory=list)
    #: The same code sent to the kernel directly, an unsigned GET / and a signed
    #: GET /session/{id}: what the REST round trip is made of.
    kernel_direct: list[float] = field(default_factory=list)
    hello: list[float] = field(default_factory=list)
    get_info: list[float] = field(default_factory=list)
    refill_s: float = 0.0
    pool_size: int = 0


@dataclass
class JkgStart:
    first_output: list[float] = field(default_factory=list)
    create_call: list[float] = field(default_factory=list)
    ws_open: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)
    round_trip_first_output: list[float] = field(default_factory=list)
    paced_round_trip: list[float] = field(default_factory=list)


async def measure_portside(args: argparse.Namespace) -> PortsideStart:
    result = PortsideStart(pool_size=args.pool_size)
    async with portside_server(args.pool_size) as ps:
        log(f"portside: waiting for the warm pool ({args.pool_size} per runtime)")
        await ps.wait_pool_full()
        # One unmeasured session: the first request pays for connection set-up and caches.
        warm = await ps.create()
        await run_code(warm, "print(1)")
        await ps.destroy(warm)
        await ps.wait_pool_full()

        log(f"portside: {args.creations} paced creations, {args.pause} s apart")
        for _ in range(args.creations):
            start = time.perf_counter()
            session = await ps.create()
            created = time.perf_counter()
            out = await run_code(session, "print(1)")
            done = time.perf_counter()
            if out.stdout != "1\n":
                raise RuntimeError(f"unexpected output from a new session: {out!r}")
            result.first_output.append(done - start)
            result.create_call.append(created - start)
            result.first_execute.append(done - created)
            await ps.destroy(session)
            await asyncio.sleep(args.pause)

        refill_start = time.monotonic()
        await ps.wait_pool_full()
        log(f"portside: pool full again after {time.monotonic() - refill_start:.1f} s")
        log(f"portside: {args.back_to_back} back-to-back creations")
        made = []
        for _ in range(args.back_to_back):
            start = time.perf_counter()
            session = await ps.create()
            out = await run_code(session, "print(1)")
            result.back_to_back.append(time.perf_counter() - start)
            made.append(session)
        await ps.destroy_all()
        result.refill_s = await ps.wait_pool_full()
        log(f"portside: a drained pool refilled in {result.refill_s:.1f} s")

        log(f"portside: {args.round_trips} print(1) round trips each way, interleaved")
        session = await ps.create()
        assert session.id is not None
        session_id = str(session.id)
        raw = RawClient(ps)
        try:
            for _ in range(5):
                await run_code(session, "print(1)")
                await raw.execute(session_id, "print(1)")

            # Interleaved, so that a busy moment on the machine hits every kind alike, and in
            # an order that turns by one each round: a call right after a different one (a
            # get_info's database read above all) runs on colder caches, and a fixed order
            # would charge that to the same kind every time.
            async def raw_execute() -> None:
                body = await raw.execute(session_id, "print(1)")
                if body["status"] != "finished":
                    raise RuntimeError(f"raw execute did not finish in one call: {body!r}")

            kinds: list[tuple[Callable[[], Awaitable[Any]], list[float]]] = [
                (lambda: run_code(session, "print(1)"), result.round_trip),
                (raw_execute, result.raw_round_trip),
                (ps.api.ComputeSession.hello, result.hello),
                (session.get_info, result.get_info),
            ]
            for i in range(args.round_trips):
                for call, times in kinds[i % len(kinds) :] + kinds[: i % len(kinds)]:
                    start = time.perf_counter()
                    await call()
                    times.append(time.perf_counter() - start)
        finally:
            await raw.close()
        log(f"portside: {args.paced_round_trips} print(1) round trips after pauses")
        for _ in range(args.paced_round_trips):
            await asyncio.sleep(args.think)
            start = time.perf_counter()
            await run_code(session, "print(1)")
            result.paced_round_trip.append(time.perf_counter() - start)
        result.kernel_direct = await direct_round_trips(ps.data_dir, session.id, args.round_trips)
    return result


async def measure_jkg(args: argparse.Namespace) -> JkgStart:
    result = JkgStart()
    async with kernel_gateway() as gw:
        log(f"kernel gateway: {args.jkg_creations} kernels, create to first output")
        for i in range(args.jkg_creations + 1):
            start = time.perf_counter()
            kernel_id = await gw.create_kernel()
            created = time.perf_counter()
            async with gw.connect(kernel_id) as ws:
                # The gateway answers the WebSocket upgrade once the kernel is ready.
                opened = time.perf_counter()
                out = await gw.execute(ws, "print(1)")
            if out.stdout != "1\n":
                raise RuntimeError(f"unexpected output from a new kernel: {out!r}")
            first = opened - start + out.first_output
            await gw.delete_kernel(kernel_id)
            if i > 0:  # the first kernel is a warm-up, as on the Portside side
                result.first_output.append(first)
                result.create_call.append(created - start)
                result.ws_open.append(opened - created)
            await asyncio.sleep(args.pause)

        log(f"kernel gateway: {args.round_trips} print(1) round trips over the WebSocket")
        kernel_id = await gw.create_kernel()
        async with gw.connect(kernel_id) as ws:
            for _ in range(5):
                await gw.execute(ws, "print(1)")
            for _ in range(args.round_trips):
                out = await gw.execute(ws, "print(1)")
                result.round_trip.append(out.idle)
                result.round_trip_first_output.append(out.first_output)
            log(f"kernel gateway: {args.paced_round_trips} print(1) round trips after pauses")
            for _ in range(args.paced_round_trips):
                await asyncio.sleep(args.think)
                out = await gw.execute(ws, "print(1)")
                result.paced_round_trip.append(out.idle)
        await gw.delete_kernel(kernel_id)
    return result


def rows(ps: PortsideStart, jkg: JkgStart) -> list[Row]:
    ms = 1000.0
    return [
        Row(
            "create → first output, p50 (paced)",
            p50(ps.first_output) * ms,
            p50(jkg.first_output) * ms,
            "ms",
            TARGET_FIRST_OUTPUT_MS,
        ),
        Row(
            "create → first output, p95 (paced)",
            percentile(ps.first_output, 95) * ms,
            percentile(jkg.first_output, 95) * ms,
            "ms",
        ),
        Row(
            "create → first output, p50 (back-to-back)",
            p50(ps.back_to_back) * ms,
            p50(jkg.first_output) * ms,
            "ms",
        ),
        Row(
            "create → first output, max (back-to-back)",
            max(ps.back_to_back, default=float("nan")) * ms,
            max(jkg.first_output, default=float("nan")) * ms,
            "ms",
        ),
        Row(
            "print(1) round trip, p50 (SDK REST / JKG WebSocket)",
            p50(ps.round_trip) * ms,
            p50(jkg.round_trip) * ms,
            "ms",
            TARGET_ROUND_TRIP_MS,
        ),
        Row(
            "print(1) round trip, p95",
            percentile(ps.round_trip, 95) * ms,
            percentile(jkg.round_trip, 95) * ms,
            "ms",
        ),
        Row(
            "print(1) round trip, p50 (raw signed REST)",
            p50(ps.raw_round_trip) * ms,
            p50(jkg.round_trip) * ms,
            "ms",
            TARGET_ROUND_TRIP_MS,
        ),
        Row(
            "print(1) round trip after a pause, p50 (as a person runs cells)",
            p50(ps.paced_round_trip) * ms,
            p50(jkg.paced_round_trip) * ms,
            "ms",
            TARGET_ROUND_TRIP_MS,
        ),
    ]


def notes(args: argparse.Namespace, ps: PortsideStart, jkg: JkgStart) -> list[str]:
    ms = 1000.0
    return [
        f"Portside pool_size = {ps.pool_size} warm kernels per interpreter "
        f"({DEFAULT_RUNTIME_COUNT} configured); "
        f"{len(ps.first_output)} paced creations {args.pause} s apart, each destroyed before "
        f"the pause; {len(ps.back_to_back)} back-to-back creations without pauses",
        f"Portside paced split, p50: create call {p50(ps.create_call) * ms:.1f} ms, "
        f"first execute {p50(ps.first_execute) * ms:.1f} ms; "
        f"a drained pool refilled in {ps.refill_s:.1f} s",
        "Portside back-to-back, ms: " + " ".join(f"{t * ms:.0f}" for t in ps.back_to_back),
        f"Kernel Gateway: {len(jkg.first_output)} kernels, POST /api/kernels returned after "
        f"{p50(jkg.create_call) * ms:.0f} ms and the WebSocket opened "
        f"{p50(jkg.ws_open) * ms:.0f} ms later (p50); round trip = execute_request sent → "
        f"status idle; to the stream output alone {p50(jkg.round_trip_first_output) * ms:.1f} ms",
        "Kernel Gateway keeps no pool, so its back-to-back figures are its paced ones",
        f"round trips: {len(ps.round_trip)} each, after 5 unmeasured ones; after a pause: "
        f"{len(ps.paced_round_trip)} each, {args.think} s apart",
        f"what a Portside REST print(1) is made of, p50: the kernel alone (jupyter_client over "
        f"its IPC sockets, no server) {p50(ps.kernel_direct) * ms:.2f} ms; SDK + HTTP for an "
        f"unsigned GET / {p50(ps.hello) * ms:.2f} ms; a signed GET /session/{{id}} "
        f"{p50(ps.get_info) * ms:.2f} ms; so the server adds "
        f"{(p50(ps.round_trip) - p50(ps.kernel_direct) - p50(ps.hello)) * ms:.2f} ms to an "
        f"execute beyond the kernel and the HTTP exchange",
    ]


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    ps = await measure_portside(args)
    jkg = await measure_jkg(args)
    return rows(ps, jkg), notes(args, ps, jkg)


def main() -> None:
    bench_main(__doc__, add_arguments, run, "Session start: Portside vs Jupyter Kernel Gateway")


if __name__ == "__main__":
    main()
