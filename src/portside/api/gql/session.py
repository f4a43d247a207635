"""GraphQL: ``compute_session_list`` and ``compute_session`` (wire-protocol.md section 4.2).

JSON-ish fields are ``JSONString`` (JSON-encoded strings), as in Backend.AI's legacy schema;
a user sees only their own sessions, an administrator anyone's.
"""

from __future__ import annotations

import uuid
from typing import Any

import graphene
import sqlalchemy as sa

from portside.db.models import Group, SessionRow, User
from portside.errors import InsufficientPrivilege, InvalidAPIParameters

from .context import ctx

ORDERABLE = {"created_at", "status_changed", "name", "status", "terminated_at", "priority"}


class KernelNode(graphene.ObjectType):
    """A session's kernel, as Backend.AI lists containers."""

    class Meta:
        name = "ComputeContainer"

    id = graphene.UUID()
    cluster_role = graphene.String()
    cluster_idx = graphene.Int()
    cluster_hostname = graphene.String()
    session_id = graphene.UUID()
    image = graphene.String()
    registry = graphene.String()
    status = graphene.String()
    status_info = graphene.String()
    status_data = graphene.JSONString()
    status_changed = graphene.DateTime()
    agent = graphene.String()
    container_id = graphene.String()
    resource_opts = graphene.JSONString()
    occupied_slots = graphene.JSONString()
    preopen_ports = graphene.List(graphene.Int)
    live_stat = graphene.JSONString()
    last_stat = graphene.JSONString()
    isolation = graphene.String()


class SessionDependency(graphene.ObjectType):
    id = graphene.UUID()
    name = graphene.String()


class ComputeSession(graphene.ObjectType):
    id = graphene.UUID()
    session_id = graphene.UUID()
    main_kernel_id = graphene.UUID()
    tag = graphene.String()
    name = graphene.String()
    type = graphene.String()
    priority = graphene.Int()
    image = graphene.String()
    registry = graphene.String()
    architecture = graphene.String()
    cluster_template = graphene.String()
    cluster_mode = graphene.String()
    cluster_size = graphene.Int()
    domain_name = graphene.String()
    group_name = graphene.String()
    group_id = graphene.UUID()
    agent_ids = graphene.List(graphene.String)
    user_email = graphene.String()
    user_id = graphene.UUID()
    access_key = graphene.String()
    created_user_email = graphene.String()
    created_user_id = graphene.UUID()
    status = graphene.String()
    status_info = graphene.String()
    status_data = graphene.JSONString()
    status_history = graphene.JSONString()
    status_changed = graphene.DateTime()
    created_at = graphene.DateTime()
    terminated_at = graphene.DateTime()
    starts_at = graphene.DateTime()
    scheduled_at = graphene.DateTime()
    startup_command = graphene.String()
    result = graphene.String()
    resource_opts = graphene.JSONString()
    scaling_group = graphene.String()
    service_ports = graphene.JSONString()
    mounts = graphene.List(graphene.String)
    vfolder_mounts = graphene.List(graphene.String)
    occupying_slots = graphene.JSONString()
    occupied_slots = graphene.JSONString()
    requested_slots = graphene.JSONString()
    abusing_reports = graphene.List(graphene.JSONString)
    idle_checks = graphene.JSONString()
    num_queries = graphene.Int()
    isolation = graphene.String()
    containers = graphene.List(KernelNode)
    dependencies = graphene.List(SessionDependency)


class ComputeSessionList(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(ComputeSession), required=True)
    total_count = graphene.Int(required=True)


