"""``/folders``: virtual folders over REST, as the official clients call them.

Client 23.9.10 addresses a folder by name (``/folders/mydata/files``); 26.9.6 first asks
``/folders/_/id`` and then uses the id's hex (``/folders/3f2a.../files``).  Every ``{ref}``
below takes either, and a dashed UUID too.  Parameters come from a JSON body when there is one,
whatever the method, else from the query (``params.read_params``): 23.9.10 sends ``files`` as
a GET with a JSON body, 26.9.6 puts ``path`` in the query.

Uploads and downloads go through ``vfolder_transfer``: ``request-upload`` and
``request-download`` here hand out a token and the URL of this same server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from portside.db.repositories.identity import Principal
from portside.db.repositories.vfolders import FolderRecord, parse_folder_id
from portside.errors import InvalidAPIParameters, NotImplementedAPI
from portside.services.vfolders import HOST, FolderInfo, VFolderService
from portside.storage import DirEntry

from . import vfolder_transfer
from .auth import require_principal
from .context import PLATFORM
from .params import read_params, validate

_rest = web.RouteTableDef()
MIB = 1024 * 1024


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CreateBody(Model):
    name: str
    host: str | None = Field(default=None, validation_alias=AliasChoices("host", "folder_host"))
    unmanaged_path: str | None = None
    group: str | None = Field(default=None, validation_alias=AliasChoices("group", "group_id"))
    usage_mode: str = "general"
    permission: str = "rw"
    quota: str | int | None = None
    cloneable: bool = False


class ListBody(Model):
    all: bool = False
    group_id: str | None = None


class NameBody(Model):
    name: str


class IdBody(Model):
    id: str = Field(validation_alias=AliasChoices("id", "vfolder_id", "name"))


class RenameBody(Model):
    new_name: str


class OptionsBody(Model):
    permission: str | None = None
    cloneable: bool | None = None


class MkdirBody(Model):
    path: str | list[str]
    parents: bool = False
    exist_ok: bool = False


class FilesBody(Model):
    path: str = "."


class DeleteFilesBody(Model):
    files: list[str]
    recursive: bool = False


class RenameFileBody(Model):
    target_path: str
    new_name: str


class MoveFileBody(Model):
    src: str
    dst: str


class UploadBody(Model):
    path: str
    size: int


class DownloadBody(Model):
    path: str


def _service(request: web.Request) -> VFolderService:
    return request.app[PLATFORM].vfolders


def _iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value, UTC)
    return value.isoformat()


def folder_json(record: FolderRecord, principal: Principal) -> dict[str, Any]:
    """A folder as Backend.AI's manager describes one (``max_size`` in MiB, ``quota`` bytes)."""
    row = record.row
    scope = f"user:{row.user_id}" if row.ownership_type == "user" else f"project:{row.group_id}"
    return {
        "id": row.id.hex,
        "name": row.name,
        "quota_scope_id": scope,
        "host": row.host,
        "status": row.status,
        "usage_mode": row.usage_mode,
        "permission": row.permission,
        "max_size": row.quota // MIB,
        "quota": row.quota,
        "max_files": 0,
        "creator": row.creator,
        "ownership_type": row.ownership_type,
        "type": row.ownership_type,
        "user": str(row.user_id) if row.user_id else None,
        "group": str(row.group_id) if row.group_id else None,
        "user_email": record.owner_email,
        "group_name": record.group_name,
        "is_owner": row.user_id == principal.user_id,
        "cloneable": row.cloneable,
        "created_at": _iso(row.created_at),
        "last_used": _iso(row.last_used),
    }


def info_json(info: FolderInfo, principal: Principal) -> dict[str, Any]:
    body = folder_json(info.record, principal)
    body.update(
        numFiles=info.usage.file_count,
        num_files=info.usage.file_count,
        used_bytes=info.usage.used_bytes,
        cur_size=info.usage.used_bytes,
        created=body["created_at"],
    )
    return body


