"""The streaming side of ``ComputeSession``: WebSocket helpers and file-transfer streams.

Kept apart from ``func/session.py`` so that the request/response calls read on their own; the
wire formats are runtime-semantics.md section 5 and wire-protocol.md section 4.2.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aiohttp
from aiohttp import hdrs

from ..exceptions import BackendClientError
from ..request import Request, WebSocketContextManager, WebSocketResponse

__all__ = (
    "ProgressReporter",
    "StreamPty",
    "StreamPtyContextManager",
    "execute_stream_request",
    "extract_multipart_tars",
    "open_for_upload",
    "resolve_upload_paths",
)

#: The read size for download parts; tar parts are small (the manager caps them at 1 MiB).
_CHUNK_SIZE = 64 * 1024

_CLOSING_TYPES = frozenset(
    {
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSING,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    }
)


def execute_stream_request(code: str, mode: str, opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """The one message that opens a stream-execute run; the socket itself is the run loop."""
    options: dict[str, Any]
    if mode == "query":
        options = {}
    elif mode == "batch":
        opts = opts or {}
        options = {
            "clean": opts.get("clean"),
            "build": opts.get("build"),
            "buildLog": bool(opts.get("buildLog", False)),
            "exec": opts.get("exec"),
        }
    else:
        raise BackendClientError(f"Invalid stream-execution mode: {mode}")
    return {"code": code, "mode": mode, "options": options}


class StreamPty(WebSocketResponse):
    """A session's pseudo-terminal; bytes travel base64-encoded inside JSON frames."""

    async def write(self, data: bytes) -> None:
        """Types ``data`` into the terminal."""
        await self.send_json({"type": "stdin", "chars": base64.b64encode(data).decode("ascii")})

    async def resize(self, rows: int, cols: int) -> None:
        await self.send_json({"type": "resize", "rows": rows, "cols": cols})

    async def ping(self) -> None:
        await self.send_json({"type": "ping"})

    async def restart(self) -> None:
        """Asks for a fresh terminal; servers that no longer support it end the stdin loop."""
        await self.send_json({"type": "restart"})

    async def read(self) -> bytes:
        """The next terminal output; ``b""`` once the server has closed the terminal."""
        while True:
            msg = await self.receive()
            if msg.type in _CLOSING_TYPES:
                return b""
            if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                continue
            try:
                frame = json.loads(msg.data)
            except (ValueError, UnicodeDecodeError) as e:
                raise BackendClientError(f"malformed terminal frame: {msg.data!r}") from e
            if isinstance(frame, dict) and frame.get("type") == "out":
                return base64.b64decode(frame.get("data", ""))


class StreamPtyContextManager(WebSocketContextManager):
    """``async with session.stream_pty() as pty:`` typed as a ``StreamPty``."""

    def __init__(self, request: Request) -> None:
        super().__init__(request, protocols=(), on_enter=None, response_cls=StreamPty)

    async def __aenter__(self) -> StreamPty:
        response = await super().__aenter__()
        assert isinstance(response, StreamPty)
        return response


class ProgressReporter:
    """A one-line byte counter on stderr, so ``show_progress`` works without a progress-bar
    dependency (the CLI draws its own bars)."""

    def __init__(self, description: str, total: int | None, *, enabled: bool) -> None:
        self.description = description
        self.total = total
        self.enabled = enabled
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            total = f" / {_human_size(self.total)}" if self.total else ""
            sys.stderr.write(f"\r{self.description}: {_human_size(self.done)}{total}")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(0)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


if TYPE_CHECKING:
    _BufferedFile = io.BufferedReader[io.FileIO]
else:
    _BufferedFile = io.BufferedReader


class _CountingReader(_BufferedFile):
    """A file whose reads are reported; aiohttp still sees a plain buffered file (and so still
    sends the part with its Content-Length)."""

    def __init__(self, path: Path, progress: ProgressReporter) -> None:
        super().__init__(io.FileIO(path, "rb"))
        self._progress = progress

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        self._progress.update(len(chunk))
        return chunk


def resolve_upload_paths(
    files: Sequence[str | Path], basedir: str | Path | None
) -> list[tuple[Path, str]]:
    """Each file with the name it is sent under: its POSIX path relative to ``basedir``, which
    is where the server puts it relative to the session's working directory."""
    base = Path.cwd() if basedir is None else Path(basedir).resolve()
    named: list[tuple[Path, str]] = []
    for file in files:
        path = Path(file).resolve()
        try:
            named.append((path, path.relative_to(base).as_posix()))
        except ValueError:
            raise ValueError(f'File "{path}" is outside of the base directory "{base}".') from None
    return named


def open_for_upload(path: Path, progress: ProgressReporter) -> IO[bytes]:
    if progress.enabled:
        return _CountingReader(path, progress)
    return open(path, "rb")


async def extract_multipart_tars(
    response: aiohttp.ClientResponse, dest: Path, progress: ProgressReporter
) -> list[str]:
    """Unpacks every tar part of a download answer into ``dest``; returns the member names.

    Members are filtered with tarfile's ``data`` filter, so an archive cannot write outside
    ``dest`` or create devices and setuid files.
    """
    reader = aiohttp.MultipartReader.from_response(response)
    names: list[str] = []
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, aiohttp.BodyPartReader):
            raise BackendClientError("a download part is itself multipart")
        encoding = part.headers.get(hdrs.CONTENT_ENCODING, "identity").lower()
        if encoding != "identity":
            raise BackendClientError(f"unexpected download part encoding: {encoding}")
        transfer = part.headers.get(hdrs.CONTENT_TRANSFER_ENCODING, "binary").lower()
        if transfer not in ("binary", "8bit", "7bit"):
            raise BackendClientError(f"unexpected download transfer encoding: {transfer}")
        with tempfile.TemporaryFile(suffix=".tar") as archive:
            while chunk := await part.read_chunk(_CHUNK_SIZE):
                archive.write(chunk)
                progress.update(len(chunk))
            archive.seek(0)
            names += await asyncio.to_thread(_extract_tar, archive, dest)
    return names


def _extract_tar(archive: IO[bytes], dest: Path) -> list[str]:
    with tarfile.open(fileobj=archive, mode="r:*") as tar:
        tar.extractall(path=dest, filter="data")
        return tar.getnames()