def _session_dict(row: SessionRow, group_name: str, email: str) -> dict[str, Any]:
    isolation = (row.kernel_info or {}).get("isolation")
    kernel = {
        "id": row.kernel_id,
        "cluster_role": "main",
        "cluster_idx": 1,
        "cluster_hostname": "main1",
        "session_id": row.id,
        "image": row.image,
        "registry": "local",
        "status": row.status,
        "status_info": row.status_info,
        "status_data": row.status_data,
        "status_changed": row.status_changed,
        "agent": row.agent_id,
        "container_id": str(row.kernel_id) if row.kernel_id else None,
        "resource_opts": row.resource_opts,
        "occupied_slots": row.occupying_slots,
        "preopen_ports": row.preopen_ports,
        "live_stat": {},
        "last_stat": {},
        "isolation": isolation,
    }
    mount_names = [m["name"] for m in row.mounts]
    return {
        "id": row.id,
        "session_id": row.id,
        "main_kernel_id": row.kernel_id,
        "tag": row.tag,
        "name": row.name,
        "type": row.type.upper(),
        "priority": row.priority,
        "image": row.image,
        "registry": "local",
        "architecture": row.architecture,
        "cluster_template": None,
        "cluster_mode": "SINGLE_NODE",
        "cluster_size": 1,
        "domain_name": row.domain_name,
        "group_name": group_name,
        "group_id": row.group_id,
        "agent_ids": [row.agent_id] if row.agent_id else [],
        "user_email": email,
        "user_id": row.user_id,
        "access_key": row.access_key,
        "created_user_email": email,
        "created_user_id": row.user_id,
        "status": row.status,
        "status_info": row.status_info,
        "status_data": row.status_data,
        "status_history": dict(row.status_history),
        "status_changed": row.status_changed,
        "created_at": row.created_at,
        "terminated_at": row.terminated_at,
        "starts_at": row.starts_at,
        "scheduled_at": row.scheduled_at,
        "startup_command": row.startup_command,
        "result": row.result,
        "resource_opts": row.resource_opts,
        "scaling_group": "default",
        "service_ports": row.service_ports,
        "mounts": mount_names,
        "vfolder_mounts": mount_names,
        "occupying_slots": row.occupying_slots,
        "occupied_slots": row.occupying_slots,
        "requested_slots": row.requested_slots,
        "abusing_reports": [],
        "idle_checks": {},
        "num_queries": row.num_queries,
        "isolation": isolation,
        "containers": [kernel],
        "dependencies": [{"id": d, "name": None} for d in row.dependencies],
    }


def _base_query() -> Any:
    return (
        sa.select(SessionRow, Group.name, User.email)
        .join(Group, Group.id == SessionRow.group_id)
        .join(User, User.uuid == SessionRow.user_id)
    )


def _order(order: str | None) -> list[Any]:
    if not order:
        return [SessionRow.created_at.desc(), SessionRow.id]
    column_name = order.lstrip("+-")
    if column_name not in ORDERABLE:
        raise InvalidAPIParameters(
            f"cannot order sessions by {column_name!r}; use one of {', '.join(sorted(ORDERABLE))}"
        )
    column = getattr(SessionRow, column_name)
    return [column.desc() if order.startswith("-") else column.asc(), SessionRow.id]


class SessionQueries(graphene.ObjectType):
    compute_session_list = graphene.Field(
        ComputeSessionList,
        limit=graphene.Int(required=True),
        offset=graphene.Int(required=True),
        status=graphene.String(),
        access_key=graphene.String(),
        domain_name=graphene.String(),
        group_id=graphene.UUID(),
        filter=graphene.String(),
        order=graphene.String(),
    )
    compute_session = graphene.Field(ComputeSession, id=graphene.UUID(), session_id=graphene.UUID())

    @staticmethod
    async def resolve_compute_session_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        status: str | None = None,
        access_key: str | None = None,
        domain_name: str | None = None,
        group_id: uuid.UUID | None = None,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        c = ctx(info)
        principal = c.principal
        if filter:
            raise InvalidAPIParameters(
                "filter expressions are not supported; use status, access_key or group_id"
            )
        if not 0 < limit <= 100:
            raise InvalidAPIParameters("limit must be between 1 and 100")
        conditions = []
        if principal.is_admin:
            if access_key:
                conditions.append(SessionRow.access_key == access_key)
        else:
            if access_key and access_key != principal.access_key:
                raise InsufficientPrivilege("you can list only your own sessions")
            conditions.append(SessionRow.access_key == principal.access_key)
        if status:
            conditions.append(SessionRow.status.in_([s.strip() for s in status.split(",")]))
        if domain_name:
            conditions.append(SessionRow.domain_name == domain_name)
        if group_id:
            conditions.append(SessionRow.group_id == group_id)
        await c.platform.sessions.flush_activity()
        async with c.platform.db() as db:
            total = (
                await db.execute(
                    sa.select(sa.func.count()).select_from(SessionRow).where(*conditions)
                )
            ).scalar_one()
            rows = (
                await db.execute(
                    _base_query()
                    .where(*conditions)
                    .order_by(*_order(order))
                    .limit(limit)
                    .offset(offset)
                )
            ).tuples()
            items = [_session_dict(row, group, email) for row, group, email in rows]
        return {"items": items, "total_count": total}

    @staticmethod
    async def resolve_compute_session(
        root: Any, info: Any, id: uuid.UUID | None = None, session_id: uuid.UUID | None = None
    ) -> dict[str, Any] | None:
        c = ctx(info)
        wanted = id or session_id
        if wanted is None:
            raise InvalidAPIParameters("give the session's id")
        query = _base_query().where(SessionRow.id == wanted)
        if not c.principal.is_admin:
            query = query.where(SessionRow.access_key == c.principal.access_key)
        await c.platform.sessions.flush_activity()
        async with c.platform.db() as db:
            found = (await db.execute(query)).tuples().first()
        if found is None:
            return None
        row, group, email = found
        return _session_dict(row, group, email)
