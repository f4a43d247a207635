"""``portside app`` (a local port forwarded to an app in a session) and ``portside open``.

``app`` listens on a local port; each connection to it becomes one WebSocket to
``/stream/session/{session}/tcpproxy?app=APP`` carrying the raw bytes both ways, so any TCP
client (a browser, ssh, a database driver) reaches the app.  ``open`` asks the app proxy for
a browser URL instead (``start-service``, then the proxy's ``/v2/proxy/.../add``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import webbrowser
from typing import Any

import aiohttp
import click

from ai.backend.client.exceptions import BackendAPIError, BackendError
from ai.backend.client.request import Request, WebSocketResponse
from ai.backend.client.session import AsyncSession

from .context import run_client
from .output import Notices, output_option, print_table
from .session import compute_session, session_id_of

_READ_SIZE = 64 * 1024


def parse_bind(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not [HOST:]PORT", param_hint="--bind") from None
    return host.strip("[]") or "127.0.0.1", number


async def _pump_down(ws: WebSocketResponse, writer: asyncio.StreamWriter) -> None:
    try:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                writer.write(message.data)
                await writer.drain()
            elif message.type == aiohttp.WSMsgType.TEXT:
                writer.write(message.data.encode())
                await writer.drain()
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                break
    except ConnectionError:
        pass
    finally:
        writer.close()


async def _pump_up(reader: asyncio.StreamReader, ws: WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await reader.read(_READ_SIZE):
            await ws.send_bytes(chunk)


class Forwarder:
    """Carries each local connection to the app over its own WebSocket."""

    def __init__(self, api: AsyncSession, session_ref: str, app: str, notices: Notices) -> None:
        self.api = api
        self.session_ref = session_ref
        self.app = app
        self.notices = notices

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = f"/stream/session/{self.session_ref}/tcpproxy"
        request = Request("GET", path, params={"app": self.app}, session=self.api)
        try:
            async with request.connect_websocket() as ws:
                tasks = [
                    asyncio.create_task(_pump_down(ws, writer)),
                    asyncio.create_task(_pump_up(reader, ws)),
                ]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        except (BackendError, aiohttp.ClientError, OSError) as e:
            self.notices.warn(f"A connection to {self.app} failed: {e!r}")
            with contextlib.suppress(ConnectionError):
                writer.write(_bad_gateway(str(e)))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _bad_gateway(reason: str) -> bytes:
    body = f"The app could not be reached: {reason}\n".encode()
    head = (
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _apps(api: AsyncSession, ref: str) -> list[dict[str, Any]]:
    apps: list[dict[str, Any]] = await compute_session(api, ref).stream_app_info()
    return apps


@click.command()
@click.argument("session_ref", metavar="SESSION")
@click.argument("app_name", metavar="APP", required=False)
@click.option(
    "-b",
    "--bind",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="[HOST:]PORT",
    help="The local address to listen on.",
)
@output_option
def app(session_ref: str, app_name: str | None, bind: str, output: str) -> None:
    """Forward a local port to an app in a session.

    Connections to the local port reach APP (e.g. ttyd, jupyter) in SESSION until
    Ctrl-C.  Without APP, list the session's apps.

    \b
    Example:
      portside app mysession ttyd -b 127.0.0.1:8080   # then browse http://127.0.0.1:8080
    """
    if app_name is None:
        apps = run_client(lambda api: _apps(api, session_ref))
        columns = [("name", "App"), ("protocol", "Protocol"), ("ports", "Ports")]
        print_table(apps, columns, output=output, empty="The session has no apps.")
        return
    host, port = parse_bind(bind)
    notices = Notices()

    async def work(api: AsyncSession) -> None:
        names = [a["name"] for a in await _apps(api, session_ref)]
        if app_name not in names:
            raise click.ClickException(
                f"session {session_ref} has no app {app_name!r}; it has: {', '.join(names)}"
            )
        forwarder = Forwarder(api, session_ref, app_name, notices)
        server = await asyncio.start_server(forwarder.handle, host, port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        shown = f"[{host}]" if ":" in host else host
        notices.done(
            f"Forwarding http://{shown}:{port} to {app_name} in session {session_ref}. "
            "Press Ctrl-C to stop."
        )
        async with server:
            await stop.wait()
        notices.done("Stopped forwarding.")

    try:
        run_client(work)
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def _can_open_browser() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


async def app_url(api: AsyncSession, ref: str, app_name: str) -> str:
    """A URL that opens ``app_name`` in a browser, through the app proxy."""
    session_id = await session_id_of(api, ref)
    compute = api.ComputeSession(id=session_id)
    grant = await compute.start_service(app_name, login_session_token="dummy")
    proxy = str(grant["wsproxy_addr"]).rstrip("/")
    url = f"{proxy}/v2/proxy/{grant['token']}/{session_id}/add"
    params = {"app": app_name, "protocol": "http"}
    async with api.aiohttp_session.get(url, params=params) as response:
        try:
            body = await response.json(content_type=None)
        except (ValueError, aiohttp.ContentTypeError):
            body = {"title": await response.text()}
        if response.status >= 400 or not isinstance(body, dict) or "url" not in body:
            raise BackendAPIError(response.status, response.reason or "", body)
    return str(body["url"])


@click.command("open")
@click.argument("session_ref", metavar="SESSION")
@click.argument("app_name", metavar="APP", default="ttyd")
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
def open_app(session_ref: str, app_name: str, no_browser: bool) -> None:
    """Open an app of a session in a browser (and print its URL).

    APP defaults to ttyd, the web terminal.  The URL is printed in any case; a browser
    is opened only where there is a display.
    """
    url = run_client(lambda api: app_url(api, session_ref, app_name))
    click.echo(url)
    if no_browser or not _can_open_browser():
        return
    try:
        webbrowser.open(url)
    except Exception as e:  # a missing or broken browser must not fail the command
        Notices().warn(f"Could not open a browser: {e}")
