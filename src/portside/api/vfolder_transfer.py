"""The upload (TUS) and download (ranged GET) endpoints behind ``request-upload``/``-download``.

The official client gives the URL it got to ``aiotusclient``, which sends ``PATCH`` requests
with ``Tus-Resumable: 1.0.0``, ``Upload-Offset`` and ``Content-Type:
application/offset+octet-stream`` and expects 204 with the new ``Upload-Offset`` (it may also
ask ``HEAD`` for the offset after a failure).  Downloads are a plain GET, repeated after a
broken connection with ``Range: bytes=N-`` and ``If-Range: <Last-Modified>``: 206 continues,
200 starts over.  These clients cannot sign requests, so the token in the query authorizes
each call; the token is bound to one folder, one path and the user who asked for it.
"""

from __future__ import annotations

import asyncio
import os
import re
from email.utils import formatdate
from urllib.parse import quote

from aiohttp import web

from portside.errors import InvalidAPIParameters

from .auth import public
from .context import PLATFORM
from .errors import problem_response

routes = web.RouteTableDef()
UPLOAD_PATH = "/folders/_/tus/upload"
DOWNLOAD_PATH = "/folders/_/download"
TUS_VERSION = "1.0.0"
CHUNK = 1024 * 1024
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _token(request: web.Request) -> str:
    token = request.query.get("token")
    if not token:
        raise InvalidAPIParameters(
            "the transfer token is missing; use the URL and token from "
            "request-upload or request-download"
        )
    return token


def _tus_headers(**extra: str) -> dict[str, str]:
    return {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store", **extra}


@routes.options(UPLOAD_PATH)
@public
async def tus_options(request: web.Request) -> web.Response:
    return web.Response(
        status=204,
        headers=_tus_headers(**{"Tus-Version": TUS_VERSION, "Tus-Extension": ""}),
    )


@routes.head(UPLOAD_PATH)
@public
async def tus_head(request: web.Request) -> web.Response:
    offset, length = request.app[PLATFORM].vfolders.transfer.upload_status(_token(request))
    return web.Response(
        status=200,
        headers=_tus_headers(**{"Upload-Offset": str(offset), "Upload-Length": str(length)}),
    )


@routes.patch(UPLOAD_PATH)
@public
async def tus_patch(request: web.Request) -> web.Response:
    token = _token(request)
    if request.content_type != "application/offset+octet-stream":
        raise InvalidAPIParameters(
            "a TUS PATCH must have Content-Type: application/offset+octet-stream"
        )
    try:
        offset = int(request.headers["Upload-Offset"])
    except (KeyError, ValueError):
        raise InvalidAPIParameters("a TUS PATCH needs an Upload-Offset header") from None
    new_offset = await request.app[PLATFORM].vfolders.transfer.upload_chunk(
        token,
        offset,
        request.content.iter_chunked(CHUNK),
        request.content_length,
        dst_dir=request.query.get("dst_dir"),
    )
    return web.Response(status=204, headers=_tus_headers(**{"Upload-Offset": str(new_offset)}))


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_exclusive)`` of a single ``bytes=`` range; None for one we ignore."""
    match = _RANGE_RE.match(header or "")
    if match is None or match.group(0) == "bytes=-":
        return None
    first, last = match.groups()
    if not first:
        return max(0, size - int(last)), size
    end = min(size, int(last) + 1) if last else size
    start = int(first)
    if last and end <= start:
        return None
    return start, end


@routes.get(DOWNLOAD_PATH)
@public
async def download(request: web.Request) -> web.StreamResponse:
    fd, st, path = await request.app[PLATFORM].vfolders.transfer.open_download(_token(request))
    try:
        last_modified = formatdate(int(st.modified), usegmt=True)
        start, end, status = 0, st.size, 200
        if_range = request.headers.get("If-Range")
        wanted = _byte_range(request.headers.get("Range"), st.size)
        if wanted is not None and (if_range is None or if_range == last_modified):
            start, end = wanted
            if start > st.size:
                refusal = problem_response(
                    416,
                    {
                        "type": "https://api.backend.ai/probs/range-not-satisfiable",
                        "title": "The requested range is past the end of the file.",
                        "msg": f"{path!r} has {st.size} bytes",
                    },
                )
                refusal.headers["Content-Range"] = f"bytes */{st.size}"
                return refusal
            status = 206
        name = quote(os.path.basename(path))
        response = web.StreamResponse(
            status=status,
            headers={
                "Content-Type": "application/octet-stream",
                "Last-Modified": last_modified,
                "Accept-Ranges": "bytes",
                "Cache-Control": "no-store",
                "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            },
        )
        if status == 206:
            response.headers["Content-Range"] = (
                f"bytes {start}-{end - 1}/{st.size}" if end > start else f"bytes */{st.size}"
            )
        response.content_length = end - start
        await response.prepare(request)
        position = start
        while request.method != "HEAD" and position < end:
            chunk = await asyncio.to_thread(os.pread, fd, min(CHUNK, end - position), position)
            if not chunk:
                break
            await response.write(chunk)
            position += len(chunk)
        await response.write_eof()
        return response
    finally:
        os.close(fd)
