"""File transfers with byte progress: to and from sessions, to and from virtual folders.

Uploads go through the SDK's own calls and are counted as aiohttp sends their bodies
(``count_sent_bytes``).  Session downloads feed a bar from the multipart reader, and folder
downloads are counted by watching the file grow on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from rich.progress import TaskID

from ai.backend.client.func.session import ComputeSession
from ai.backend.client.func.session_streams import extract_multipart_tars
from ai.backend.client.request import Request
from ai.backend.client.session import AsyncSession

from .context import count_sent_bytes
from .progress import TransferProgress

#: Folder uploads are sent in pieces of this size, so the bar moves within big files too.
FOLDER_CHUNK_SIZE = 1024 * 1024


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _local_files(paths: Sequence[Path], recursive: bool) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and recursive:
            found += [p for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            found.append(path)
    return found


async def upload_to_session(
    compute: ComputeSession, files: Sequence[str], *, basedir: Path | None, quiet: bool
) -> None:
    """Uploads ``files`` to the session's working directory (paths relative to ``basedir``)."""
    total = sum(Path(f).stat().st_size for f in files)
    with TransferProgress(quiet=quiet) as bars:
        task = bars.add(f"Uploading {_plural(len(files), 'file')}", total)

        def sent(method: str, n: int) -> None:
            if method == "POST":
                bars.advance(task, n)

        with count_sent_bytes(sent):
            await compute.upload(list(files), basedir=basedir)
        bars.finish(task)


async def download_from_session(
    api: AsyncSession,
    compute: ComputeSession,
    files: Sequence[str],
    dest: Path,
    *,
    quiet: bool,
) -> list[str]:
    """Downloads ``files`` (relative to the session's working directory) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    params: dict[str, object] = {"files": list(files)}
    if compute.owner_access_key:
        params["owner_access_key"] = compute.owner_access_key
    request = Request(
        "POST", f"/session/{compute.session_identifier}/download", params=params, session=api
    )
    async with request.fetch() as response:
        with TransferProgress(quiet=quiet) as bars:
            reporter = bars.reporter(
                f"Downloading {_plural(len(files), 'file')}", response.content_length
            )
            names = await extract_multipart_tars(response.raw_response, dest, reporter)
            reporter.finish()
    return names


async def upload_to_folder(
    api: AsyncSession,
    folder: str,
    sources: Sequence[Path],
    *,
    basedir: Path | None,
    dst_dir: str | None,
    recursive: bool,
    quiet: bool,
) -> int:
    """Uploads files (directories with ``recursive``) into ``folder``; returns the count."""
    files = _local_files([basedir / s if basedir else s for s in sources], recursive)
    total = sum(f.stat().st_size for f in files)
    with TransferProgress(quiet=quiet) as bars:
        task = bars.add(f"Uploading {_plural(len(files), 'file')} to {folder}", total)

        def sent(method: str, n: int) -> None:
            if method == "PATCH":
                bars.advance(task, n)

        with count_sent_bytes(sent):
            await api.VFolder(folder).upload(
                [str(s) for s in sources],
                basedir=basedir,
                dst_dir=dst_dir,
                recursive=recursive,
                chunk_size=FOLDER_CHUNK_SIZE,
            )
        bars.finish(task)
    return len(files)


async def _remote_size(api: AsyncSession, folder: str, path: str) -> int | None:
    remote = PurePosixPath(path)
    with contextlib.suppress(Exception):
        listing = await api.VFolder(folder).list_files(str(remote.parent))
        for item in listing.get("items") or []:
            if item.get("name") == remote.name and isinstance(item.get("size"), int):
                size: int = item["size"]
                return size
    return None


async def download_from_folder(
    api: AsyncSession, folder: str, paths: Sequence[str], dest: Path, *, quiet: bool
) -> list[Path]:
    """Downloads ``paths`` of ``folder`` to the same relative paths under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with TransferProgress(quiet=quiet) as bars:
        for path in paths:
            target = dest / path
            task = bars.add(f"Downloading {path}", await _remote_size(api, folder, path))

            async def watch(target: Path = target, task: TaskID = task) -> None:
                while True:
                    with contextlib.suppress(OSError):
                        bars.set_done(task, target.stat().st_size)
                    await asyncio.sleep(0.1)

            watcher = asyncio.create_task(watch())
            try:
                await api.VFolder(folder).download([path], basedir=dest)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            bars.set_done(task, target.stat().st_size)
            bars.finish(task)
            saved.append(target)
    return saved
