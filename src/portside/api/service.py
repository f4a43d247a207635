"""``/services``: model services over REST (wire-protocol.md section 4.3)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from portside.errors import InvalidAPIParameters, NotImplementedAPI
from portside.services.model_services import ServiceRequest

from .auth import require_principal
from .context import PLATFORM
from .params import read_params, validate

routes = web.RouteTableDef()


def _choices(*names: str) -> Any:
    return Field(default=None, validation_alias=AliasChoices(*names))


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    model_definition_path: str | None = None
    model_mount_destination: str | None = None
    environ: dict[str, Any] | None = None
    scaling_group: str | None = _choices("scaling_group", "scalingGroup")
    resources: dict[str, Any] | None = None
    resource_opts: dict[str, Any] | None = None
    extra_mounts: dict[str, Any] | None = None


class NewServiceBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = _choices("name", "clientSessionToken", "service_name")
    replicas: int | None = _choices("replicas", "desired_session_count", "desiredSessionCount")
    image: str | None = _choices("image", "lang")
    runtime_variant: str | None = None
    group: str | None = _choices("group", "groupName", "group_name")
    domain: str | None = _choices("domain", "domainName", "domain_name")
    owner_access_key: str | None = None
    open_to_public: bool | None = _choices("open_to_public", "expose_to_public")
    config: ServiceConfig


@routes.post("/services")
async def create(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(NewServiceBody, await read_params(request))
    if not body.image:
        raise InvalidAPIParameters("image: the image that runs the model server is required")
    if body.config.extra_mounts:
        raise InvalidAPIParameters("extra_mounts are not supported; put files in the model folder")
    if body.runtime_variant not in (None, "custom", "cmd"):
        raise InvalidAPIParameters(
            f"runtime_variant {body.runtime_variant!r} is not available; use 'custom' with a "
            "model-definition.yaml that starts the server"
        )
    req = ServiceRequest(
        name=body.name,
        image=body.image,
        model=body.config.model,
        replicas=body.replicas if body.replicas is not None else 1,
        resources=body.config.resources or {},
        resource_opts=body.config.resource_opts or {},
        environ={str(k): str(v) for k, v in (body.config.environ or {}).items()},
        open_to_public=bool(body.open_to_public),
        model_mount_destination=body.config.model_mount_destination or "/models",
        model_definition_path=body.config.model_definition_path,
        runtime_variant=body.runtime_variant or "custom",
        group=body.group or "default",
        domain=body.domain or "default",
        owner_access_key=body.owner_access_key,
    )
    info = await request.app[PLATFORM].model_services.create(principal, req)
    return web.json_response(info, status=201)


@routes.get("/services")
async def list_services(request: web.Request) -> web.Response:
    principal = require_principal(request)
    params = await read_params(request)
    name = params.get("name")
    result = await request.app[PLATFORM].model_services.list_services(principal, name)
    return web.json_response(result)


@routes.get("/services/_/runtimes")
async def runtimes(request: web.Request) -> web.Response:
    require_principal(request)
    return web.json_response({"runtimes": [{"name": "custom", "human_readable_name": "Custom"}]})


@routes.post("/services/_/try")
async def try_start(request: web.Request) -> web.Response:
    require_principal(request)
    raise NotImplementedAPI("dry runs of model services are not supported; create the service")


@routes.get("/services/{ref}")
async def info(request: web.Request) -> web.Response:
    principal = require_principal(request)
    result = await request.app[PLATFORM].model_services.info(principal, request.match_info["ref"])
    return web.json_response(result)


@routes.delete("/services/{ref}")
async def delete(request: web.Request) -> web.Response:
    principal = require_principal(request)
    await request.app[PLATFORM].model_services.delete(principal, request.match_info["ref"])
    return web.json_response({"success": True})


class ScaleBody(BaseModel):
    to: int = Field(ge=0)


@routes.post("/services/{ref}/scale")
async def scale(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(ScaleBody, await read_params(request))
    result = await request.app[PLATFORM].model_services.scale(
        principal, request.match_info["ref"], body.to
    )
    return web.json_response(result)


@routes.post("/services/{ref}/sync")
async def sync(request: web.Request) -> web.Response:
    principal = require_principal(request)
    await request.app[PLATFORM].model_services.sync(principal, request.match_info["ref"])
    return web.json_response({"success": True})


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    duration: float | str | None = None
    valid_until: float | None = None


@routes.post("/services/{ref}/token")
async def token(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(TokenBody, await read_params(request))
    result = await request.app[PLATFORM].model_services.generate_token(
        principal, request.match_info["ref"], duration=body.duration, valid_until=body.valid_until
    )
    return web.json_response(result)


class TrafficBody(BaseModel):
    traffic_ratio: float = Field(ge=0)


@routes.put("/services/{ref}/routings/{route}")
async def traffic_ratio(request: web.Request) -> web.Response:
    principal = require_principal(request)
    body = validate(TrafficBody, await read_params(request))
    await request.app[PLATFORM].model_services.set_traffic_ratio(
        principal, request.match_info["ref"], request.match_info["route"], body.traffic_ratio
    )
    return web.json_response({"success": True})


@routes.delete("/services/{ref}/routings/{route}")
async def remove_route(request: web.Request) -> web.Response:
    principal = require_principal(request)
    await request.app[PLATFORM].model_services.remove_route(
        principal, request.match_info["ref"], request.match_info["route"]
    )
    return web.json_response({"success": True})
