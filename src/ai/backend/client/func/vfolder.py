"""Virtual folders (wire-protocol.md section 7, ``vfolder``).

A ``VFolder`` is a handle on one folder by name (or id).  Calls address it by the id's hex once
the id is known, else by name, which this server accepts everywhere a folder is named; so there
is no extra ``/folders/_/id`` round trip before each call as in the official 26.x client.
Uploads and downloads use the token flow the official client uses, over plain aiohttp
(``vfolder_transfer``), without ``aiotusclient``.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import DEFAULT_CHUNK_SIZE
from ..exceptions import BackendClientError
from ..pagination import PaginatedResult, fetch_paginated_result
from .base import BaseFunction, api_function
from .vfolder_transfer import ranged_download, tus_upload

__all__ = ("DEFAULT_LIST_FIELDS", "VFolder")

#: What ``backend.ai vfolder list`` shows, in its order.
DEFAULT_LIST_FIELDS = (
    "host",
    "name",
    "status",
    "created_at",
    "creator",
    "group",
    "permission",
    "ownership_type",
)


class VFolder(BaseFunction):
    name: str
    id: uuid.UUID | None

    def __init__(self, name: str, id: uuid.UUID | None = None) -> None:
        self.name = name
        self.id = id

    def __repr__(self) -> str:
        return f"<VFolder name={self.name!r} id={self.id}>"

    @property
    def request_key(self) -> str:
        return self.id.hex if self.id is not None else self.name

    async def _call(self, method: str, suffix: str = "", body: Any = None, **params: Any) -> Any:
        rqst = self._request(method, f"/folders/{self.request_key}{suffix}", params=params)
        if body is not None:
            rqst.set_json(body)
        async with rqst.fetch() as resp:
            if resp.status == 204:
                return None
            text = await resp.text()
            if not text:
                return None
            return await resp.json()

    # -- the collection ----------------------------------------------------------------------

    @classmethod
    @api_function
    async def create(
        cls,
        name: str,
        host: str | None = None,
        unmanaged_path: str | None = None,
        group: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
        cloneable: bool = False,
        quota: str | int | None = None,
    ) -> dict[str, Any]:
        """Creates a folder (a project's with ``group``); ``quota`` like ``"10m"`` limits it."""
        body: dict[str, Any] = {
            "name": name,
            "host": host,
            "unmanaged_path": unmanaged_path,
            "group": group,
            "usage_mode": usage_mode,
            "permission": permission,
            "cloneable": cloneable,
        }
        if quota is not None:
            body["quota"] = quota
        rqst = cls._request("POST", "/folders")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @classmethod
    @api_function
    async def list(cls, list_all: bool = False) -> builtins.list[dict[str, Any]]:
        rqst = cls._request("GET", "/folders")
        rqst.set_json({"all": list_all})
        async with rqst.fetch() as resp:
            result: builtins.list[dict[str, Any]] = await resp.json()
            return result

    @classmethod
    @api_function
    async def paginated_list(
        cls,
        group: str | uuid.UUID | None = None,
        *,
        fields: str | Sequence[str] = DEFAULT_LIST_FIELDS,
        page_offset: int = 0,
        page_size: int = 20,
        filter: str | None = None,
        order: str | None = None,
    ) -> PaginatedResult[dict[str, Any]]:
        """One page of the folders you can use (``group``: only that project's)."""
        return await fetch_paginated_result(
            cls._current_session(),
            "vfolder_list",
            {
                "group_id": (str(group) if group is not None else None, "UUID"),
                "filter": (filter, "String"),
                "order": (order, "String"),
            },
            fields,
            page_offset=page_offset,
            page_size=page_size,
        )

    @classmethod
    @api_function
    async def delete_by_id(cls, oid: str | uuid.UUID) -> None:
        rqst = cls._request("DELETE", "/folders")
        rqst.set_json({"id": oid.hex if isinstance(oid, uuid.UUID) else oid})
        async with rqst.fetch():
            return None

    @classmethod
    @api_function
    async def list_hosts(cls) -> dict[str, Any]:
        async with cls._request("GET", "/folders/_/hosts").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @classmethod
    @api_function
    async def list_allowed_types(cls) -> builtins.list[str]:
        async with cls._request("GET", "/folders/_/allowed_types").fetch() as resp:
            result: builtins.list[str] = await resp.json()
            return result

    # -- one folder --------------------------------------------------------------------------

    @api_function
    async def get_id(self) -> uuid.UUID:
        rqst = self._request("GET", "/folders/_/id")
        rqst.set_json({"name": self.name})
        async with rqst.fetch() as resp:
            self.id = uuid.UUID((await resp.json())["id"])
            return self.id

    @api_function
    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET")
        return result

    @api_function
    async def delete(self) -> None:
        await self._call("DELETE")

    @api_function
    async def rename(self, new_name: str) -> None:
        await self._call("POST", "/rename", {"new_name": new_name})
        self.name = new_name

    @api_function
    async def update_options(
        self, permission: str | None = None, cloneable: bool | None = None
    ) -> None:
        await self._call(
            "POST", "/update-options", {"permission": permission, "cloneable": cloneable}
        )

    @api_function
    async def list_files(self, path: str | Path = ".") -> dict[str, Any]:
        """``{"items": [{"name", "type", "size", "mode", "modified", ...}], ...}``."""
        result: dict[str, Any] = await self._call("GET", "/files", path=str(path))
        return result

    @api_function
    async def mkdir(
        self,
        path: str | Path | Sequence[str | Path],
        parents: bool = False,
        exist_ok: bool = False,
    ) -> dict[str, Any]:
        """``{"success": [...], "failed": [...]}``, one entry per directory."""
        paths: Any = str(path) if isinstance(path, (str, Path)) else [str(p) for p in path]
        reply = await self._call(
            "POST", "/mkdir", {"path": paths, "parents": parents, "exist_ok": exist_ok}
        )
        result: dict[str, Any] = reply["results"]
        return result

    @api_function
    async def delete_files(self, files: Sequence[str | Path], recursive: bool = False) -> None:
        await self._call(
            "DELETE", "/delete-files", {"files": [str(f) for f in files], "recursive": recursive}
        )

    @api_function
    async def rename_file(self, target_path: str, new_name: str) -> None:
        await self._call("POST", "/rename-file", {"target_path": target_path, "new_name": new_name})

    @api_function
    async def move_file(self, src_path: str, dst_path: str) -> None:
        await self._call("POST", "/move-file", {"src": src_path, "dst": dst_path})

    # -- transfers ---------------------------------------------------------------------------

    @api_function
    async def upload(
        self,
        sources: Sequence[str | Path],
        *,
        basedir: str | Path | None = None,
        recursive: bool = False,
        dst_dir: str | Path | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        show_progress: bool = False,
    ) -> None:
        """Uploads files (directories with ``recursive``) to their paths relative to
        ``basedir`` (default: the current directory), under ``dst_dir`` when given."""
        base = Path(basedir).resolve() if basedir is not None else Path.cwd()
        http = self._current_session().aiohttp_session
        pending = [
            (base / s).resolve() if basedir is not None else Path(s).resolve() for s in sources
        ]
        while pending:
            local = pending.pop(0)
            try:
                relative = local.relative_to(base)
            except ValueError:
                raise BackendClientError(
                    f"{local} is not inside the base directory {base}"
                ) from None
            remote = str(Path(dst_dir) / relative) if dst_dir is not None else str(relative)
            if local.is_dir():
                if not recursive:
                    raise BackendClientError(
                        f"{local} is a directory; upload it with recursive=True"
                    )
                await self._call(
                    "POST", "/mkdir", {"path": remote, "parents": True, "exist_ok": True}
                )
                pending.extend(sorted(local.iterdir()))
                continue
            reply = await self._call(
                "POST", "/request-upload", {"path": remote, "size": local.stat().st_size}
            )
            if show_progress:
                print(f"Uploading {local} ...")
            await tus_upload(http, reply["url"], reply["token"], local, chunk_size=chunk_size)

    @api_function
    async def download(
        self,
        relative_paths: Sequence[str | Path],
        *,
        basedir: str | Path | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        show_progress: bool = False,
        max_retries: int = 20,
    ) -> None:
        """Downloads files to the same relative paths under ``basedir`` (default: the
        current directory); an existing local file is not overwritten."""
        base = Path(basedir).resolve() if basedir is not None else Path.cwd()
        http = self._current_session().aiohttp_session
        for relpath in relative_paths:
            destination = base / relpath
            if destination.exists():
                raise BackendClientError(f"{destination} exists already; move it away first")
            reply = await self._call("POST", "/request-download", {"path": str(relpath)})
            destination.parent.mkdir(parents=True, exist_ok=True)
            if show_progress:
                print(f"Downloading to {destination} ...")
            await ranged_download(
                http,
                reply["url"],
                reply["token"],
                destination,
                chunk_size=chunk_size,
                max_retries=max_retries,
            )
