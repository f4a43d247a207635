"""What the app-proxy and model-ingress benchmarks share: a tiny HTTP app to run inside a
session, a load generator cheap enough not to be the bottleneck, the connection that reaches
the app without the proxy, and the table comparing the two paths.

Both paths are driven by the same load generator with the same request bytes against the same
app process, and measured in interleaved rounds, so that whatever else the 2-core machine does
hits both alike.  *Direct* is a socket connected to the app's port inside the sandbox by the
kernel's connect broker (``portside.appproxy.connect.from_broker``): exactly what the proxy
itself connects to underneath, so the difference between the two paths is the proxy hop
(accept, parse, check, forward, relay back), nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench import common
from bench.common import Row, log, machine_note, p50, percentile
from portside.appproxy.connect import from_broker

#: The app: HTTP/1.1 with keep-alive on plain asyncio, a fixed body for any path and method.
#: About as cheap per request as a Python server gets, so the proxy's own cost shows instead
#: of hiding behind the app's.  Run as ``python -c APP_SERVER PORT BODY_SIZE [WORK_SECONDS]``;
#: with WORK_SECONDS it spends that much CPU time on each request before answering, as an app
#: that does something (a small model's inference, a notebook server's API call) does.
APP_SERVER = r"""
import asyncio, sys, time

PORT = int(sys.argv[1])
SIZE = int(sys.argv[2])
WORK = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % SIZE
    + b"x" * SIZE
)


