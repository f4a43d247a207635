"""Moving files in and out of folders: upload and download tokens, TUS offsets, quotas.

``request-upload`` checks the target and the quota before any byte moves (the official
client's TUS uploader retries a failed ``PATCH`` for a long time, so a refusal must come
first), then each ``PATCH`` appends to a partial file whose size is the TUS offset; the last
byte moves the file into place after a second quota check.  Downloads check the file when the
token is issued and open it again, confined, on each (ranged) GET.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from portside.db.models import VFolderRow
from portside.db.repositories import vfolders as repo
from portside.db.repositories.identity import Principal
from portside.errors import Conflict, InvalidAPIParameters, QuotaExceeded, RequestTooLarge
from portside.storage import FileStat, split_relpath
from portside.storage.transfers import Transfer, TransferTokens

if TYPE_CHECKING:
    from .vfolders import VFolderService


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


class TransferService:
    def __init__(self, folders: VFolderService, tokens: TransferTokens) -> None:
        self.folders = folders
        self.volume = folders.volume
        self.transfers = tokens

    async def _check_quota(self, row: VFolderRow, path: str, size: int) -> None:
        if not row.quota:
            return
        usage = await asyncio.to_thread(self.volume.usage, row.id)
        replaced = await asyncio.to_thread(self.volume.existing_size, row.id, path)
        if usage.used_bytes - replaced + size > row.quota:
            raise QuotaExceeded(
                f"the folder {row.name!r} is full: its quota is {human_size(row.quota)}, it "
                f"holds {human_size(usage.used_bytes)}, and {path!r} ({human_size(size)}) does "
                "not fit; delete files or upload less",
                data={"quota": row.quota, "used": usage.used_bytes, "size": size},
            )

    async def request_upload(self, principal: Principal, ref: str, path: str, size: int) -> str:
        record = await self.folders.writable(principal, ref)
        if size < 0:
            raise InvalidAPIParameters("size must be the file's size in bytes (0 or more)")
        await asyncio.to_thread(self.volume.check_target, record.row.id, path)
        await self._check_quota(record.row, path, size)
        # Partial uploads older than any token could be are abandoned; other servers' recent
        # ones are left alone.
        self.transfers.forget_expired()
        await asyncio.to_thread(self.volume.clear_uploads, self.transfers.ttl)
        transfer = Transfer("upload", record.row.id, record.row.name, path, principal.user_id, size)
        if size == 0:
            # A TUS client sends nothing for an empty file: it is complete already.
            os.close(await asyncio.to_thread(self.volume.open_partial, transfer.upload_id, 0))
            await asyncio.to_thread(
                self.volume.commit_upload, transfer.upload_id, record.row.id, path
            )
        return self.transfers.issue(transfer)

    def upload_status(self, token: str) -> tuple[int, int]:
        """``(offset, length)`` of an upload, for TUS ``HEAD``."""
        transfer = self.transfers.get(token, "upload")
        if transfer.done:
            return transfer.size, transfer.size
        return self.volume.partial_offset(transfer.upload_id), transfer.size

    async def upload_chunk(
        self,
        token: str,
        offset: int,
        chunks: AsyncIterator[bytes],
        length: int | None,
        dst_dir: str | None = None,
    ) -> int:
        """Appends one TUS ``PATCH`` body at ``offset``; returns the new offset.

        ``dst_dir`` (26.x's ``vfolder upload --dst-dir`` puts it in the upload URL) is a
        directory inside the folder that the token's path is placed under."""
        transfer = self.transfers.get(token, "upload")
        if dst_dir and not transfer.dst_dir:
            split_relpath(dst_dir)
            transfer.dst_dir = dst_dir
        if length is not None and offset + length > transfer.size:
            raise RequestTooLarge(
                f"the upload was declared as {transfer.size} bytes; this chunk goes past that"
            )
        async with transfer.lock:
            if transfer.done:
                raise Conflict("this upload is complete already")
            fd = await asyncio.to_thread(self.volume.open_partial, transfer.upload_id, offset)
            written = offset
            try:
                async for chunk in chunks:
                    if written + len(chunk) > transfer.size:
                        raise RequestTooLarge(
                            f"the upload was declared as {transfer.size} bytes; "
                            "more than that arrived"
                        )
                    await asyncio.to_thread(_write_all, fd, chunk)
                    written += len(chunk)
            finally:
                os.close(fd)
            if written == transfer.size:
                await self._complete(token, transfer)
        return written

    async def _complete(self, token: str, transfer: Transfer) -> None:
        async with self.folders.db() as db:
            record = await db.run_sync(repo.get_folder, transfer.folder_id)
        if record is None:
            self.transfers.finish(token)
            await asyncio.to_thread(self.volume.discard_upload, transfer.upload_id)
            raise repo.folder_not_found(transfer.folder_name)
        try:
            target = posixpath.join(transfer.dst_dir, transfer.path)
            await self._check_quota(record.row, target, transfer.size)
            await asyncio.to_thread(
                self.volume.commit_upload, transfer.upload_id, transfer.folder_id, target
            )
        except BaseException:
            self.transfers.finish(token)
            await asyncio.to_thread(self.volume.discard_upload, transfer.upload_id)
            raise
        transfer.done = True

    async def request_download(self, principal: Principal, ref: str, path: str) -> str:
        record = await self.folders.get(principal, ref)
        fd, _ = await asyncio.to_thread(self.volume.open_file, record.row.id, path)
        os.close(fd)
        transfer = Transfer("download", record.row.id, record.row.name, path, principal.user_id)
        return self.transfers.issue(transfer)

    async def open_download(self, token: str) -> tuple[int, FileStat, str]:
        """A descriptor of the file a download token names (the caller closes it)."""
        transfer = self.transfers.get(token, "download")
        fd, st = await asyncio.to_thread(self.volume.open_file, transfer.folder_id, transfer.path)
        return fd, st, transfer.path


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
