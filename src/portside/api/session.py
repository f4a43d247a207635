"""``/session``: compute sessions over REST (wire-protocol.md section 4.2).

Each path is served under ``/session`` and, for API v4 clients, ``/kernel``.  Bodies follow
Backend.AI's names, with the aliases its DTOs accept (``clientSessionToken`` for ``name``,
``lang`` for ``image``, snake_case spellings).
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from aiohttp import BodyPartReader, MultipartWriter, web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from portside import durations
from portside.errors import InvalidAPIParameters, NotImplementedAPI, RequestTooLarge
from portside.services.execution import RunElsewhere, Target
from portside.services.sessions import SessionRequest

from .auth import require_principal
from .context import PLATFORM
from .forward import forward
from .params import read_params, validate

routes = web.RouteTableDef()
PREFIXES = ("/session", "/kernel")


Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])


def _route(method: str, suffix: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for prefix in PREFIXES:
            routes.route(method, prefix + suffix)(handler)
        return handler

    return register


def _choices(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class CreationConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    mounts: list[str] | None = None
    mount_map: dict[str, str] | None = None
    mount_ids: list[str] | None = None
    mount_id_map: dict[str, str] | None = None
    mount_options: dict[str, dict[str, Any]] | None = None
    environ: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    resource_opts: dict[str, Any] | None = None
    scaling_group: str | None = _choices("scalingGroup", "scaling_group")
    preopen_ports: list[int] | None = None


class CreateSessionBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = _choices("name", "clientSessionToken", "session_name")
    image: str | None = _choices("image", "lang")
    architecture: str | None = _choices("architecture", "arch")
    type: str | None = _choices("type", "sessionType", "session_type")
    group: str | None = _choices("group", "groupName", "group_name")
    domain: str | None = _choices("domain", "domainName", "domain_name")
    cluster_size: int | None = _choices("clusterSize", "cluster_size")
    config: CreationConfig | None = None
    tag: str | None = None
    enqueue_only: bool | None = _choices("enqueueOnly", "enqueue_only")
    max_wait: float | None = _choices("maxWaitSeconds", "max_wait_seconds")
    starts_at: str | None = _choices("starts_at", "startsAt")
    batch_timeout: float | str | None = _choices("batch_timeout", "batchTimeout")
    reuse: bool | None = _choices("reuseIfExists", "reuse")
    startup_command: str | None = _choices("startupCommand", "startup_command")
    bootstrap_script: str | None = _choices("bootstrap_script", "bootstrapScript")
    dependencies: list[str] | None = None
    callback_url: str | None = _choices("callback_url", "callbackUrl", "callbackURL")
    owner_access_key: str | None = None
    priority: int | None = None

    @field_validator("cluster_size")
    @classmethod
    def _single_node(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("Portside sessions have one kernel; clusterSize must be 1")
        return value


def _parse_starts_at(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(InvalidAPIParameters):
        return durations.after(datetime.now(UTC), value)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidAPIParameters(
            f"starts_at {value!r} is neither ISO-8601 nor a duration"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@routes.post("/session")
@routes.post("/kernel")
async def create(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(CreateSessionBody, await read_params(request))
    if not body.image:
        raise InvalidAPIParameters("image: the image to run is required")
    config = body.config or CreationConfig()
    platform = request.app[PLATFORM]
    mounts = await platform.mounts.resolve(
        principal,
        group=body.group or "default",
        domain=body.domain or "default",
        names=[*(config.mounts or []), *(config.mount_ids or [])],
        mount_map={**(config.mount_map or {}), **(config.mount_id_map or {})},
        mount_options=config.mount_options or {},
        owner_access_key=body.owner_access_key,
    )
    req = SessionRequest(
        image=body.image,
        name=body.name,
        type=body.type or "interactive",
        group=body.group or "default",
        domain=body.domain or "default",
        resources=config.resources or {},
        resource_opts=config.resource_opts or {},
        environ={str(k): str(v) for k, v in (config.environ or {}).items()},
        mounts=mounts,
        preopen_ports=config.preopen_ports or [],
        startup_command=body.startup_command,
        bootstrap_script=body.bootstrap_script,
        tag=body.tag,
        priority=body.priority if body.priority is not None else 10,
        enqueue_only=bool(body.enqueue_only),
        max_wait=body.max_wait or 0,
        reuse=body.reuse if body.reuse is not None else True,
        architecture=body.architecture,
        batch_timeout=(
            durations.seconds(body.batch_timeout) if body.batch_timeout is not None else None
        ),
        starts_at=_parse_starts_at(body.starts_at),
        callback_url=body.callback_url,
        dependencies=body.dependencies or [],
        owner_access_key=body.owner_access_key,
    )
    reply = await platform.sessions.create(principal, req)
    return web.json_response(reply, status=201)


async def _target(request: web.Request) -> Target:
    principal = require_principal(request)
    return await request.app[PLATFORM].execution.target(
        principal, request.match_info["ref"], request.query.get("owner_access_key")
    )


@_route("GET", "/{ref}")
async def get_info(request: web.Request) -> web.Response:
    principal = require_principal(request)
    platform = request.app[PLATFORM]
    await platform.sessions.flush_activity()
    async with platform.db() as db:
        row = await platform.sessions.resolve(
            db, principal, request.match_info["ref"], request.query.get("owner_access_key")
        )
    platform.sessions.touch(row.id, query=True)
    now = datetime.now(UTC)
    image = platform.images.resolve(row.image)
    info = {
        "sessionId": str(row.id),
        "sessionName": row.name,
        "age": int((now - row.created_at).total_seconds() * 1000),
        "domainName": row.domain_name,
        "groupId": str(row.group_id),
        "userId": str(row.user_id),
        "lang": row.image,
        "image": row.image,
        "architecture": row.architecture,
        "registry": image.registry,
        "tag": row.tag,
        "containerId": str(row.kernel_id) if row.kernel_id else None,
        "occupiedSlots": json.dumps(row.occupying_slots),
        "occupyingSlots": json.dumps(row.occupying_slots),
        "requestedSlots": json.dumps(row.requested_slots),
        "occupiedShares": json.dumps({}),
        "environ": json.dumps(row.environ),
        "resourceOpts": json.dumps(row.resource_opts),
        "status": row.status,
        "statusInfo": row.status_info,
        "statusData": json.dumps(row.status_data),
        "creationTime": row.created_at.isoformat(),
        "terminationTime": row.terminated_at.isoformat() if row.terminated_at else None,
        "numQueriesExecuted": row.num_queries + 1,
        "lastStat": json.dumps({}),
        "idleChecks": json.dumps({}),
        "isolation": (row.kernel_info or {}).get("isolation"),
        "mounts": [m["name"] for m in row.mounts],
    }
    return web.json_response(info)


@_route("DELETE", "/{ref}")
async def destroy(request: web.Request) -> web.Response:
    principal = require_principal(request)
    query = request.query
    result = await request.app[PLATFORM].sessions.destroy(
        principal,
        request.match_info["ref"],
        forced=query.get("forced", "false").lower() in ("true", "1", "yes"),
        recursive=query.get("recursive", "false").lower() in ("true", "1", "yes"),
        owner_access_key=query.get("owner_access_key"),
    )
    return web.json_response(result)


@_route("PATCH", "/{ref}")
async def restart(request: web.Request) -> web.Response:
    principal = require_principal(request)
    await request.app[PLATFORM].sessions.restart(
        principal, request.match_info["ref"], request.query.get("owner_access_key")
    )
    return web.Response(status=204)


@_route("POST", "/{ref}/rename")
async def rename(request: web.Request) -> web.Response:
    principal = require_principal(request)
    params = await read_params(request)
    new_name = params.get("name") or request.query.get("name") or params.get("session_name")
    if not new_name:
        raise InvalidAPIParameters("name: the new session name is required")
    await request.app[PLATFORM].sessions.rename(
        principal, request.match_info["ref"], str(new_name), request.query.get("owner_access_key")
    )
    return web.Response(status=204)


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    mode: str | None = None
    run_id: str | None = Field(default=None, validation_alias=AliasChoices("runId", "run_id"))
    code: str | None = None
    options: dict[str, Any] | None = None


@_route("POST", "/{ref}")
async def execute(request: web.Request) -> web.Response:
    target = await _target(request)
    body = validate(ExecuteBody, await read_params(request))
    execution = request.app[PLATFORM].execution
    if body.mode is None or body.mode == "complete":
        # The official client's execute(mode="complete") posts no mode (section 4.2).
        result = await execution.complete(target, body.code or "", body.options or {})
        return web.json_response({"result": {"result": result}})
    try:
        outcome = await execution.execute(
            target,
            run_id=body.run_id,
            mode=body.mode,
            code=body.code or "",
            opts=body.options or {},
        )
    except RunElsewhere as e:
        return await forward(request, e.server_url, f"run {e.run_id}")
    return web.json_response({"result": outcome.to_api()})


@_route("POST", "/{ref}/complete")
async def complete(request: web.Request) -> web.Response:
    target = await _target(request)
    body = validate(ExecuteBody, await read_params(request))
    result = await request.app[PLATFORM].execution.complete(
        target, body.code or "", body.options or {}
    )
    return web.json_response({"result": result})


@_route("POST", "/{ref}/interrupt")
async def interrupt(request: web.Request) -> web.Response:
    target = await _target(request)
    await request.app[PLATFORM].execution.interrupt(target)
    return web.Response(status=204)


@_route("GET", "/{ref}/logs")
async def logs(request: web.Request) -> web.Response:
    target = await _target(request)
    text = await request.app[PLATFORM].execution.logs(target)
    return web.json_response({"result": {"logs": text}})


@_route("GET", "/{ref}/status-history")
async def status_history(request: web.Request) -> web.Response:
    principal = require_principal(request)
    platform = request.app[PLATFORM]
    async with platform.db() as db:
        row = await platform.sessions.resolve(
            db, principal, request.match_info["ref"], request.query.get("owner_access_key")
        )
    history = {status: at for status, at in row.status_history}
    return web.json_response({"result": history, "history": row.status_history})


@_route("GET", "/{ref}/dependency-graph")
async def dependency_graph(request: web.Request) -> web.Response:
    principal = require_principal(request)
    platform = request.app[PLATFORM]
    async with platform.db() as db:
        row = await platform.sessions.resolve(db, principal, request.match_info["ref"])
    return web.json_response(
        {"session_id": str(row.id), "session_name": row.name, "depends_on": row.dependencies}
    )


@_route("GET", "/{ref}/abusing-report")
async def abusing_report(request: web.Request) -> web.Response:
    await _target(request)
    return web.json_response({})


@_route("POST", "/{ref}/commit")
@_route("POST", "/{ref}/imagify")
async def commit(request: web.Request) -> web.Response:
    require_principal(request)
    raise NotImplementedAPI(
        "Portside sessions run on local runtimes, not container images; they cannot be "
        "committed to an image"
    )


@_route("POST", "/{ref}/upload")
async def upload(request: web.Request) -> web.Response:
    target = await _target(request)
    platform = request.app[PLATFORM]
    if not request.content_type.startswith("multipart/"):
        raise InvalidAPIParameters("upload files as multipart/form-data, one 'src' part each")
    try:
        reader = await request.multipart()
    except ValueError as e:
        raise InvalidAPIParameters(f"the multipart body cannot be read: {e}") from e
    files: list[tuple[str, bytes]] = []
    limit = platform.config.max_upload_file_size
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or not part.filename:
            raise InvalidAPIParameters("each uploaded part needs a file name")
        # aiohttp's client percent-quotes file names ("sub%2Fa.txt"); undo it (section 4.2).
        name = unquote(part.filename)
        data = bytearray()
        while chunk := await part.read_chunk():
            data += chunk
            if len(data) > limit:
                raise RequestTooLarge(f"{name!r} is larger than the {limit}-byte file limit")
        files.append((name, bytes(data)))
    if not files:
        raise InvalidAPIParameters("the upload carried no files")
    await platform.execution.upload(target, files)
    return web.Response(status=204)


@_route("POST", "/{ref}/download")
@_route("GET", "/{ref}/download")
async def download(request: web.Request) -> web.Response:
    target = await _target(request)
    params = await read_params(request) if request.can_read_body else {}
    paths = request.query.getall("files", []) or params.get("files", [])
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise InvalidAPIParameters("files: name at least one file to download")
    archives = await request.app[PLATFORM].execution.download(target, list(paths))
    with MultipartWriter("mixed") as writer:
        for path, data in archives:
            part = writer.append(data, {"Content-Type": "application/x-tar"})
            part.set_content_disposition("attachment", filename=path.rsplit("/", 1)[-1] + ".tar")
            part.headers["Content-Encoding"] = "identity"
    return web.Response(body=writer)


@_route("POST", "/{ref}/download_single")
async def download_single(request: web.Request) -> web.Response:
    target = await _target(request)
    params = await read_params(request)
    path = params.get("file") or request.query.get("file")
    if not path:
        raise InvalidAPIParameters("file: name the file to download")
    [(_, archive)] = await request.app[PLATFORM].execution.download(target, [str(path)])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.next()
        extracted = tar.extractfile(member) if member is not None else None
        if extracted is None:
            raise InvalidAPIParameters(f"{path!r} is not a regular file")
        return web.Response(body=extracted.read(), content_type="application/octet-stream")


@_route("GET", "/{ref}/files")
async def list_files(request: web.Request) -> web.Response:
    target = await _target(request)
    params = await read_params(request)
    path = str(params.get("path", "."))
    listing = await request.app[PLATFORM].execution.list_files(target, path)
    # The official CLI json-decodes "files", so it travels as a string (section 4.2).
    return web.json_response(
        {"files": json.dumps(listing["files"]), "errors": "", "abspath": listing["abspath"]}
    )