class Http(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()
        self.body_left = -1  # -1: reading a head; else body bytes still to skip

    def data_received(self, data):
        buf = self.buf
        buf += data
        out = []
        close = False
        while True:
            if self.body_left < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = bytes(buf[:end]).lower()
                del buf[: end + 4]
                at = head.find(b"\ncontent-length:")
                if at >= 0:
                    stop = head.find(b"\r", at + 1)
                    self.body_left = int(head[at + 16 : stop if stop > 0 else None])
                else:
                    self.body_left = 0
                close = close or b"\nconnection: close" in head
            n = min(self.body_left, len(buf))
            del buf[:n]
            self.body_left -= n
            if self.body_left:
                break
            self.body_left = -1
            if WORK:
                done = time.thread_time() + WORK
                while time.thread_time() < done:
                    pass
            out.append(RESPONSE)
        if out:
            self.transport.write(b"".join(out))
        if close:
            self.transport.close()


async def main():
    server = await asyncio.get_running_loop().create_server(Http, "127.0.0.1", PORT, backlog=512)
    async with server:
        await server.serve_forever()


asyncio.run(main())
"""


#: The same app on aiohttp's server: what a small Python web app costs per request.
AIOHTTP_SERVER = r"""
import sys
from aiohttp import web

BODY = b"x" * int(sys.argv[2])


async def handle(request):
    await request.read()
    return web.Response(body=BODY, content_type="text/plain")


app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

#: App kinds by name: the server's source and the arguments after PORT BODY_SIZE.
APPS: dict[str, tuple[str, list[str]]] = {
    # The cheapest app: what the proxy costs, laid bare.
    "asyncio": (APP_SERVER, []),
    # A small app on a common Python web framework.
    "aiohttp": (AIOHTTP_SERVER, []),
    # The cheapest app spending 1 ms of CPU on each request: an app doing some work.
    "busy": (APP_SERVER, ["0.001"]),
}


def app_command(app: str, port: int, body_size: int) -> list[str]:
    """The app's arguments after the interpreter: ``-c SOURCE PORT BODY_SIZE ...``."""
    source, extra = APPS[app]
    return ["-c", source, str(port), str(body_size), *extra]


def app_launch_code(port: int, body_size: int, app: str = "asyncio") -> str:
    """Kernel code that starts an app in the background and waits until it listens."""
    return f"""
import socket, subprocess, sys, time
subprocess.Popen([sys.executable, *{app_command(app, port, body_size)!r}],
                 start_new_session=True, stdin=subprocess.DEVNULL)
deadline = time.monotonic() + 30
while True:
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.02)
print("listening")
"""


def request_bytes(
    host: str,
    path: str = "/",
    extra: dict[str, str] | None = None,
    *,
    method: str = "GET",
    body: bytes = b"",
) -> bytes:
    """A request with a few ordinary headers, encoded once and sent as is."""
    headers = {
        "Host": host,
        "User-Agent": "portside-bench/1",
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        **(extra or {}),
    }
    if body:
        headers["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode() + body


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The load's sizes, shared by bench.appproxy and bench.model_ingress (added once when
    both are run)."""
    group = parser.add_argument_group("appproxy / model_ingress")
    options: list[tuple[str, type, object, str]] = [
        ("--relay-rounds", int, 4, "interleaved rounds of direct and proxied measurements"),
        ("--relay-requests", int, 500, "sequential requests per path and round (latency)"),
        ("--relay-connections", int, 16, "concurrent keep-alive connections (throughput)"),
        ("--relay-window", float, 3.0, "seconds of load per path and round (throughput)"),
        ("--relay-body", int, 100, "response body size in bytes"),
        ("--relay-apps", str, ",".join(APPS), "the apps to measure, comma-separated"),
    ]
    for flag, kind, default, text in options:
        with contextlib.suppress(argparse.ArgumentError):
            group.add_argument(flag, type=kind, default=default, help=text)


def app_kinds(args: argparse.Namespace) -> list[str]:
    apps = [a.strip() for a in args.relay_apps.split(",") if a.strip()]
    unknown = [a for a in apps if a not in APPS]
    if unknown or not apps:
        raise SystemExit(f"--relay-apps: choose from {', '.join(APPS)}")
    return apps


# The load generator -----------------------------------------------------------------------


class HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends prepared requests and parses just enough
    of each response to know where it ends (``Content-Length``, or chunked)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        #: Where the response being read ends in ``buf``; -1 while the head is incomplete.
        self.end = -1
        self.chunked = False
        self.body_start = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._check()

    def _check(self) -> None:
        if self.waiter is None:
            return
        buf = self.buf
        if self.end < 0 and not self.chunked:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(buf[:head_end]).lower()
            self.status = int(head[9:12])
            at = head.find(b"\ncontent-length:")
            if at >= 0:
                stop = head.find(b"\r", at + 1)
                length = int(head[at + 16 : stop if stop > 0 else None])
                self.end = head_end + 4 + length
            elif b"\ntransfer-encoding: chunked" in head:
                self.chunked = True
                self.body_start = head_end + 4
            else:
                self.end = head_end + 4
        if self.chunked:
            # The bench's bodies are runs of "x": the last-chunk marker cannot occur inside.
            at = buf.find(b"0\r\n\r\n", self.body_start)
            if at < 0:
                return
            self.end = at + 5
            self.chunked = False
        if len(buf) < self.end:
            return
        del buf[: self.end]
        self.end = -1
        waiter, self.waiter = self.waiter, None
        waiter.set_result(self.status)

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


Opener = Callable[[], Awaitable[HttpConnection]]


async def open_tcp(host: str, port: int) -> HttpConnection:
    """A connection to a listening port (the proxy's); asyncio turns TCP_NODELAY on."""
    _, conn = await asyncio.get_running_loop().create_connection(HttpConnection, host, port)
    return conn


async def open_broker(broker_path: Path, port: int) -> HttpConnection:
    """A connection to ``port`` inside a sandbox, handed over by its connect broker."""
    sock = await asyncio.to_thread(from_broker, str(broker_path), port)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    _, conn = await asyncio.get_running_loop().create_connection(HttpConnection, sock=sock)
    return conn


def broker_path(kernel_state: dict[str, object]) -> Path:
    """The connect broker's socket of a kernel, from its state file."""
    return Path(str(kernel_state["base"])) / "run" / "connect.sock"


async def latencies(conn: HttpConnection, request: bytes, count: int) -> list[float]:
    """Sequential requests on one connection: seconds from send to the whole response."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        status = await conn.request(request)
        times.append(time.perf_counter() - start)
        if status != 200:
            raise RuntimeError(f"the app answered {status}")
    return times


@dataclass
class Window:
    requests: int
    seconds: float
    #: CPU seconds the watched process (the server, which hosts the proxy) and this process
    #: (the load generator) used during the window.
    server_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _cpu(process: psutil.Process) -> float:
    t = process.cpu_times()
    return float(t.user + t.system)


async def throughput(
    conns: Sequence[HttpConnection], request: bytes, seconds: float, server: psutil.Process
) -> Window:
    """Every connection sends its next request as soon as the last answered, for ``seconds``."""
    me = psutil.Process(os.getpid())
    done = 0
    stop_at = 0.0

    async def worker(conn: HttpConnection) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            status = await conn.request(request)
            if status != 200:
                raise RuntimeError(f"the app answered {status}")
            done += 1

    server_cpu, client_cpu = _cpu(server), _cpu(me)
    start = time.perf_counter()
    stop_at = start + seconds
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - start
    return Window(done, elapsed, _cpu(server) - server_cpu, _cpu(me) - client_cpu)


# Comparing the two paths ----------------------------------------------------------------


@dataclass
class Path_:
    """One way to the app: how to open a connection and the request bytes to send on it."""

    name: str
    open: Opener
    request: bytes


@dataclass
class Figures:
    #: Sequential request times, one list per round.
    latency_rounds: list[list[float]] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    @property
    def latency(self) -> list[float]:
        return [t for times in self.latency_rounds for t in times]

    @property
    def rates(self) -> list[float]:
        return [w.rate for w in self.windows]

    def server_cpu_per_request(self) -> float:
        requests = sum(w.requests for w in self.windows)
        return sum(w.server_cpu for w in self.windows) / requests if requests else float("nan")

    def client_cpu_share(self) -> float:
        """The load generator's CPU as a share of one core during the windows."""
        seconds = sum(w.seconds for w in self.windows)
        return sum(w.client_cpu for w in self.windows) / seconds if seconds else float("nan")


@dataclass
class Comparison:
    direct: Figures
    proxied: Figures
    rounds: int
    latency_count: int
    concurrency: int
    seconds: float


async def compare(
    direct: Path_,
    proxied: Path_,
    server: psutil.Process,
    *,
    rounds: int,
    latency_count: int,
    concurrency: int,
    seconds: float,
) -> Comparison:
    """Latency and throughput of both paths in alternating rounds (ABBA order, so neither
    side always goes first after the other's load)."""
    figures = {direct.name: Figures(), proxied.name: Figures()}
    paths = [direct, proxied]
    for round_no in range(rounds):
        order = paths if round_no % 2 == 0 else paths[::-1]
        for path in order:
            conn = await path.open()
            try:
                await latencies(conn, path.request, 50)  # warm-up
                times = await latencies(conn, path.request, latency_count)
                figures[path.name].latency_rounds.append(times)
            finally:
                conn.close()
        for path in order[::-1]:
            conns = [await path.open() for _ in range(concurrency)]
            try:
                await throughput(conns, path.request, 0.3, server)  # warm-up
                window = await throughput(conns, path.request, seconds, server)
            finally:
                for conn in conns:
                    conn.close()
            figures[path.name].windows.append(window)
            log(
                f"round {round_no + 1}/{rounds} {path.name}: {window.rate:.0f} req/s, "
                f"latency p50 {p50(figures[path.name].latency_rounds[-1]) * 1e6:.0f} µs"
            )
    return Comparison(
        figures[direct.name],
        figures[proxied.name],
        rounds,
        latency_count,
        concurrency,
        seconds,
    )


def comparison_rows(
    what: str, c: Comparison, latency_target_ms: float, share_target: float | None
) -> list[Row]:
    """Rows with the proxied path as "Portside" and the direct one as the peer.

    What the proxy adds is taken round by round, between measurements seconds apart, and the
    median over rounds reported, so that a busy spell on the machine in one round does not
    count as the proxy's.
    """
    ms = 1000.0
    d, p = c.direct, c.proxied
    direct_rate, proxied_rate = statistics.median(d.rates), statistics.median(p.rates)
    added = [
        (pct(pr, q) - pct(dr, q)) * ms
        for dr, pr in zip(d.latency_rounds, p.latency_rounds, strict=True)
        for q in (50, 95)
    ]
    added_p50, added_p95 = statistics.median(added[0::2]), statistics.median(added[1::2])
    shares = [100 * pw.rate / dw.rate for dw, pw in zip(d.windows, p.windows, strict=True)]
    return [
        Row(
            f"{what}: latency p50 (1 connection, sequential)",
            p50(p.latency) * ms,
            p50(d.latency) * ms,
            "ms",
        ),
        Row(
            f"{what}: latency p95",
            percentile(p.latency, 95) * ms,
            percentile(d.latency, 95) * ms,
            "ms",
        ),
        Row(
            f"{what}: added latency p50 (proxied − direct)",
            added_p50,
            None,
            "ms",
            latency_target_ms,
        ),
        Row(f"{what}: added latency p95", added_p95, None, "ms"),
        Row(
            f"{what}: requests per second ({c.concurrency} connections)",
            proxied_rate,
            direct_rate,
            "req/s",
            higher_is_better=True,
        ),
        Row(
            f"{what}: throughput through it, share of direct",
            statistics.median(shares),
            None,
            "%",
            None if share_target is None else 100 * share_target,
            higher_is_better=True,
        ),
    ]


async def report(
    what: str,
    measure: Callable[[argparse.Namespace], Awaitable[dict[str, Comparison]]],
    args: argparse.Namespace,
    label: str,
    latency_target_ms: float,
    share_target: float | None,
) -> tuple[list[Row], list[str]]:
    """Measures, then rows and notes for each app's comparison (``label`` has ``{app}``)."""
    start = time.monotonic()
    results = await measure(args)
    log(f"{what}: measured in {time.monotonic() - start:.0f} s")
    rows: list[Row] = []
    notes: list[str] = []
    for app, result in results.items():
        name = label.format(app=app)
        rows += comparison_rows(name, result, latency_target_ms, share_target)
        notes += comparison_notes(name, result)
    return rows, notes


def pct(values: Sequence[float], q: float) -> float:
    return p50(values) if q == 50 else percentile(values, q)


def comparison_notes(what: str, c: Comparison) -> list[str]:
    us = 1e6
    d, p = c.direct, c.proxied
    cpu = p.server_cpu_per_request()
    capacity = f"{1 / cpu:.0f}" if cpu > 0 else "-"
    return [
        f"{what}: {c.rounds} interleaved rounds, each {c.latency_count} sequential requests on "
        f"one keep-alive connection per path (after 50 unmeasured) and a {c.seconds:.0f} s "
        f"window with {c.concurrency} keep-alive connections per path; added latency and "
        f"share of direct are medians of the rounds' figures",
        f"{what}: by round, requests per second direct "
        + " ".join(f"{r:.0f}" for r in d.rates)
        + ", proxied "
        + " ".join(f"{r:.0f}" for r in p.rates)
        + "; latency p50 direct "
        + " ".join(f"{p50(t) * us:.0f}" for t in d.latency_rounds)
        + " µs, proxied "
        + " ".join(f"{p50(t) * us:.0f}" for t in p.latency_rounds)
        + " µs",
        f"{what}: the server (which hosts the proxy) used {cpu * us:.0f} µs of CPU per proxied "
        f"request, so one core relays at most {capacity} req/s; the load generator used "
        f"{100 * d.client_cpu_share():.0f} % of a core direct, "
        f"{100 * p.client_cpu_share():.0f} % proxied",
    ]


# The result table ------------------------------------------------------------------------

HEADERS = ["metric", "through Portside", "direct", "ratio", "target", "met?"]
RATIO_NOTE = "ratio: how many times better the proxied path is than direct (below 1: worse)"


def print_table(title: str, rows: Iterable[Row], notes: Iterable[str] = ()) -> None:
    common.print_table(title, rows, notes, headers=HEADERS, ratio_note=RATIO_NOTE)


def markdown_table(rows: Iterable[Row]) -> str:
    return common.markdown_table(rows, HEADERS)


def relay_main(doc: str | None, run: Callable[[argparse.Namespace], Any], title: str) -> None:
    """The command line of bench.appproxy and bench.model_ingress."""
    common.bench_main(doc, add_arguments, run, title, printer=print_table, note=environment_note)


def environment_note() -> str:
    """The run's conditions and the relay's library."""
    return f"{machine_note()}, aiohttp {aiohttp.__version__}"
