"""What a model service's ingress adds to an inference call: latency per request and requests
per second through it, against calling the replica directly, in the same run.

A model folder holds the apps of ``bench.http_relay`` as model servers, one
``model-definition`` file per app; a service with one replica is deployed for each, and its
calls carry the service's token (``Authorization: BackendAI <token>``) as a client's do.  Each
call is a small JSON ``POST`` (an inference request's shape); the replica answers a fixed body.

What is fair here is what ``bench.appproxy`` explains, with the ingress in place of an app's
circuit:

- **Direct is what the ingress connects to underneath**: the replica's port inside its
  session's network namespace, reached through the kernel's connect broker (the ingress's
  circuit asks the same broker for its own connections).  The one difference is the ingress
  hop: accept, HTTP parsing, the token check, picking a healthy replica, forwarding, relaying
  the response.
- **The same replica process, load generator and request bytes** on both paths (only ``Host``
  differs), keep-alive connections opened before timing starts, and direct and proxied
  alternating in ABBA order over several rounds.

    .venv/bin/python -m bench.model_ingress [--relay-rounds 5] [--relay-connections 16] ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from ai.backend.client.func.service import Service
from bench import http_relay
from bench.common import (
    Portside,
    Row,
    log,
    portside_server,
    session_kernel_state,
)

#: The replica's port inside its session.
MODEL_PORT = 8000
TARGET_ADDED_LATENCY_MS = 1.0
#: An inference call's shape: a small JSON body.
BODY = b'{"model": "bench", "input": ["The quick brown fox jumps over the lazy dog."]}'

DEFINITION = """
models:
  - name: bench-{app}
    model_path: /models
    service:
      start_command: python /models/{app}_app.py {args}
      port: {port}
      health_check:
        path: /health
        interval: 2
        max_retries: 3
        initial_delay: 30
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    http_relay.add_arguments(parser)


def write_model_folder(root: Path, apps: list[str], body_size: int) -> list[Path]:
    files = []
    for app in apps:
        _, source, *args = http_relay.app_command(app, MODEL_PORT, body_size)
        server = root / f"{app}_app.py"
        server.write_text(source)
        definition = root / f"model-definition-{app}.yaml"
        definition.write_text(DEFINITION.format(app=app, port=MODEL_PORT, args=" ".join(args)))
        files += [server, definition]
    return files


async def wait_healthy(service: Service, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await service.info()
        healthy = [r for r in info["routes"] if r["status"] == "HEALTHY"]
        if info.get("url") and healthy:
            return info
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the service has no healthy replica after {timeout:.0f} s: {info!r}")


async def delete_service(service: Service, timeout: float = 60.0) -> None:
    """Deletes the service and waits until its replicas are gone (they drain first)."""
    try:
        await service.delete()
    except Exception as e:
        log(f"deleting service {service.id} failed: {e!r}")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await service.info()
        except Exception:
            return
        await asyncio.sleep(0.3)
    log(f"service {service.id} was not gone after {timeout:.0f} s")


async def measure_one(
    ps: Portside, args: argparse.Namespace, app: str, folder: str
) -> http_relay.Comparison:
    service = await ps.api.Service.create(
        "python",
        folder,
        1,
        service_name=f"bench-{app}-{uuid.uuid4().hex[:6]}",
        resources={"cpu": 1, "mem": "256m"},
        model_definition_path=f"model-definition-{app}.yaml",
    )
    try:
        info = await wait_healthy(service)
        token = (await service.generate_api_token("3600s"))["token"]
        parts = urlsplit(info["url"])
        assert parts.hostname is not None
        assert parts.port is not None
        host, port = parts.hostname, parts.port
        route = next(r for r in info["routes"] if r["status"] == "HEALTHY")
        state = session_kernel_state(ps.data_dir, uuid.UUID(route["session_id"]))
        broker = http_relay.broker_path(state)
        log(f"{app} replica healthy; ingress at {host}:{port}; waiting for quiet")
        await ps.wait_pool_full()
        extra = {
            "Authorization": f"BackendAI {token}",
            "Content-Type": "application/json",
        }
        direct = http_relay.Path_(
            "direct",
            lambda: http_relay.open_broker(broker, MODEL_PORT),
            http_relay.request_bytes(
                f"127.0.0.1:{MODEL_PORT}", "/v1/embeddings", extra, method="POST", body=BODY
            ),
        )
        proxied = http_relay.Path_(
            "proxied",
            lambda: http_relay.open_tcp(host, port),
            http_relay.request_bytes(
                f"{host}:{port}", "/v1/embeddings", extra, method="POST", body=BODY
            ),
        )
        return await http_relay.compare(
            direct,
            proxied,
            psutil.Process(ps.server.process.pid),
            rounds=args.relay_rounds,
            latency_count=args.relay_requests,
            concurrency=args.relay_connections,
            seconds=args.relay_window,
        )
    finally:
        await delete_service(service)


async def measure(args: argparse.Namespace) -> dict[str, http_relay.Comparison]:
    apps = http_relay.app_kinds(args)
    results = {}
    tmp = Path(tempfile.mkdtemp(prefix="portside-bench-model-"))
    try:
        files = write_model_folder(tmp, apps, args.relay_body)
        async with portside_server(args.pool_size) as ps:
            folder = f"bench-model-{uuid.uuid4().hex[:8]}"
            await ps.api.VFolder.create(folder)
            try:
                await ps.api.VFolder(folder).upload([f.name for f in files], basedir=tmp)
                for app in apps:
                    results[app] = await measure_one(ps, args, app, folder)
            finally:
                with contextlib.suppress(Exception):
                    await ps.api.VFolder(folder).delete()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


async def run(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    rows, notes = await http_relay.report(
        "model ingress",
        measure,
        args,
        "model ingress, {app} replica",
        TARGET_ADDED_LATENCY_MS,
        None,
    )
    call = f"each call POSTs {len(BODY)} bytes of JSON with the service's token"
    return rows, [*notes, f"model ingress: {call}; the replica answers {args.relay_body} bytes"]


def main() -> None:
    http_relay.relay_main(
        __doc__, run, "Model-service ingress: through it vs direct to the replica"
    )


if __name__ == "__main__":
    main()