def entry_json(entry: DirEntry) -> dict[str, Any]:
    """Both spellings: 26.9.6 reads name/modified, 23.9.10 filename/mtime (a timestamp)."""
    return {
        "name": entry.name,
        "type": entry.type,
        "size": entry.size,
        "mode": oct(entry.mode)[-3:],
        "created": _iso(entry.created),
        "modified": _iso(entry.modified),
        "filename": entry.name,
        "ctime": entry.created,
        "mtime": entry.modified,
        "atime": entry.accessed,
    }


async def _body(request: web.Request, model: type[Any]) -> Any:
    return validate(model, await read_params(request))


def _base_url(request: web.Request) -> str:
    advertised = request.app[PLATFORM].config.api.advertise_url
    return (advertised or str(request.url.origin())).rstrip("/")


# -- collection-level calls (registered before ``{ref}`` so ``_`` is never taken for a name) --


@_rest.post("/folders")
async def create(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, CreateBody)
    record = await _service(request).create(
        principal,
        name=body.name,
        host=body.host,
        group=body.group,
        usage_mode=body.usage_mode,
        permission=body.permission,
        quota=body.quota,
        cloneable=body.cloneable,
        unmanaged_path=body.unmanaged_path,
    )
    return web.json_response(folder_json(record, principal), status=201)


@_rest.get("/folders")
async def list_folders(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, ListBody)
    group_id = None
    if body.group_id:
        group_id = parse_folder_id(body.group_id)
        if group_id is None:
            raise InvalidAPIParameters(f"group_id {body.group_id!r} is not a project id")
    records = await _service(request).list_folders(
        principal, everything=body.all, group_id=group_id
    )
    return web.json_response([folder_json(r, principal) for r in records])


@_rest.delete("/folders")
async def delete_by_id(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, IdBody)
    await _service(request).delete(principal, body.id)
    return web.Response(status=204)


@_rest.get("/folders/_/id")
async def get_id(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, NameBody)
    record = await _service(request).get(principal, body.name)
    return web.json_response({"id": str(record.row.id)})


@_rest.get("/folders/_/hosts")
@_rest.get("/folders/_/all_hosts")
async def hosts(request: web.Request) -> web.Response:
    require_principal(request)
    return web.json_response(
        {
            "default": HOST,
            "allowed": [HOST],
            "volume_info": {HOST: {"backend": "vfs", "capabilities": ["vfolder"], "usage": {}}},
        }
    )


@_rest.get("/folders/_/allowed_types")
async def allowed_types(request: web.Request) -> web.Response:
    require_principal(request)
    return web.json_response(["user", "group"])


_NOT_HERE = {
    ("POST", "/folders/purge"): "folders are deleted at once; there is no trash bin to purge",
    ("POST", "/folders/restore-from-trash-bin"): "folders are deleted at once; nothing to restore",
    ("POST", "/folders/delete-from-trash-bin"): "folders are deleted at once; there is no trash",
    ("GET", "/folders/invitations/list"): "sharing folders by invitation is not supported",
    ("POST", "/folders/invitations/accept"): "sharing folders by invitation is not supported",
    ("DELETE", "/folders/invitations/delete"): "sharing folders by invitation is not supported",
    ("GET", "/folders/_/shared"): "sharing folders with users is not supported",
    ("POST", "/folders/_/shared"): "sharing folders with users is not supported",
    ("POST", "/folders/_/change-ownership"): "folder ownership cannot change here",
    ("GET", "/folders/_/fstab"): "host mounts are not managed through the API",
    ("GET", "/folders/_/mounts"): "host mounts are not managed through the API",
    ("POST", "/folders/_/mounts"): "host mounts are not managed through the API",
    ("DELETE", "/folders/_/mounts"): "host mounts are not managed through the API",
    ("GET", "/folders/_/perf-metric"): "volume performance metrics are not collected",
    ("POST", "/folders/{ref}/invite"): "sharing folders by invitation is not supported",
    ("POST", "/folders/{ref}/share"): "sharing folders with users is not supported",
    ("DELETE", "/folders/{ref}/unshare"): "sharing folders with users is not supported",
    ("POST", "/folders/{ref}/leave"): "sharing folders with users is not supported",
    ("POST", "/folders/{ref}/clone"): "cloning folders is not supported; download and upload",
}


