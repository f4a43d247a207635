"""Virtual folders: who may do what with which folder, quotas, transfers and session mounts.

Access.  A user sees and uses their own folders and the folders of the projects they belong to.
Administrators see the same by default and reach anyone's folder when they name it by id or
ask for everything (``GET /folders`` with ``all``).  A project folder is created by an
administrator; its members may change its files through the API unless its permission is
``ro``.  A session mounts a folder read-only when the request or the folder's permission says so.

Quotas.  A folder's ``quota`` (bytes, 0 for none; the default comes from the service) limits
what uploads may put in it: a request that would not fit is refused when it is made, before
any byte moves, and again when the last byte arrives.  Writes from inside sessions are not
counted as they happen; they show in the usage the next upload is measured against.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from portside.agent.base import MountSpec
from portside.db.engine import Database
from portside.db.models import TERMINAL_STATUSES, SessionRow, VFolderRow, utcnow
from portside.db.repositories import identity
from portside.db.repositories import vfolders as repo
from portside.db.repositories.identity import Principal
from portside.db.repositories.vfolders import FolderRecord
from portside.errors import (
    Conflict,
    InsufficientPrivilege,
    InvalidAPIParameters,
    NotImplementedAPI,
    ObjectNotFound,
)
from portside.resources import parse_binary_size
from portside.storage import DirEntry, LocalVolume, Usage
from portside.storage.transfers import TransferTokens

from . import mounts as rules
from .mounts import is_reserved_name, normalize_permission
from .vfolder_transfers import TransferService

HOST = "local"
USAGE_MODES = ("general", "data", "model")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def check_folder_name(name: str) -> None:
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise InvalidAPIParameters(
            f"{name!r} is not a valid folder name: use 1 to 64 letters, digits, '.', '-' or '_'"
        )
    if is_reserved_name(name):
        raise InvalidAPIParameters(f"the folder name {name!r} is reserved for internal use")


@dataclass(frozen=True, slots=True)
class FolderInfo:
    record: FolderRecord
    usage: Usage


class VFolderService:
    """The use cases behind ``/folders`` and the mount resolution of session creation."""

    def __init__(
        self,
        volume: LocalVolume,
        db: Database,
        *,
        default_quota: int = 0,
        secret: Callable[[], str] = lambda: "",
        transfers: TransferTokens | None = None,
    ) -> None:
        self.volume = volume
        self.db = db
        self.default_quota = default_quota
        self.transfer = TransferService(self, transfers or TransferTokens(secret))

    # -- finding folders ---------------------------------------------------------------------

    async def _find(self, db: AsyncSession, principal: Principal, ref: str) -> FolderRecord:
        found = await db.run_sync(
            repo.list_folders, repo.accessible(principal.user_id), repo.matches(ref)
        )
        folder_id = repo.parse_folder_id(ref)
        if not found and principal.is_admin and folder_id is not None:
            record = await db.run_sync(repo.get_folder, folder_id)
            found = [record] if record else []
        if not found:
            raise repo.folder_not_found(ref)
        by_id = [r for r in found if r.row.id == folder_id]
        return by_id[0] if by_id else found[0]

    async def get(self, principal: Principal, ref: str) -> FolderRecord:
        async with self.db() as db:
            return await self._find(db, principal, ref)

    async def list_folders(
        self, principal: Principal, *, everything: bool = False, group_id: uuid.UUID | None = None
    ) -> list[FolderRecord]:
        conditions = []
        if not (everything and principal.is_admin):
            conditions.append(repo.accessible(principal.user_id))
        if group_id is not None:
            conditions.append(VFolderRow.group_id == group_id)
        async with self.db() as db:
            return await db.run_sync(repo.list_folders, *conditions)

    @staticmethod
    def can_manage(record: FolderRecord, principal: Principal) -> bool:
        """Rename, delete, change options: the owner of a user folder, or an administrator."""
        if principal.is_admin:
            return True
        return record.row.ownership_type == "user" and record.row.user_id == principal.user_id

    @classmethod
    def can_write(cls, record: FolderRecord, principal: Principal) -> bool:
        """Change files through the API: managers, and members of a project folder not ro."""
        return cls.can_manage(record, principal) or record.row.permission != "ro"

    async def writable(self, principal: Principal, ref: str) -> FolderRecord:
        record = await self.get(principal, ref)
        if not self.can_write(record, principal):
            raise InsufficientPrivilege(
                f"the project folder {record.row.name!r} is read-only for its members"
            )
        return record

    async def _manageable(self, db: AsyncSession, principal: Principal, ref: str) -> FolderRecord:
        record = await self._find(db, principal, ref)
        if not self.can_manage(record, principal):
            raise InsufficientPrivilege(
                f"only an administrator may change the project folder {record.row.name!r}"
            )
        return record

    # -- folders -----------------------------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        name: str,
        host: str | None = None,
        group: str | None = None,
        usage_mode: str = "general",
        permission: str = "rw",
        quota: str | int | None = None,
        cloneable: bool = False,
        unmanaged_path: str | None = None,
    ) -> FolderRecord:
        check_folder_name(name)
        if host not in (None, "", HOST):
            raise InvalidAPIParameters(f"unknown volume host {host!r}; this server has {HOST!r}")
        if unmanaged_path:
            raise NotImplementedAPI("unmanaged folders (host paths) are not supported here")
        if usage_mode not in USAGE_MODES:
            raise InvalidAPIParameters(
                f"usage_mode {usage_mode!r} is not one of {', '.join(USAGE_MODES)}"
            )
        perm = normalize_permission(permission, "permission") or "rw"
        size_limit = self.default_quota if quota in (None, "", 0, "0") else None
        if size_limit is None:
            assert quota is not None
            size_limit = int(parse_binary_size(quota))
        if size_limit < 0:
            raise InvalidAPIParameters(f"quota {quota!r} is negative")
        async with self.db() as db, db.begin():
            row = VFolderRow(
                id=uuid.uuid4(),
                name=name,
                host=HOST,
                domain_name=principal.domain_name,
                creator=principal.email,
                usage_mode=usage_mode,
                permission=perm,
                quota=size_limit,
                cloneable=cloneable,
                status="ready",
                created_at=utcnow(),
            )
            group_name = None
            if group:
                project = await db.run_sync(identity.get_group, principal.domain_name, group)
                if not principal.is_admin:
                    raise InsufficientPrivilege(
                        f"only administrators create project folders; ask one to create "
                        f"{name!r} in project {project.name!r}, or create a folder of your own"
                    )
                row.ownership_type, row.group_id, group_name = "group", project.id, project.name
            else:
                await self._check_free(db, principal, name)
                row.ownership_type, row.user_id = "user", principal.user_id
            await repo.add_folder(db, row)
            await asyncio.to_thread(self.volume.create_folder, row.id)
        return FolderRecord(row, principal.email if row.user_id else None, group_name)

    async def _check_free(self, db: AsyncSession, principal: Principal, name: str) -> None:
        clash = await db.run_sync(
            repo.list_folders, repo.accessible(principal.user_id), repo.matches(name)
        )
        if any(r.row.name == name for r in clash):
            raise Conflict(
                f"you already have a virtual folder named {name!r} (yours or a project's); "
                "choose another name"
            )

    async def info(self, principal: Principal, ref: str) -> FolderInfo:
        record = await self.get(principal, ref)
        return FolderInfo(record, await asyncio.to_thread(self.volume.usage, record.row.id))

    async def rename(self, principal: Principal, ref: str, new_name: str) -> None:
        check_folder_name(new_name)
        async with self.db() as db, db.begin():
            record = await self._manageable(db, principal, ref)
            if record.row.name == new_name:
                return
            if record.row.ownership_type == "user":
                await self._check_free(db, principal, new_name)
            await repo.rename_folder(db, record.row, new_name)

    async def update_options(
        self, principal: Principal, ref: str, permission: str | None, cloneable: bool | None
    ) -> None:
        async with self.db() as db, db.begin():
            record = await self._manageable(db, principal, ref)
            if permission is not None:
                record.row.permission = normalize_permission(permission, "permission") or "rw"
            if cloneable is not None:
                record.row.cloneable = cloneable

    async def delete(self, principal: Principal, ref: str) -> None:
        async with self.db() as db, db.begin():
            record = await self._manageable(db, principal, ref)
            host_path = str(self.volume.folder_path(record.row.id))
            live = await db.execute(
                sa.select(SessionRow.name, SessionRow.mounts).where(
                    SessionRow.status.not_in(TERMINAL_STATUSES)
                )
            )
            using = [
                n
                for n, ms in live.tuples()
                if any(
                    m["host_path"] == host_path or m["host_path"].startswith(host_path + "/")
                    for m in ms
                )
            ]
            if using:
                raise Conflict(
                    f"the folder {record.row.name!r} is mounted by the session(s) "
                    f"{', '.join(sorted(using))}; destroy them first"
                )
            await repo.delete_folder(db, record.row.id)
            await asyncio.to_thread(self.volume.delete_folder, record.row.id)

    # -- files -------------------------------------------------------------------------------

    async def list_files(self, principal: Principal, ref: str, path: str) -> list[DirEntry]:
        record = await self.get(principal, ref)
        return await asyncio.to_thread(self.volume.list_dir, record.row.id, path)

    async def mkdir(
        self, principal: Principal, ref: str, paths: list[str], *, parents: bool, exist_ok: bool
    ) -> dict[str, list[dict[str, Any]]]:
        """Backend.AI's result set: each path under ``success`` or ``failed`` with why."""
        record = await self.writable(principal, ref)
        results: dict[str, list[dict[str, Any]]] = {"success": [], "failed": []}
        if len(paths) == 1:
            # One directory: its failure is the request's, with the error's own status.
            await asyncio.to_thread(
                self.volume.mkdir, record.row.id, paths[0], parents=parents, exist_ok=exist_ok
            )
            results["success"].append({"item": paths[0], "msg": None})
            return results
        for path in paths:
            try:
                await asyncio.to_thread(
                    self.volume.mkdir, record.row.id, path, parents=parents, exist_ok=exist_ok
                )
            except (InvalidAPIParameters, ObjectNotFound, Conflict) as e:
                results["failed"].append({"item": path, "msg": str(e)})
            else:
                results["success"].append({"item": path, "msg": None})
        return results

    async def delete_files(
        self, principal: Principal, ref: str, files: list[str], *, recursive: bool
    ) -> None:
        record = await self.writable(principal, ref)
        for path in files:
            await asyncio.to_thread(self.volume.delete, record.row.id, path, recursive=recursive)

    async def rename_file(self, principal: Principal, ref: str, path: str, new_name: str) -> None:
        record = await self.writable(principal, ref)
        await asyncio.to_thread(self.volume.rename, record.row.id, path, new_name)

    async def move_file(self, principal: Principal, ref: str, src: str, dst: str) -> None:
        record = await self.writable(principal, ref)
        await asyncio.to_thread(self.volume.move, record.row.id, src, dst)

    # -- mounts ------------------------------------------------------------------------------

    async def resolve(
        self,
        principal: Principal,
        *,
        group: str,
        domain: str,
        names: list[str],
        mount_map: dict[str, str],
        mount_options: dict[str, dict[str, Any]],
        owner_access_key: str | None = None,
    ) -> list[MountSpec]:
        """The mounts a new session asks for (see ``services.mounts``); 404 names an unknown
        or foreign folder, and nothing is created for it."""
        return await rules.resolve_mounts(
            self,
            principal,
            group=group,
            domain=domain,
            names=names,
            mount_map=mount_map,
            mount_options=mount_options,
            owner_access_key=owner_access_key,
        )
