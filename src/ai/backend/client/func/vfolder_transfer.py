"""Moving one file in or out of a folder with the URL and token the server handed out.

Uploads speak TUS 1.0 (``PATCH`` with ``Upload-Offset``; ``HEAD`` to learn the offset after a
failure), downloads are a GET resumed with ``Range``/``If-Range``: the same requests the
official client makes through ``aiotusclient`` and its download loop, written here with plain
aiohttp.  The token authorizes these calls, so they are not signed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

import aiohttp
from yarl import URL

from ..exceptions import BackendClientError
from ..request import _raise_for_status

TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
#: Connection failures tolerated per transfer before giving up.
MAX_RETRIES = 5


def _with_token(url: str, token: str) -> URL:
    return URL(url).with_query({"token": token})


async def _remote_offset(http: aiohttp.ClientSession, url: URL) -> int:
    async with http.head(url, headers=TUS_HEADERS) as resp:
        await _raise_for_status(resp)
        return int(resp.headers["Upload-Offset"])


async def _read_at(stream: IO[bytes], offset: int, size: int) -> bytes:
    def read() -> bytes:
        stream.seek(offset)
        return stream.read(size)

    return await asyncio.to_thread(read)


async def tus_upload(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    source: Path,
    *,
    chunk_size: int,
    max_retries: int = MAX_RETRIES,
) -> None:
    target = _with_token(url, token)
    size = source.stat().st_size
    offset = 0
    failures = 0
    with source.open("rb") as stream:
        while offset < size:
            chunk = await _read_at(stream, offset, min(chunk_size, size - offset))
            headers = {
                **TUS_HEADERS,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            }
            try:
                async with http.patch(target, data=chunk, headers=headers) as resp:
                    if resp.status == 409:
                        # The server holds a different offset (an earlier try got through).
                        offset = await _remote_offset(http, target)
                        continue
                    await _raise_for_status(resp)
                    offset = int(resp.headers["Upload-Offset"])
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
                failures += 1
                if failures > max_retries:
                    raise BackendClientError(
                        f"uploading {source} failed after {max_retries} retries: {e!r}"
                    ) from e
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
                offset = await _remote_offset(http, target)


async def ranged_download(
    http: aiohttp.ClientSession,
    url: str,
    token: str,
    destination: Path,
    *,
    chunk_size: int,
    max_retries: int = MAX_RETRIES,
) -> None:
    source = _with_token(url, token)
    received = 0
    last_modified: str | None = None
    failures = 0
    while True:
        headers = {}
        if last_modified is not None:
            headers = {"Range": f"bytes={received}-", "If-Range": last_modified}
        try:
            async with http.get(source, headers=headers) as resp:
                await _raise_for_status(resp)
                if resp.status == 200:
                    received = 0
                last_modified = resp.headers.get("Last-Modified")
                mode = "ab" if resp.status == 206 else "wb"
                with destination.open(mode) as out:
                    async for chunk in resp.content.iter_chunked(chunk_size):
                        await asyncio.to_thread(out.write, chunk)
                        received += len(chunk)
                return
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            failures += 1
            if failures > max_retries:
                raise BackendClientError(
                    f"downloading to {destination} failed after {failures} tries: {e!r}"
                ) from e
            await asyncio.sleep(min(5.0, 0.1 * 2**failures))
