"""How many sessions a server can start per second when many users arrive at once.

A creation counts once the new session has printed the output of ``print(1)``: a session that
exists but cannot run code yet is of no use to anyone.  Two windows, each on a fresh server
and against Kernel Gateway in the same way:

- *steady state*: each session (kernel) is destroyed once it has answered, in the background,
  so the number alive stays small: the sustained rate of short-lived sessions;
- *kept*: every session stays until the window ends, so the machine fills up (some hundreds
  of sessions by its end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass, field

from bench.common import (
    Row,
    bench_main,
    cpu_by_role,
    hand_free_memory_back,
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
        "--jkg-kernels", type=int, default=40, help="Kernel Gateway kernels per window"
    )
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
    #: CPU seconds the whole machine was busy per creation (every process and the kernel's own
    #: work, which the per-process counters miss for short-lived helpers).
    machine_cpu_per_creation: float = float("nan")
    #: Whether the window began with the machine's free memory handed back to its host.
    fresh_memory: bool = False

    @property
    def per_second(self) -> float:
        """Creations per second; NaN (shown as "-") for a side that was not measured."""
        return len(self.done_at) / self.elapsed if self.elapsed else float("nan")

    def steady_per_second(self) -> float:
        """The rate over the second half of the window, after the warm pool's head start."""
        half = self.elapsed / 2
        late = [t for t in self.done_at if t >= half]
        return len(late) / (self.elapsed - half) if self.elapsed else float("nan")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (``/proc/stat``)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


async def measure_portside(args: argparse.Namespace, destroy_each: bool) -> Rate:
    rate = Rate()
    async with portside_server(args.pool_size) as ps:
        log(f"portside: waiting for the warm pool ({args.pool_size} per runtime)")
        await ps.wait_pool_full()
        warm = await ps.create()
        await run_code(warm, "print(1)")
        await ps.destroy(warm)
        await ps.wait_pool_full()
        rate.fresh_memory = await hand_free_memory_back()
        log(
            f"portside: creating for {args.duration} s, {args.concurrency} in flight, "
            f"{'destroying each' if destroy_each else 'keeping them'}"
        )
        background: set[asyncio.Task[None]] = set()
        cpu_before = cpu_by_role(ps.server)
        client_before = time.process_time()
        machine_before = machine_busy_seconds()
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
                if destroy_each:
                    task = asyncio.create_task(ps.destroy(session))
                    background.add(task)
                    task.add_done_callback(background.discard)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate.elapsed = min(time.perf_counter(), deadline) - start
        client_cpu = time.process_time() - client_before
        if rate.done_at:
            rate.machine_cpu_per_creation = (machine_busy_seconds() - machine_before) / len(
                ps.sessions if not destroy_each else rate.done_at
            )
        if not destroy_each and rate.done_at:
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


async def measure_jkg(args: argparse.Namespace, delete_each: bool) -> Rate:
    rate = Rate()
    async with kernel_gateway() as gw:
        # One unmeasured kernel, as on the Portside side.
        kernel_id = await gw.create_kernel()
        async with gw.connect(kernel_id) as ws:
            await gw.execute(ws, "print(1)")
        await gw.delete_kernel(kernel_id)
        rate.fresh_memory = await hand_free_memory_back()
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
                if delete_each:
                    await gw.delete_kernel(kernel_id)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        rate.elapsed = time.perf_counter() - start
        log(f"kernel gateway: {len(rate.done_at)} kernels in {rate.elapsed:.1f} s; deleting")
    return rate


def rows(steady: tuple[Rate, Rate], kept: tuple[Rate, Rate]) -> list[Row]:
    ms = 1000.0
    out = []
    for label, (ps, jkg) in (("steady state", steady), ("sessions kept", kept)):
        out += [
            Row(
                f"session creations per second, {label} (whole window)",
                ps.per_second,
                jkg.per_second,
                "/s",
                TARGET_PER_SECOND,
                higher_is_better=True,
            ),
            Row(
                f"session creations per second, {label} (second half)",
                ps.steady_per_second(),
                jkg.steady_per_second(),
                "/s",
                TARGET_PER_SECOND,
                higher_is_better=True,
            ),
        ]
    ps, jkg = steady
    out += [
        Row(
            "create → first output under load (steady state), p50",
            p50(ps.latency) * ms,
            p50(jkg.latency) * ms,
            "ms",
        ),
        Row(
            "create → first output under load (steady state), p95",
            percentile(ps.latency, 95) * ms,
            percentile(jkg.latency, 95) * ms,
            "ms",
        ),
    ]
    return out


def notes(
    args: argparse.Namespace, steady: tuple[Rate, Rate], kept: tuple[Rate, Rate]
) -> list[str]:
    out = []
    for label, (ps, jkg) in (("steady state", steady), ("sessions kept", kept)):
        out.append(
            f"{label}: Portside {len(ps.done_at)} sessions in {ps.elapsed:.1f} s "
            f"({ps.errors} errors, pool_size = {args.pool_size}); machine CPU per creation "
            f"{ps.machine_cpu_per_creation * 1000:.0f} ms on {os.cpu_count()} cores"
            + (
                f"; Kernel Gateway {len(jkg.done_at)} kernels in {jkg.elapsed:.1f} s "
                f"({jkg.errors} errors)"
                if not args.portside_only
                else "; Kernel Gateway not measured (--portside-only)"
            )
        )
    out.append(
        f"{args.concurrency} creations in flight on each side; a creation counts when the new "
        "session's print(1) output has arrived"
    )
    out.append(
        "each window began with the machine's free memory compacted, so that a virtual "
        "machine's host had taken it back (as after a boot; bench/common.py)"
        if all(r.fresh_memory for pair in (steady, kept) for r in pair if r.elapsed)
        else "windows began with the machine's memory as the previous work left it (not root)"
    )
    ps = kept[0]
    if ps.cpu_per_creation:
        parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in ps.cpu_per_creation.items())
        out.append(
            f"Portside CPU per creation by process (sessions kept; ms, pool refill included, "
            f"from the live processes' counters, so short-lived helpers are missing): {parts}"
        )
    return out


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    steady_ps = await measure_portside(args, destroy_each=True)
    steady_jkg = Rate() if args.portside_only else await measure_jkg(args, delete_each=True)
    kept_ps = await measure_portside(args, destroy_each=False)
    kept_jkg = Rate() if args.portside_only else await measure_jkg(args, delete_each=False)
    steady, kept = (steady_ps, steady_jkg), (kept_ps, kept_jkg)
    return rows(steady, kept), notes(args, steady, kept)


def main() -> None:
    bench_main(__doc__, add_arguments, run, "Creation rate: Portside vs Jupyter Kernel Gateway")


if __name__ == "__main__":
    main()
