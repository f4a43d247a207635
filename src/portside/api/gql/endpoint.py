"""GraphQL: ``endpoint_list`` and ``endpoint``, the model services (wire-protocol.md s.4.3)."""

from __future__ import annotations

import uuid
from typing import Any

import graphene

from portside.errors import InvalidAPIParameters
from portside.services.model_services import EndpointState

from . import filters
from .context import ctx


class ImageObject(graphene.ObjectType):
    name = graphene.String()


class Routing(graphene.ObjectType):
    routing_id = graphene.UUID()
    endpoint = graphene.UUID()
    session = graphene.UUID()
    status = graphene.String()
    traffic_ratio = graphene.Float()


class Endpoint(graphene.ObjectType):
    endpoint_id = graphene.UUID()
    name = graphene.String()
    image = graphene.String()
    image_object = graphene.Field(ImageObject)
    domain = graphene.String()
    project = graphene.UUID()
    resource_group = graphene.String()
    resource_slots = graphene.JSONString()
    resource_opts = graphene.JSONString()
    url = graphene.String()
    model = graphene.UUID()
    model_definition_path = graphene.String()
    model_mount_destination = graphene.String()
    created_user = graphene.UUID()
    session_owner = graphene.UUID()
    tag = graphene.String()
    startup_command = graphene.String()
    bootstrap_script = graphene.String()
    callback_url = graphene.String()
    environ = graphene.JSONString()
    replicas = graphene.Int()
    desired_session_count = graphene.Int()
    cluster_mode = graphene.String()
    cluster_size = graphene.Int()
    open_to_public = graphene.Boolean()
    runtime_variant = graphene.String()
    created_at = graphene.DateTime()
    destroyed_at = graphene.DateTime()
    routings = graphene.List(Routing)
    retries = graphene.Int()
    status = graphene.String()
    lifecycle_stage = graphene.String()


class EndpointList(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(Endpoint), required=True)
    total_count = graphene.Int(required=True)


def _endpoint(state: EndpointState, url: str | None) -> dict[str, Any]:
    row = state.row
    return {
        "endpoint_id": row.id,
        "name": row.name,
        "image": row.image,
        "image_object": {"name": row.image},
        "domain": row.domain_name,
        "project": row.group_id,
        "resource_group": "default",
        "resource_slots": row.resources,
        "resource_opts": row.resource_opts,
        "url": url,
        "model": row.model_id,
        "model_definition_path": row.model_definition_path,
        "model_mount_destination": row.model_mount_destination,
        "created_user": row.user_id,
        "session_owner": row.user_id,
        "tag": None,
        "startup_command": None,
        "bootstrap_script": None,
        "callback_url": None,
        "environ": row.environ,
        "replicas": row.replicas,
        "desired_session_count": row.replicas,
        "cluster_mode": "SINGLE_NODE",
        "cluster_size": 1,
        "open_to_public": row.open_to_public,
        "runtime_variant": row.runtime_variant,
        "created_at": row.created_at,
        "destroyed_at": row.destroyed_at,
        "routings": [
            {
                "routing_id": r.route_id,
                "endpoint": row.id,
                "session": r.session_id,
                "status": r.status,
                "traffic_ratio": r.traffic_ratio,
            }
            for r in state.replicas.values()
        ],
        "retries": 0,
        "status": row.status,
        "lifecycle_stage": "destroying" if row.status == "DESTROYING" else "created",
    }


class EndpointQueries(graphene.ObjectType):
    endpoint_list = graphene.Field(
        EndpointList,
        limit=graphene.Int(required=True),
        offset=graphene.Int(required=True),
        filter=graphene.String(),
        order=graphene.String(),
        project=graphene.UUID(),
    )
    endpoint = graphene.Field(Endpoint, endpoint_id=graphene.UUID(required=True))

    @staticmethod
    def resolve_endpoint_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        filter: str | None = None,
        order: str | None = None,
        project: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        c = ctx(info)
        manager = c.platform.model_services
        items = [_endpoint(s, manager.url(s)) for s in manager.visible(c.principal)]
        keep = filters.parse(filter, {"name", "status", "runtime_variant", "open_to_public"})
        items = [i for i in items if keep(i) and (project is None or i["project"] == project)]
        if order not in (None, "name", "-name", "created_at", "-created_at"):
            raise InvalidAPIParameters("order services by name or created_at (prefix - for desc)")
        key = (order or "created_at").lstrip("-")
        items.sort(key=lambda i: i[key], reverse=(order or "").startswith("-"))
        return {"items": items[offset : offset + limit], "total_count": len(items)}

    @staticmethod
    def resolve_endpoint(root: Any, info: Any, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
        c = ctx(info)
        manager = c.platform.model_services
        for state in manager.visible(c.principal):
            if state.row.id == endpoint_id:
                return _endpoint(state, manager.url(state))
        return None
