"""What an idle session costs in memory, so that one machine can hold many of them.

Memory is counted as PSS (proportional set size): the kernels are forked from a zygote and
share most of their pages with it and with each other, which RSS would count once per
process.  A Portside session is its kernel, two bubblewrap processes and the sandbox's
``sh`` holder; all of them are counted.  Kernel Gateway holds fewer kernels
here, since each costs a full interpreter and starting hundreds takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field

import psutil

from bench.common import (
    KernelGatewayClosed,
    MiB,
    PortsideMemory,
    Row,
    bench_main,
    cpu_by_role,
    cpu_seconds,
    kernel_gateway,
    log,
    p50,
    portside_memory,
    portside_server,
    pss_bytes,
    rss_bytes,
    run_code,
)

TARGET_PSS_MIB = 30.0
TARGET_SESSIONS = 300
TARGET_ROUND_TRIP_MS = 5.0
#: Round trips timed on one session while all the others sit idle.
ROUND_TRIPS = 30


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("idle_memory")
    group.add_argument(
        "--sessions", type=int, default=TARGET_SESSIONS, help="idle Portside sessions"
    )
    group.add_argument(
        "--idle-jkg-kernels", type=int, default=20, help="idle Kernel Gateway kernels"
    )
    group.add_argument(
        "--settle", type=float, default=10.0, help="seconds idle before memory is read"
    )
    group.add_argument(
        "--create-concurrency", type=int, default=8, help="creations in flight while filling"
    )


@dataclass
class PortsideIdle:
    sessions: int = 0
    before: PortsideMemory | None = None
    after: PortsideMemory | None = None
    fill_seconds: float = 0.0
    mem_available_drop: int = 0
    #: CPU used while every session sat idle, in cores (1.0 = one core busy).
    server_idle_cpu: float = 0.0
    sessions_idle_cpu: float = 0.0
    server_threads: int = 0
    server_fds: int = 0
    round_trip: list[float] = field(default_factory=list)


@dataclass
class JkgIdle:
    kernels: int = 0
    kernel_pss: int = 0
    kernel_rss: int = 0
    gateway_rss_growth: int = 0
    gateway_pss: int = 0
    per_process: list[int] = field(default_factory=list)
    idle_cpu: float = 0.0
    #: Kernels whose WebSocket the gateway closed before their print(1) answered; each was
    #: deleted and replaced by a new one.
    lost: int = 0


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


async def measure_portside(args: argparse.Namespace) -> PortsideIdle:
    result = PortsideIdle()
    async with portside_server(args.pool_size) as ps:
        log(f"portside: waiting for the warm pool ({args.pool_size} per runtime)")
        await ps.wait_pool_full()
        result.before = await asyncio.to_thread(portside_memory, ps.server)
        available_before = mem_available()
        log(f"portside: starting {args.sessions} sessions, each running print(1) once")
        semaphore = asyncio.Semaphore(args.create_concurrency)
        failures = 0

        async def one() -> None:
            nonlocal failures
            async with semaphore:
                try:
                    session = await ps.create()
                    out = await run_code(session, "print(1)")
                    if out.stdout != "1\n":
                        raise RuntimeError(f"unexpected output {out!r}")
                except Exception as e:
                    ps.check_alive()
                    failures += 1
                    log(f"portside: a session failed to start: {e!r}")

        start = time.monotonic()
        await asyncio.gather(*(one() for _ in range(args.sessions)))
        result.fill_seconds = time.monotonic() - start
        log(
            f"portside: {args.sessions - failures} sessions in {result.fill_seconds:.1f} s; "
            f"letting them idle {args.settle} s after the pool refilled"
        )
        await ps.wait_pool_full()
        log("portside: measuring idle CPU, memory and a round trip")
        cpu_before = cpu_by_role(ps.server)
        settle_start = time.monotonic()
        await asyncio.sleep(args.settle)
        cpu_after = cpu_by_role(ps.server)
        span = time.monotonic() - settle_start
        result.server_idle_cpu = (cpu_after["server"] - cpu_before["server"]) / span
        result.sessions_idle_cpu = (
            sum(
                cpu_after[role] - cpu_before.get(role, 0.0)
                for role in cpu_after
                if role not in ("server", "zygote")
            )
            / span
        )
        server_process = psutil.Process(ps.server.process.pid)
        result.server_threads = server_process.num_threads()
        result.server_fds = server_process.num_fds()
        result.after = await asyncio.to_thread(portside_memory, ps.server)
        result.mem_available_drop = available_before - mem_available()
        result.sessions = result.after.sessions
        probe = next(iter(ps.sessions.values()))
        for i in range(ROUND_TRIPS + 5):
            start = time.perf_counter()
            await run_code(probe, "print(1)")
            if i >= 5:
                result.round_trip.append(time.perf_counter() - start)
        log("portside: destroying the sessions")
    return result


async def measure_jkg(args: argparse.Namespace) -> JkgIdle:
    result = JkgIdle()
    async with kernel_gateway() as gw:
        assert gw.process is not None
        gateway_pid = gw.process.pid
        rss_before = rss_bytes(gateway_pid)
        log(f"kernel gateway: starting {args.idle_jkg_kernels} kernels, each running print(1)")
        semaphore = asyncio.Semaphore(args.create_concurrency)

        async def one() -> None:
            async with semaphore:
                while True:
                    kernel_id = await gw.create_kernel()
                    try:
                        async with gw.connect(kernel_id) as ws:
                            await gw.execute(ws, "print(1)")
                        return
                    except KernelGatewayClosed as e:
                        # Now and then the gateway drops a new kernel's WebSocket; one such
                        # kernel must not end the whole run.
                        result.lost += 1
                        log(f"kernel gateway: {e}; replacing the kernel")
                        await gw.delete_kernel(kernel_id)

        await asyncio.gather(*(one() for _ in range(args.idle_jkg_kernels)))
        everything = [gateway_pid, *gw.kernel_pids()]
        cpu_before = sum(cpu_seconds(pid) for pid in everything)
        settle_start = time.monotonic()
        await asyncio.sleep(args.settle)
        cpu_after = sum(cpu_seconds(pid) for pid in everything)
        result.idle_cpu = (cpu_after - cpu_before) / (time.monotonic() - settle_start)
        pids = gw.kernel_pids()
        result.kernels = len(gw.kernels)
        result.per_process = [pss_bytes(pid) for pid in pids]
        result.kernel_pss = sum(result.per_process)
        result.kernel_rss = sum(rss_bytes(pid) for pid in pids)
        result.gateway_rss_growth = rss_bytes(gateway_pid) - rss_before
        result.gateway_pss = pss_bytes(gateway_pid)
        log("kernel gateway: deleting the kernels")
    return result


def rows(ps: PortsideIdle, jkg: JkgIdle) -> list[Row]:
    assert ps.before is not None
    assert ps.after is not None
    n = max(ps.sessions, 1)
    k = max(jkg.kernels, 1)
    before, after = ps.before, ps.after
    jkg_per_kernel = jkg.kernel_pss / k / MiB
    return [
        Row(
            "idle sessions held",
            ps.sessions,
            jkg.kernels,
            "",
            TARGET_SESSIONS,
            higher_is_better=True,
            comparable=False,
        ),
        Row(
            "PSS per idle session (sandbox processes)",
            after.session_pss / n / MiB,
            jkg_per_kernel,
            "MiB",
            TARGET_PSS_MIB,
        ),
        Row(
            "PSS per idle session, zygote's share included",
            (after.session_pss + after.zygote_pss) / n / MiB,
            jkg_per_kernel,
            "MiB",
            TARGET_PSS_MIB,
        ),
        Row(
            "PSS added per session (all processes but the server, after − before)",
            (after.total_pss - before.total_pss) / n / MiB,
            jkg_per_kernel,
            "MiB",
            TARGET_PSS_MIB,
        ),
        Row(
            "idle CPU per session (kernel side, % of a core)",
            ps.sessions_idle_cpu / n * 100,
            jkg.idle_cpu / k * 100,
            "%",
        ),
        Row(
            f"print(1) round trip p50 with {ps.sessions} sessions open",
            p50(ps.round_trip) * 1000,
            None,
            "ms",
            TARGET_ROUND_TRIP_MS,
        ),
        Row(
            "server RSS growth per session",
            (after.server_rss - before.server_rss) / n / MiB,
            jkg.gateway_rss_growth / k / MiB,
            "MiB",
        ),
    ]


def notes(args: argparse.Namespace, ps: PortsideIdle, jkg: JkgIdle) -> list[str]:
    assert ps.before is not None
    assert ps.after is not None
    n = max(ps.sessions, 1)
    k = max(jkg.kernels, 1)
    after = ps.after
    by_role = sorted(after.by_role.items())
    roles = ", ".join(f"{role} {size / n / MiB:.2f}" for role, size in by_role)
    return [
        f"Portside pool_size = {args.pool_size} per runtime; {ps.sessions} sessions started in "
        f"{ps.fill_seconds:.1f} s ({args.create_concurrency} in flight), read {args.settle} s "
        f"after the pool refilled",
        f"Portside PSS per session by process (MiB): {roles}",
        f"Portside one-off: zygote {after.zygote_pss / MiB:.1f} MiB PSS, server "
        f"{after.server_pss / MiB:.1f} MiB PSS ({after.server_rss / MiB:.0f} MiB RSS), "
        f"{after.pooled} pooled kernels {after.pool_pss / MiB:.1f} MiB, other processes "
        f"{after.unaccounted_pss / MiB:.1f} MiB",
        f"Portside session processes outside the server's process tree: {after.outside_tree}",
        f"Portside server with {ps.sessions} idle sessions: {ps.server_threads} threads, "
        f"{ps.server_fds} open files, {ps.server_idle_cpu * 100:.1f}% of a core busy; "
        f"all session processes together {ps.sessions_idle_cpu * 100:.1f}% of a core",
        f"Kernel Gateway with {jkg.kernels} idle kernels: gateway and kernels "
        f"{jkg.idle_cpu * 100:.1f}% of a core"
        + (f" ({jkg.lost} lost their WebSocket while starting, replaced)" if jkg.lost else ""),
        f"MemAvailable fell {ps.mem_available_drop / n / MiB:.1f} MiB per session (whole "
        f"machine, including whatever else ran meanwhile)",
        f"Kernel Gateway: {jkg.kernels} kernels, PSS {jkg.kernel_pss / k / MiB:.1f} "
        f"MiB and RSS {jkg.kernel_rss / k / MiB:.1f} MiB per kernel; gateway "
        f"{jkg.gateway_pss / MiB:.1f} MiB PSS",
    ]


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    ps = await measure_portside(args)
    jkg = await measure_jkg(args)
    return rows(ps, jkg), notes(args, ps, jkg)


def main() -> None:
    bench_main(__doc__, add_arguments, run, "Idle memory: Portside vs Jupyter Kernel Gateway")


if __name__ == "__main__":
    main()
