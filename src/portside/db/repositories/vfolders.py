"""Queries on virtual folders: who may see which, and finding one by id or name."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from portside.db.models import Group, GroupMember, User, VFolderRow
from portside.errors import Conflict, ObjectNotFound


@dataclass(frozen=True, slots=True)
class FolderRecord:
    """A folder with the names the API shows beside its ids."""

    row: VFolderRow
    owner_email: str | None
    group_name: str | None


def parse_folder_id(ref: str) -> uuid.UUID | None:
    """A folder id in any spelling clients use (hex or dashed), or None for a name."""
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def folder_not_found(ref: str) -> ObjectNotFound:
    return ObjectNotFound(
        f"there is no virtual folder {ref!r} that you can access", object_name="virtual folder"
    )


#: A user id, or a bound parameter standing for one in a statement built once (see
#: ``services.mounts``).
UserId = uuid.UUID | sa.BindParameter[Any]


def member_groups(user_id: UserId) -> sa.Select[Any]:
    return sa.select(GroupMember.group_id).where(GroupMember.user_id == user_id)


def accessible(
    user_id: UserId, groups: sa.Select[Any] | Sequence[uuid.UUID] | None = None
) -> sa.ColumnElement[bool]:
    """The user's own folders, plus those of ``groups`` (default: every project they are in)."""
    group_ids = member_groups(user_id) if groups is None else groups
    return sa.or_(
        sa.and_(VFolderRow.ownership_type == "user", VFolderRow.user_id == user_id),
        sa.and_(VFolderRow.ownership_type == "group", VFolderRow.group_id.in_(group_ids)),
    )


def matches(ref: str) -> sa.ColumnElement[bool]:
    folder_id = parse_folder_id(ref)
    if folder_id is None:
        return VFolderRow.name == ref
    return sa.or_(VFolderRow.id == folder_id, VFolderRow.name == ref)


def _base() -> Any:
    return (
        sa.select(VFolderRow, User.email, Group.name)
        .outerjoin(User, User.uuid == VFolderRow.user_id)
        .outerjoin(Group, Group.id == VFolderRow.group_id)
    )


#: Own folders before project folders, so a name both use means the user's own.
_PREFERENCE = (sa.case((VFolderRow.ownership_type == "user", 0), else_=1), VFolderRow.name)


def folders_query(
    *conditions: sa.ColumnElement[bool], order_by: Sequence[Any] = _PREFERENCE
) -> Any:
    """The folders matching ``conditions``, with their owners' names, in ``order_by``."""
    return _base().where(*conditions).order_by(*order_by, VFolderRow.id)


def fetch_folders(
    db: Session, query: Any, params: dict[str, Any] | None = None
) -> list[FolderRecord]:
    rows = db.execute(query, params).tuples()
    return [FolderRecord(row, email, group) for row, email, group in rows]


def list_folders(
    db: Session,
    *conditions: sa.ColumnElement[bool],
    order_by: Sequence[Any] = _PREFERENCE,
    limit: int | None = None,
    offset: int = 0,
) -> list[FolderRecord]:
    """Synchronous, for the unit of work a session start runs (``Database.run``); async code
    calls it through ``AsyncSession.run_sync``."""
    query = folders_query(*conditions, order_by=order_by).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return fetch_folders(db, query)


async def count_folders(db: AsyncSession, *conditions: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(VFolderRow).where(*conditions)
    return int((await db.execute(query)).scalar_one())


def get_folder(db: Session, folder_id: uuid.UUID) -> FolderRecord | None:
    found = list_folders(db, VFolderRow.id == folder_id)
    return found[0] if found else None


async def add_folder(db: AsyncSession, row: VFolderRow) -> VFolderRow:
    db.add(row)
    try:
        await db.flush()
    except IntegrityError as e:
        raise Conflict(
            f"a virtual folder named {row.name!r} already exists for this owner; "
            "choose another name"
        ) from e
    return row


async def rename_folder(db: AsyncSession, row: VFolderRow, new_name: str) -> None:
    row.name = new_name
    try:
        await db.flush()
    except IntegrityError as e:
        raise Conflict(
            f"a virtual folder named {new_name!r} already exists for this owner; "
            "choose another name"
        ) from e


async def delete_folder(db: AsyncSession, folder_id: uuid.UUID) -> None:
    await db.execute(sa.delete(VFolderRow).where(VFolderRow.id == folder_id))
