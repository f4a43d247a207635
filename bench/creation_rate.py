"""How many sessions a server can start per second when many users arrive at once.

A creation counts once the new session has printed the output of ``print(1)``: a session that
exists but cannot run code yet is of no use to anyone.  Sessions are kept until the window ends
(``--destroy-each`` ends each as soon as it has answered, in the background, which is the
steady state of short-lived sessions), and all are destroyed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

from bench.common import (
    Row,
    bench_main,
    cpu_by_role,
    kernel_gateway,
    log,
    p50,
    percentile,
    portside_server,
    run_code,
)

TARGET_PER_SECOND = 20.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("creation_rate")
    group.add_argument("--duration", type=float, default=20.0, help="Portside window, seconds")
    group.add_argument(
        "--concurrency", type=int, default=8, help="creations in flight at once (both systems)"
    )
    group.add_argument(
        "--max-sessions", type=int, default=600, help="stop the Portside window at this many"
    )
    group.add_argument(
        "--destroy-each",
        action="store_true",
        help="destroy each Portside session once it answered instead of keeping it",
    )
    group.add_argument("--jkg-kernels", type=int, default=40, help="Kernel Gateway kernels")
    group.add_argument(
        "--portside-only",
        action="store_true",
        help="skip Kernel Gateway (while iterating on Portside; its columns stay empty)",
    )


@dataclass
class Rate:
    #: Seconds from the window's start at which each creation had its first output.
    done_at: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    errors: int = 0
    #: CPU seconds per creation by process role, and this client's own.
    cpu_per_creation: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Creations per second; NaN (shown as "-") for a side that was not measured."""
        return len(self.done_at) / self.elapsed if self.elapsed else float("nan")

    def steady_per_second(self) -> float:
        """The rate over the second half of the window, after the warm pool's head start."""
        half = self.elapsed / 2
        late = [t for t in self.done_at if t >= half]
        return len(late) / (self.elapsed - half) if self.elapsed else float("nan")


async def measure_portside(args: argparse.Namespace) -> Rate:
    rate = Rate()
    async with portside_server(args.pool_size) as ps:
        log(f"portside: waiting for the warm pool ({args.pool_size} per runtime)")
        await ps.wait_pool_full()
        warm = await ps.create()
        await run_code(warm, "print(1)")
        await ps.destroy(warm)
        await ps.wait_pool_full()
        log(
            f"portside: creating for {args.duration} s, {args.concurrency} in flight, "
            f"{'destroying each' if args.destroy_each else 'keeping them'}"
        )
        background: set[asyncio.Task[None]] = set()
        cpu_before = cpu_by_role(ps.server)
        client_before = time.process_time()
        start = time.perf_counter()
        deadline = start + args.duration

        def room() -> bool:
            return time.perf_counter() < deadline and len(rate.done_at) < args.max_sessions

        async def worker() -> None:
            while room():
                began = time.perf_counter()
                try:
                    session = await ps.create()
                    out = await run_code(session, "print(1)")
                except Exception as e:
                    ps.check_alive()
                    rate.errors += 1
                    log(f"portside: a creation failed: {e!r}")
                    await asyncio.sleep(0.1)
                    continue
                now = time.perf_counter()
                if out.stdout == "1\n" and now <= deadline:
                    rate.done_at.append(now - start)
                    rate.latency.append(now - began)
                if args.destroy_each:
                    task = asyncio.create_task(ps.destroy(session))
                    background.add(task)
                    task.add_done_callback(background.discard)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate.elapsed = min(time.perf_counter(), deadline) - start
        client_cpu = time.process_time() - client_before
        if not args.destroy_each and rate.done_at:
            # Every kernel used in the window is still alive, so its CPU time is readable.
            cpu_after = cpu_by_role(ps.server)
            count = len(ps.sessions)
            rate.cpu_per_creation = {
                role: (cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0)) / count
                for role in sorted(cpu_after)
            }
            rate.cpu_per_creation["bench client"] = client_cpu / count
        if background:
            await asyncio.gather(*background)
        log(f"portside: {len(rate.done_at)} sessions in {rate.elapsed:.1f} s; destroying")
    return rate


async def measure_jkg(args: argparse.Namespace) -> Rate:
    rate = Rate()
    async with kernel_gateway() as gw:
        # One unmeasured kernel, as on the Portside side.
        kernel_id = await gw.create_kernel()
        async with gw.connect(kernel_id) as ws:
            await gw.execute(ws, "print(1)")
        await gw.delete_kernel(kernel_id)
        log(f"kernel gateway: {args.jkg_kernels} kernels, {args.concurrency} in flight")
        remaining = args.jkg_kernels
        start = time.perf_counter()

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                began = time.perf_counter()
                try:
                    kernel_id = await gw.create_kernel()
                    async with gw.connect(kernel_id) as ws:
                        out = await gw.execute(ws, "print(1)")
                except Exception as e:
                    rate.errors += 1
                    log(f"kernel gateway: a creation failed: {e!r}")
                    continue
                now = time.perf_counter()
                if out.stdout == "1\n":
                    rate.done_at.append(now - start)
                    rate.latency.append(now - began)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate.elapsed = time.perf_counter() - start
        log(f"kernel gateway: {len(rate.done_at)} kernels in {rate.elapsed:.1f} s; deleting")
    return rate


def rows(ps: Rate, jkg: Rate) -> list[Row]:
    ms = 1000.0
    return [
        Row(
            "session creations per second (whole window)",
            ps.per_second,
            jkg.per_second,
            "/s",
            TARGET_PER_SECOND,
            higher_is_better=True,
        ),
        Row(
            "session creations per second (second half)",
            ps.steady_per_second(),
            jkg.steady_per_second(),
            "/s",
            TARGET_PER_SECOND,
            higher_is_better=True,
        ),
        Row(
            "create → first output under load, p50",
            p50(ps.latency) * ms,
            p50(jkg.latency) * ms,
            "ms",
        ),
        Row(
            "create → first output under load, p95",
            percentile(ps.latency, 95) * ms,
            percentile(jkg.latency, 95) * ms,
            "ms",
        ),
    ]


def notes(args: argparse.Namespace, ps: Rate, jkg: Rate) -> list[str]:
    kept = "destroyed each in the background" if args.destroy_each else "kept until the end"
    out = [
        f"Portside pool_size = {args.pool_size} per runtime; {len(ps.done_at)} sessions in "
        f"{ps.elapsed:.1f} s with {args.concurrency} in flight, {kept}; {ps.errors} errors",
        f"Kernel Gateway: {len(jkg.done_at)} kernels in {jkg.elapsed:.1f} s with "
        f"{args.concurrency} in flight, kept until the end; {jkg.errors} errors"
        if not args.portside_only
        else "Kernel Gateway: not measured (--portside-only)",
        "a creation counts when the new session's print(1) output has arrived",
    ]
    if ps.cpu_per_creation:
        total = sum(ps.cpu_per_creation.values())
        parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in ps.cpu_per_creation.items())
        out.append(
            f"Portside CPU per creation (ms, pool refill included): {parts}; total "
            f"{total * 1000:.0f} ms, so 2 cores allow at most {2 / total:.1f} creations/s"
        )
    return out


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    ps = await measure_portside(args)
    jkg = Rate() if args.portside_only else await measure_jkg(args)
    return rows(ps, jkg), notes(args, ps, jkg)


def main() -> None:
    bench_main(__doc__, add_arguments, run, "Creation rate: Portside vs Jupyter Kernel Gateway")


if __name__ == "__main__":
    main()
