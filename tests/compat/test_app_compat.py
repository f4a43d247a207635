"""``backend.ai app SESSION ttyd -b 127.0.0.1:PORT`` forwards a local port to the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path

import aiohttp

from ai.backend.client.config import APIConfig
from ai.backend.client.session import Session

from ..harness import DEV_ADMIN, RunningServer
from .conftest import OfficialClient


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _talk_to_terminal(port: int) -> str:
    # The shell computes the marker, so the echoed command line never contains it (and bash's
    # bracketed-paste escapes around the echo do not matter).
    token = f"portside-{secrets.token_hex(4)}"
    marker = f"{token}-42"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200
            assert "Portside terminal" in await resp.text()
        async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            await ws.send_str(json.dumps({"type": "input", "data": f"echo {token}-$((40 + 2))\r"}))
            output = ""
            deadline = time.monotonic() + 30
            while marker not in output:
                assert time.monotonic() < deadline, output
                message = await ws.receive(timeout=30)
                output += message.data.decode(errors="replace")
    return output


def test_app_command_forwards_a_local_port(
    official: OfficialClient, server: RunningServer, tmp_path: Path
) -> None:
    config = APIConfig(endpoint=server.api_url, access_key=DEV_ADMIN[0], secret_key=DEV_ADMIN[1])
    name = f"fwd-{uuid.uuid4().hex[:8]}"
    with Session(config=config) as api:
        compute = api.ComputeSession.get_or_create("python", name=name)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BACKEND_")}
        env.update(server.env())
        forwarder = subprocess.Popen(
            [str(official.cli), "app", name, "ttyd", "-b", f"127.0.0.1:{port}"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert forwarder.poll() is None, forwarder.stdout.read() if forwarder.stdout else ""
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the local port never opened"
                    time.sleep(0.2)
            asyncio.run(asyncio.wait_for(_talk_to_terminal(port), 60))
        finally:
            forwarder.terminate()
            output, _ = forwarder.communicate(timeout=10)
            print(output.decode(errors="replace"))
            compute.destroy()
