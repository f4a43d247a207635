"""``portside run``: code or files in a session, its output streamed live.

Like ``backend.ai run``: the session is created (or reused by name), files are uploaded, and
the code runs over the ``/stream/session/{id}/execute`` WebSocket.  stdout and stderr arrive
as they are written; ``input()`` is answered from this terminal; images are saved as files.
The command exits with the program's exit code.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

import aiohttp
import click

from ai.backend.client.exceptions import BackendError
from ai.backend.client.func.session import ComputeSession
from ai.backend.client.session import AsyncSession

from .context import quiet_option, run_client
from .output import Notices
from .session_opts import creation_kwargs, creation_options
from .startup import start_session
from .transfer import upload_to_session

_EXTENSIONS = {"image/svg+xml": ".svg", "image/jpeg": ".jpg", "text/html": ".html"}


class OutputSaver:
    """Saves the non-text console records (images, HTML) as numbered files in ``directory``."""

    def __init__(self, directory: Path, prefix: str, notices: Notices) -> None:
        self.directory = directory
        self.prefix = prefix
        self.notices = notices
        self.count = 0

    def save(self, mime: str, payload: Any) -> Path:
        data: bytes
        text = payload if isinstance(payload, str) else json.dumps(payload)
        if text.startswith("data:") and ";base64," in text:
            data = base64.b64decode(text.split(";base64,", 1)[1])
        elif mime.startswith("image/") and mime != "image/svg+xml":
            data = base64.b64decode(text)
        else:
            data = text.encode()
        self.count += 1
        extension = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ".out"
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.prefix}-output-{self.count}{extension}"
        path.write_bytes(data)
        # Always said, even with --quiet: this is where part of the output went.
        self.notices.warn(f"Saved {mime} output to {path}")
        return path


async def _answer(options: dict[str, Any] | None) -> str:
    password = bool((options or {}).get("is_password"))

    def read() -> str:
        if password:
            return getpass.getpass("")
        line = sys.stdin.readline()
        return line.rstrip("\r\n")

    return await asyncio.to_thread(read)


async def exec_loop(
    compute: ComputeSession,
    mode: str,
    code: str,
    *,
    opts: dict[str, Any] | None,
    saver: OutputSaver,
    notices: Notices,
) -> int:
    """Streams one run to the end; returns its exit code."""
    async with compute.stream_execute(code, mode=mode, opts=opts) as stream:
        async for frame in stream:
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                break
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            result: dict[str, Any] = json.loads(frame.data)
            for kind, data in result.get("console") or []:
                if kind == "stdout":
                    sys.stdout.write(data)
                    sys.stdout.flush()
                elif kind == "stderr":
                    sys.stderr.write(data)
                    sys.stderr.flush()
                elif kind == "media":
                    saver.save(str(data[0]), data[1])
                elif kind == "html":
                    saver.save("text/html", data)
                else:
                    notices.info(f"{kind}: {data}")
            status = result.get("status")
            if status in ("clean-finished", "build-finished"):
                phase = "Clean" if status == "clean-finished" else "Build"
                notices.done(f"{phase} finished (exit code {result.get('exitCode')}).")
            elif status == "waiting-input":
                await stream.send_str(await _answer(result.get("options")))
            elif status == "finished":
                exit_code = int(result.get("exitCode") or 0)
                notices.done(f"Execution finished (exit code {exit_code}).")
                return exit_code
            elif status == "exec-timeout":
                raise click.ClickException("the run timed out; the server ended the session")
            elif status in ("error", "server-restarting"):
                raise click.ClickException(str(result.get("msg") or status))
    raise click.ClickException("the server closed the connection before the run finished")


@click.command()
@click.argument("image")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False))
@click.option("-c", "--code", metavar="CODE", help="Code to run (instead of files).")
@click.option("--clean", metavar="CMD", help="Command run before the build (default: auto).")
@click.option("--build", metavar="CMD", help="Command that builds the files (default: auto).")
@click.option("--exec", "exec_", metavar="CMD", help="Command that runs the files (default: auto).")
@click.option(
    "--basedir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Files keep their paths relative to this directory (default: the current one).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where images and other rich outputs are saved (created if missing).",
)
@click.option("--rm", is_flag=True, help="Destroy the session when the run ends.")
@creation_options
@quiet_option
def run(
    image: str,
    files: tuple[str, ...],
    code: str | None,
    clean: str | None,
    build: str | None,
    exec_: str | None,
    basedir: Path | None,
    output_dir: Path,
    rm: bool,
    quiet: bool,
    **creation: Any,
) -> None:
    """Run code or files in a session, streaming the output.

    CODE (-c) or FILES run in a session of IMAGE.

    \b
    Examples:
      portside run python -c 'print("hello")'
      portside run python main.py util.py --exec 'python main.py --fast'
      portside run python setup.py app.py --build 'pip install .' --exec 'python app.py'

    A session with the name given by --name is reused if it is still running; without
    a name a new one is created.  The exit code is the program's.
    """
    if bool(files) == bool(code):
        raise click.UsageError("give either code with -c or FILES to run, not both or neither")
    notices = Notices(quiet=quiet)
    kwargs = creation_kwargs(creation)

    async def work(api: AsyncSession) -> int:
        compute = await start_session(api, image, quiet=quiet, **kwargs)
        saver = OutputSaver(output_dir, compute.name or "portside", notices)
        try:
            if files:
                await upload_to_session(compute, list(files), basedir=basedir, quiet=quiet)
                opts = {"clean": clean or "*", "build": build or "*", "exec": exec_ or "*"}
                return await exec_loop(
                    compute, "batch", "", opts=opts, saver=saver, notices=notices
                )
            return await exec_loop(
                compute, "query", code or "", opts=None, saver=saver, notices=notices
            )
        finally:
            if rm:
                try:
                    await compute.destroy()
                    notices.done(f"Destroyed session {compute.name}.")
                except BackendError as e:
                    notices.warn(f"Could not destroy session {compute.name}: {e!r}")

    exit_code = run_client(work)
    if exit_code:
        raise click.exceptions.Exit(exit_code)
