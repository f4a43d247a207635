"""What the app proxy adds to an HTTP app in a session: latency per request and requests per
second through it, against the same app reached without it, in the same run.

The app is a tiny keep-alive HTTP server on plain asyncio (``bench.http_relay.APP_SERVER``)
started in the session with ``subprocess.Popen`` on a port the session declared with
``preopen_ports``; ``start-service`` for that port and the proxy's ``/v2/proxy/.../add`` give
the circuit's URL, whose first GET sets the permit cookie every request then carries, as a
browser does.

What is fair here:

- **The same app process on both paths**, cheap per request, so what the proxy costs is not
  hidden behind app time (real apps, Jupyter or a model server, take longer per request, which
  makes the proxy's share smaller, never larger).
- **Direct is what the proxy connects to underneath**: kernels run in their own network
  namespace, so nothing outside reaches the app's port except through the kernel's connect
  broker, which hands over a socket connected to it (``appproxy.connect.from_broker``).  The
  direct path uses such sockets; the proxied path connects to the circuit's port.  The one
  difference is the proxy hop: accept, HTTP parsing, the permit and session checks, forwarding
  the request to the app, relaying the response.
- **The same load generator and request bytes** (a browser-like GET with the permit cookie;
  only ``Host`` differs), on keep-alive connections opened before timing starts.  The load
  generator is a bare asyncio protocol that parses only where each response ends, so it costs
  a fraction of what any HTTP server does per request and is not the bottleneck; the notes
  give its share of a core.
- **Interleaved rounds**: latency (one connection, sequential requests) and throughput (N
  connections, each sending its next request once the last answered, for a fixed window),
  alternating direct and proxied in ABBA order, so the busy moments of a shared 2-core
  machine hit both paths alike.

All of this runs on one machine: the proxy (inside the server process), the app and the load
generator share the same two cores, so throughput through the proxy is bounded by the proxy's
CPU time per request, which the notes report.

    .venv/bin/python -m bench.appproxy [--relay-rounds 5] [--relay-connections 16] ...
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

import aiohttp
import psutil

from bench import http_relay
from bench.common import (
    IMAGE,
    Row,
    log,
    portside_server,
    run_code,
    session_kernel_state,
)

#: A port inside the session (each session has its own network namespace).
APP_PORT = 8000
TARGET_ADDED_LATENCY_MS = 1.0
TARGET_THROUGHPUT_SHARE = 0.8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    http_relay.add_arguments(parser)


async def open_app(http: aiohttp.ClientSession, add_url: str) -> tuple[str, int, str]:
    """The circuit's host, port and permit cookie (``name=value``), as a browser gets them."""
    async with http.get(add_url) as resp:
        resp.raise_for_status()
        url = (await resp.json())["url"]
    async with http.get(url, allow_redirects=False) as resp:
        if resp.status != 302:
            raise RuntimeError(f"opening the app answered {resp.status}: {await resp.text()}")
        morsel = next(iter(resp.cookies.values()))
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port, f"{morsel.key}={morsel.value}"


async def measure(args: argparse.Namespace) -> dict[str, http_relay.Comparison]:
    apps = http_relay.app_kinds(args)
    ports = {app: APP_PORT + i for i, app in enumerate(apps)}
    results = {}
    async with portside_server(args.pool_size) as ps, aiohttp.ClientSession() as http:
        name = ps.new_name("appproxy")
        session = await ps.api.ComputeSession.get_or_create(
            IMAGE, name=name, preopen_ports=list(ports.values())
        )
        ps.sessions[name] = session
        assert session.id is not None
        broker = http_relay.broker_path(session_kernel_state(ps.data_dir, session.id))
        for app, app_port in ports.items():
            code = http_relay.app_launch_code(app_port, args.relay_body, app)
            out = await run_code(session, code)
            if out.stdout.strip() != "listening":
                raise RuntimeError(f"the {app} app did not start: {out!r}")
        for app, app_port in ports.items():
            info = await session.start_service(str(app_port), login_session_token="dummy")
            add = f"{info['wsproxy_addr']}/v2/proxy/{info['token']}/{session.id}/add?app={app_port}"
            host, port, cookie = await open_app(http, add)
            log(f"{app} app on port {app_port} in {name}; circuit {host}:{port}; waiting for quiet")
            await ps.wait_pool_full()
            direct = http_relay.Path_(
                "direct",
                lambda app_port=app_port: http_relay.open_broker(broker, app_port),
                http_relay.request_bytes(f"127.0.0.1:{app_port}", extra={"Cookie": cookie}),
            )
            proxied = http_relay.Path_(
                "proxied",
                lambda host=host, port=port: http_relay.open_tcp(host, port),
                http_relay.request_bytes(f"{host}:{port}", extra={"Cookie": cookie}),
            )
            results[app] = await http_relay.compare(
                direct,
                proxied,
                psutil.Process(ps.server.process.pid),
                rounds=args.relay_rounds,
                latency_count=args.relay_requests,
                concurrency=args.relay_connections,
                seconds=args.relay_window,
            )
    return results


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows, notes = await http_relay.report(
        "app proxy",
        measure,
        args,
        "app proxy, {app} app",
        TARGET_ADDED_LATENCY_MS,
        TARGET_THROUGHPUT_SHARE,
    )
    body = args.relay_body
    return rows, [*notes, f"app proxy: each app answers {body} bytes to a GET with the permit"]


def main() -> None:
    http_relay.relay_main(__doc__, run, "App proxy: through the proxy vs direct to the app")


if __name__ == "__main__":
    main()