def _not_here(reason: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        require_principal(request)
        raise NotImplementedAPI(f"{request.method} {request.path}: {reason}")

    return handler


for (_method, _path), _reason in _NOT_HERE.items():
    if not _path.startswith("/folders/{ref}"):
        _rest.route(_method, _path)(_not_here(_reason))


# -- one folder ------------------------------------------------------------------------------


@_rest.get("/folders/{ref}")
async def info(request: web.Request) -> web.Response:
    principal = require_principal(request)
    found = await _service(request).info(principal, request.match_info["ref"])
    return web.json_response(info_json(found, principal))


@_rest.delete("/folders/{ref}")
@_rest.delete("/folders/{ref}/force")
async def delete(request: web.Request) -> web.Response:
    principal = require_principal(request)
    await _service(request).delete(principal, request.match_info["ref"])
    return web.Response(status=204)


@_rest.post("/folders/{ref}/rename")
async def rename(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, RenameBody)
    await _service(request).rename(principal, request.match_info["ref"], body.new_name)
    return web.Response(status=201)


@_rest.post("/folders/{ref}/update-options")
async def update_options(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, OptionsBody)
    await _service(request).update_options(
        principal, request.match_info["ref"], body.permission, body.cloneable
    )
    return web.Response(status=201)


@_rest.get("/folders/{ref}/files")
async def list_files(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, FilesBody)
    entries = await _service(request).list_files(principal, request.match_info["ref"], body.path)
    items = [entry_json(e) for e in entries]
    return web.json_response({"items": items, "files": json.dumps(items)})


@_rest.post("/folders/{ref}/mkdir")
async def mkdir(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, MkdirBody)
    paths = [body.path] if isinstance(body.path, str) else body.path
    if not paths:
        raise InvalidAPIParameters("path: give the directory (or directories) to create")
    results = await _service(request).mkdir(
        principal, request.match_info["ref"], paths, parents=body.parents, exist_ok=body.exist_ok
    )
    status = 207 if results["failed"] else 201
    return web.json_response({"results": results}, status=status)


@_rest.delete("/folders/{ref}/delete-files")
@_rest.post("/folders/{ref}/delete-files")
async def delete_files(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, DeleteFilesBody)
    await _service(request).delete_files(
        principal, request.match_info["ref"], body.files, recursive=body.recursive
    )
    return web.json_response({})


@_rest.post("/folders/{ref}/rename-file")
async def rename_file(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, RenameFileBody)
    await _service(request).rename_file(
        principal, request.match_info["ref"], body.target_path, body.new_name
    )
    return web.json_response({})


@_rest.post("/folders/{ref}/move-file")
async def move_file(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, MoveFileBody)
    await _service(request).move_file(principal, request.match_info["ref"], body.src, body.dst)
    return web.json_response({})


@_rest.post("/folders/{ref}/request-upload")
async def request_upload(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, UploadBody)
    token = await _service(request).transfer.request_upload(
        principal, request.match_info["ref"], body.path, body.size
    )
    return web.json_response(
        {"token": token, "url": _base_url(request) + vfolder_transfer.UPLOAD_PATH}
    )


@_rest.post("/folders/{ref}/request-download")
async def request_download(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = await _body(request, DownloadBody)
    token = await _service(request).transfer.request_download(
        principal, request.match_info["ref"], body.path
    )
    return web.json_response(
        {"token": token, "url": _base_url(request) + vfolder_transfer.DOWNLOAD_PATH}
    )


for (_method, _path), _reason in _NOT_HERE.items():
    if _path.startswith("/folders/{ref}"):
        _rest.route(_method, _path)(_not_here(_reason))

#: Everything under ``/folders``, the transfer endpoints included, for ``app.add_routes``.
routes: list[web.AbstractRouteDef] = [*vfolder_transfer.routes, *_rest]
