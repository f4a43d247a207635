"""``portside app`` (a local port forwarded to an app) and ``portside open`` (a browser URL)."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import Callable

import aiohttp
import requests

from .conftest import CLI, assert_one_line_error, describe


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _talk_to_terminal(port: int) -> None:
    """The web terminal's page, then a command typed into it and its output."""
    token = secrets.token_hex(4)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200
            assert "Portside terminal" in await resp.text()
        async with http.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
            # The shell computes the marker, so only its output (not the typed echo) has it.
            command = f"echo {token}-$((40 + 2))\r"
            await ws.send_str(json.dumps({"type": "input", "data": command}))
            output = ""
            deadline = time.monotonic() + 30
            while f"{token}-42" not in output:
                assert time.monotonic() < deadline, output
                message = await ws.receive(timeout=30)
                output += message.data.decode(errors="replace")


def test_app_forwards_a_local_port_to_the_web_terminal(
    cli: CLI, session_name: Callable[[], str]
) -> None:
    name = session_name()
    cli.ok("session", "create", "python", "-t", name, "-q")
    apps = json.loads(cli.ok("app", name, "-o", "json").stdout)
    assert [a["name"] for a in apps] == ["ttyd"]
    port = _free_port()
    forwarder = cli.popen("app", name, "ttyd", "-b", f"127.0.0.1:{port}")
    try:
        assert forwarder.stderr is not None
        banner = forwarder.stderr.readline()
        assert f"Forwarding http://127.0.0.1:{port} to ttyd in session {name}" in banner
        asyncio.run(_talk_to_terminal(port))
        # A second connection gets its own tunnel.
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200
    finally:
        forwarder.terminate()
        _, stderr = forwarder.communicate(timeout=30)
    assert forwarder.returncode == 0, stderr
    assert "Stopped forwarding" in stderr


def test_open_prints_a_url_that_opens_the_terminal(
    cli: CLI, session_name: Callable[[], str]
) -> None:
    name = session_name()
    cli.ok("session", "create", "python", "-t", name, "-q")
    # No display here: the URL is printed and no browser is tried.
    env = {k: v for k, v in cli.env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = CLI(env, cli.cwd).ok("open", name, "ttyd")
    url = result.stdout.strip()
    assert url.startswith("http"), describe(result)
    with requests.Session() as browser:  # keeps the permit cookie, as a browser does
        page = browser.get(url, timeout=30)
        assert page.status_code == 200
        assert "Portside terminal" in page.text
    assert requests.get(page.url, timeout=30).status_code in (401, 403)  # no cookie, no entry


def test_app_errors_are_one_line(cli: CLI, session_name: Callable[[], str]) -> None:
    name = session_name()
    cli.ok("session", "create", "python", "-t", name, "-q")
    assert_one_line_error(cli("app", name, "jupyterlab"), "no app 'jupyterlab'", "ttyd")
    assert_one_line_error(cli("open", name, "jupyterlab"), "jupyterlab")
    assert_one_line_error(cli("app", "no-such-session", "ttyd"), "no-such-session")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        assert_one_line_error(cli("app", name, "ttyd", "-b", f"127.0.0.1:{port}"), "listen")
    finally:
        busy.close()
