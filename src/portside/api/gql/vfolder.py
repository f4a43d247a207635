"""GraphQL: ``vfolder_list`` (what ``backend.ai vfolder list`` reads), its variants, ``vfolder``.

Everyone sees the folders they can use: their own and their projects'.  An administrator may
look at another user's with ``access_key`` and at any project's with ``group_id``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import graphene
import sqlalchemy as sa

from portside.db.models import VFolderRow
from portside.db.repositories import identity
from portside.db.repositories import vfolders as repo
from portside.db.repositories.vfolders import FolderRecord
from portside.errors import InsufficientPrivilege, InvalidAPIParameters

from .context import ctx

MIB = 1024 * 1024
ORDERABLE = {
    "host",
    "name",
    "created_at",
    "last_used",
    "creator",
    "ownership_type",
    "status",
    "permission",
    "usage_mode",
}


class VirtualFolder(graphene.ObjectType):
    id = graphene.UUID()
    host = graphene.String()
    quota_scope_id = graphene.String()
    name = graphene.String()
    user = graphene.UUID()
    user_email = graphene.String()
    group = graphene.UUID()
    group_name = graphene.String()
    creator = graphene.String()
    domain_name = graphene.String()
    unmanaged_path = graphene.String()
    usage_mode = graphene.String()
    permission = graphene.String()
    ownership_type = graphene.String()
    max_files = graphene.Int()
    max_size = graphene.BigInt(description="The quota in MiB; 0 means none.")
    quota = graphene.BigInt(description="The quota in bytes; 0 means none.")
    created_at = graphene.DateTime()
    last_used = graphene.DateTime()
    num_files = graphene.Int()
    cur_size = graphene.BigInt()
    cloneable = graphene.Boolean()
    status = graphene.String()

    @staticmethod
    async def resolve_num_files(root: dict[str, Any], info: Any) -> int:
        usage = await asyncio.to_thread(ctx(info).platform.vfolders.volume.usage, root["id"])
        return usage.file_count

    @staticmethod
    async def resolve_cur_size(root: dict[str, Any], info: Any) -> int:
        usage = await asyncio.to_thread(ctx(info).platform.vfolders.volume.usage, root["id"])
        return usage.used_bytes


class VirtualFolderList(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(VirtualFolder), required=True)
    total_count = graphene.Int(required=True)


def _folder(record: FolderRecord) -> dict[str, Any]:
    row = record.row
    return {
        "id": row.id,
        "host": row.host,
        "quota_scope_id": (
            f"user:{row.user_id}" if row.ownership_type == "user" else f"project:{row.group_id}"
        ),
        "name": row.name,
        "user": row.user_id,
        "user_email": record.owner_email,
        "group": row.group_id,
        "group_name": record.group_name,
        "creator": row.creator,
        "domain_name": row.domain_name,
        "unmanaged_path": None,
        "usage_mode": row.usage_mode,
        "permission": row.permission,
        "ownership_type": row.ownership_type,
        "max_files": 0,
        "max_size": row.quota // MIB,
        "quota": row.quota,
        "created_at": row.created_at,
        "last_used": row.last_used,
        "cloneable": row.cloneable,
        "status": row.status,
    }


def _order(order: str | None) -> list[Any]:
    if not order:
        return [VFolderRow.created_at]
    name = order.lstrip("+-")
    if name not in ORDERABLE:
        raise InvalidAPIParameters(
            f"cannot order folders by {name!r}; use one of {', '.join(sorted(ORDERABLE))}"
        )
    column = getattr(VFolderRow, name)
    return [column.desc() if order.startswith("-") else column.asc()]


async def _page(
    info: Any,
    limit: int,
    offset: int,
    conditions: list[sa.ColumnElement[bool]],
    filter: str | None,
    order: str | None,
) -> dict[str, Any]:
    if filter:
        raise InvalidAPIParameters(
            "filter expressions are not supported for folders; use group_id or order"
        )
    if not 0 < limit <= 100:
        raise InvalidAPIParameters("limit must be between 1 and 100")
    async with ctx(info).platform.db() as db:
        total = await repo.count_folders(db, *conditions)
        records = await db.run_sync(
            repo.list_folders, *conditions, order_by=_order(order), limit=limit, offset=offset
        )
    return {"items": [_folder(r) for r in records], "total_count": total}


async def _owner_id(info: Any, access_key: str | None) -> uuid.UUID:
    principal = ctx(info).principal
    if not access_key or access_key == principal.access_key:
        return principal.user_id
    if not principal.is_admin:
        raise InsufficientPrivilege("you can list only your own folders")
    async with ctx(info).platform.db() as db:
        keypair = await identity.get_keypair(db, access_key)
    return keypair.user_id


_LIST_ARGS = {
    "limit": graphene.Int(required=True),
    "offset": graphene.Int(required=True),
    "filter": graphene.String(),
    "order": graphene.String(),
}


class VFolderQueries(graphene.ObjectType):
    vfolder_list = graphene.Field(
        VirtualFolderList,
        domain_name=graphene.String(),
        group_id=graphene.UUID(),
        access_key=graphene.String(),
        **_LIST_ARGS,
    )
    vfolder_own_list = graphene.Field(VirtualFolderList, **_LIST_ARGS)
    vfolder_project_list = graphene.Field(VirtualFolderList, **_LIST_ARGS)
    vfolder_invited_list = graphene.Field(VirtualFolderList, **_LIST_ARGS)
    vfolder = graphene.Field(VirtualFolder, id=graphene.String(required=True))

    @staticmethod
    async def resolve_vfolder_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        domain_name: str | None = None,
        group_id: uuid.UUID | None = None,
        access_key: str | None = None,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        principal = ctx(info).principal
        conditions: list[sa.ColumnElement[bool]] = []
        if group_id is not None:
            conditions.append(VFolderRow.group_id == group_id)
            if not principal.is_admin:
                conditions.append(repo.accessible(principal.user_id))
        else:
            conditions.append(repo.accessible(await _owner_id(info, access_key)))
        if domain_name:
            conditions.append(VFolderRow.domain_name == domain_name)
        return await _page(info, limit, offset, conditions, filter, order)

    @staticmethod
    async def resolve_vfolder_own_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        conditions = [repo.accessible(ctx(info).principal.user_id, [])]
        return await _page(info, limit, offset, conditions, filter, order)

    @staticmethod
    async def resolve_vfolder_project_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        user_id = ctx(info).principal.user_id
        conditions = [VFolderRow.ownership_type == "group", repo.accessible(user_id)]
        return await _page(info, limit, offset, conditions, filter, order)

    @staticmethod
    async def resolve_vfolder_invited_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        # Folders are not shared by invitation here, so nobody has been invited to any.
        return await _page(info, limit, offset, [sa.false()], filter, order)

    @staticmethod
    async def resolve_vfolder(root: Any, info: Any, id: str) -> dict[str, Any] | None:
        c = ctx(info)
        folder_id = repo.parse_folder_id(id)
        if folder_id is None:
            raise InvalidAPIParameters(f"{id!r} is not a folder id")
        conditions = [VFolderRow.id == folder_id]
        if not c.principal.is_admin:
            conditions.append(repo.accessible(c.principal.user_id))
        async with c.platform.db() as db:
            records = await db.run_sync(repo.list_folders, *conditions)
        return _folder(records[0]) if records else None
