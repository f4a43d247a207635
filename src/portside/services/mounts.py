"""Turning a session's mount request into bind mounts (runtime-semantics.md section 2.6).

A request names folders (by name, or by id with or without dashes, optionally ``name/sub/path``)
in ``mounts``, gives some of them another place in ``mount_map`` and sets options per folder in
``mount_options``.  Each becomes a ``MountSpec``: the folder's directory on the host, where it
appears in the sandbox and whether it is read-only.  Dot-prefixed folders (``.local``, dotfile
folders) are added without being asked for, as Backend.AI does.  The rules here are pure; the
service supplies the folders the owner may use.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from portside.agent.base import MountSpec
from portside.db.models import Group, VFolderRow, utcnow
from portside.db.repositories import identity
from portside.db.repositories import vfolders as repo
from portside.db.repositories.identity import Principal
from portside.db.repositories.vfolders import FolderRecord
from portside.errors import InsufficientPrivilege, InvalidAPIParameters, ObjectNotFound

if TYPE_CHECKING:
    from .vfolders import VFolderService

KERNEL_HOME = "/home/work"
#: Names a folder (or a relative alias) may not take: the sandbox's own files live there.
RESERVED_NAMES = frozenset({".terminfo", ".jupyter", ".tmux.conf", ".ssh"})
RESERVED_PATTERNS = (re.compile(r"^\.[a-z0-9]+rc$"), re.compile(r"^\.[a-z0-9]+_profile$"))
#: Absolute places a mount may not cover, nor go under: the system the sandbox runs on.
RESERVED_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/var",
)
RESERVED_EXACT = frozenset({"/", "/home", KERNEL_HOME})
#: Where some dot-folders belong instead of ``/home/work/<name>``.
SPECIAL_TARGETS = {".linuxbrew": "/home/linuxbrew/.linuxbrew"}
_PERMISSIONS = {
    "ro": "ro",
    "read-only": "ro",
    "rw": "rw",
    "read-write": "rw",
    "wd": "wd",
    "rw-delete": "wd",
}


def is_reserved_name(name: str) -> bool:
    return name in RESERVED_NAMES or any(p.match(name) for p in RESERVED_PATTERNS)


def normalize_permission(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return _PERMISSIONS[str(value).lower()]
    except KeyError:
        raise InvalidAPIParameters(
            f"{what}: permission {value!r} is not one of ro, rw, wd"
        ) from None


@dataclass(frozen=True, slots=True)
class MountRequest:
    """One requested mount: which folder, which part of it, where and how."""

    key: str
    folder: str
    subpath: str
    alias: str | None
    permission: str | None


def parse_requests(
    names: Sequence[str],
    mount_map: Mapping[str, str],
    mount_options: Mapping[str, Mapping[str, Any]],
) -> list[MountRequest]:
    keys = list(dict.fromkeys([*names, *mount_map]))
    unknown = [k for k in mount_options if k not in keys]
    if unknown:
        raise InvalidAPIParameters(
            "mount_options name folders that are not mounted: "
            + ", ".join(repr(k) for k in unknown)
            + "; add them to mounts too"
        )
    requests = []
    for key in keys:
        if not isinstance(key, str) or not key.strip("/"):
            raise InvalidAPIParameters(f"{key!r} is not a folder name")
        options = mount_options.get(key) or {}
        if not isinstance(options, Mapping):
            raise InvalidAPIParameters(f"mount_options[{key!r}] must be an object")
        kind = options.get("type")
        if kind not in (None, "bind"):
            raise InvalidAPIParameters(f"mount_options[{key!r}]: only type 'bind' is supported")
        folder, _, subpath = key.partition("/")
        subpath = subpath or str(options.get("subpath") or "")
        alias = mount_map.get(key) or options.get("mount_destination")
        permission = normalize_permission(
            options.get("permission") or options.get("perm"), f"mount_options[{key!r}]"
        )
        requests.append(MountRequest(key, folder, subpath, alias, permission))
    return requests


def kernel_path(alias: str | None, folder_name: str, key: str, other_names: frozenset[str]) -> str:
    """Where a folder appears in the sandbox, after the alias rules of section 2.6."""
    if alias is None:
        return SPECIAL_TARGETS.get(folder_name, f"{KERNEL_HOME}/{folder_name}")
    text = alias.strip()
    if text.startswith(KERNEL_HOME + "/"):
        text = text[len(KERNEL_HOME) + 1 :]
    if not text or text == "/":
        raise InvalidAPIParameters(f"the mount path for {key!r} is empty; give a name or a path")
    if ".." in text.split("/"):
        raise InvalidAPIParameters(f"the mount path {alias!r} for {key!r} may not contain '..'")
    if text.startswith("/"):
        path = posixpath.normpath(text)
        if path in RESERVED_EXACT or any(
            path == tree or path.startswith(tree + "/") for tree in RESERVED_TREES
        ):
            raise InvalidAPIParameters(
                f"the mount path {alias!r} for {key!r} is reserved for the system; "
                f"choose a path elsewhere, e.g. {KERNEL_HOME}/<name>"
            )
        return path
    relative = posixpath.normpath(text)
    if is_reserved_name(relative.split("/")[0]):
        raise InvalidAPIParameters(
            f"the mount path {alias!r} for {key!r} is reserved for internal use"
        )
    if relative in other_names:
        raise InvalidAPIParameters(
            f"the mount path {alias!r} for {key!r} is the name of another folder of yours; "
            "choose another alias"
        )
    return f"{KERNEL_HOME}/{relative}"


def read_only(requested: str | None, folder_permission: str, key: str) -> bool:
    """Requested ro wins; rw or wd needs a folder that allows writing; default: the folder's."""
    if requested == "ro":
        return True
    if folder_permission == "ro":
        if requested is not None:
            raise InsufficientPrivilege(
                f"the folder {key!r} is read-only; mount it with permission 'ro' "
                "(or leave the permission out)"
            )
        return True
    return False


def check_overlaps(targets: Sequence[tuple[str, str]]) -> None:
    """No two mounts at one place, and none inside another (``(key, kernel_path)`` pairs)."""
    for i, (key_a, path_a) in enumerate(targets):
        for key_b, path_b in targets[i + 1 :]:
            if (
                path_a == path_b
                or path_b.startswith(path_a + "/")
                or path_a.startswith(path_b + "/")
            ):
                raise InvalidAPIParameters(
                    f"the mounts {key_a!r} ({path_a}) and {key_b!r} ({path_b}) overlap; "
                    "give one of them another path with mount_map"
                )


def _mountable(automounted_only: bool) -> Any:
    """The folders a session's owner may mount: their own, and those of the session's project
    when they are a member of it (or a superadmin).

    Built once, with the owner and the project as parameters: building this statement and
    its cache key anew took three quarters of the query's cost, a millisecond and more of every
    session start.
    """
    user_id: sa.BindParameter[uuid.UUID] = sa.bindparam("user_id")
    project = sa.select(Group.id).where(
        Group.domain_name == sa.bindparam("domain"),
        # A project named by its id (None when the name is not an id: then only the name).
        sa.or_(Group.name == sa.bindparam("group"), Group.id == sa.bindparam("group_id")),
        sa.or_(
            sa.bindparam("superadmin", type_=sa.Boolean),
            Group.id.in_(repo.member_groups(user_id)),
        ),
    )
    conditions = [repo.accessible(user_id, project)]
    if automounted_only:
        conditions.append(VFolderRow.name.startswith("."))
    return repo.folders_query(*conditions)


_MOUNTABLE = _mountable(automounted_only=False)
#: Only the folders mounted without being asked for (names starting with a dot).
_AUTOMOUNTED = _mountable(automounted_only=True)


async def _owner(
    service: VFolderService, principal: Principal, access_key: str | None
) -> Principal:
    if not access_key or access_key == principal.access_key:
        return principal
    if not principal.is_admin:
        raise InsufficientPrivilege("only administrators may create sessions for others")
    async with service.db() as db:
        key = await identity.get_active_key(db, access_key)
    if key is None:
        raise ObjectNotFound("the owner's keypair does not exist", object_name="keypair")
    return key.principal


async def resolve_mounts(
    service: VFolderService,
    principal: Principal,
    *,
    group: str,
    domain: str,
    names: Sequence[str],
    mount_map: Mapping[str, str],
    mount_options: Mapping[str, Mapping[str, Any]],
    owner_access_key: str | None = None,
) -> list[MountSpec]:
    """Mounts for a session of ``owner_access_key`` (default: the caller) in ``group``.

    The folders it may use are its own and those of the session's project.  Any other name,
    a foreign folder's included, is answered with 404 naming it.
    """
    requests = parse_requests(names, mount_map, mount_options)
    owner = await _owner(service, principal, owner_access_key)
    params = {
        "user_id": owner.user_id,
        "domain": domain,
        "group": group,
        "group_id": repo.parse_folder_id(group),
        "superadmin": owner.is_superadmin,
    }
    # Without requests, only the automounted folders can matter.
    query = _MOUNTABLE if requests else _AUTOMOUNTED
    folders = await service.db.run(lambda db: repo.fetch_folders(db, query, params))
    by_name: dict[str, FolderRecord] = {}
    for record in folders:
        by_name.setdefault(record.row.name, record)
    by_id = {record.row.id: record for record in folders}
    all_names = frozenset(by_name)
    specs: list[MountSpec] = []
    targets: list[tuple[str, str]] = []
    used_ids: set[uuid.UUID] = set()
    for req in requests:
        folder_id = repo.parse_folder_id(req.folder)
        found = (by_id.get(folder_id) if folder_id else None) or by_name.get(req.folder)
        if found is None:
            raise ObjectNotFound(
                f"there is no virtual folder {req.folder!r} that you can mount",
                object_name="virtual folder",
            )
        row = found.row
        target = kernel_path(req.alias, row.name, req.key, all_names - {row.name})
        host = await _host_path(service, row, req.subpath, req.key)
        specs.append(
            MountSpec(row.name, host, target, read_only(req.permission, row.permission, req.key))
        )
        targets.append((req.key, target))
        used_ids.add(row.id)
    check_overlaps(targets)
    used = {s.name for s in specs}
    for name, record in by_name.items():
        if not name.startswith(".") or name in used:
            continue
        row = record.row
        target = kernel_path(None, name, name, frozenset())
        if any(
            t == target or t.startswith(target + "/") or target.startswith(t + "/")
            for _, t in targets
        ):
            continue
        # A project's ``.local`` holds one directory per member, so members don't collide.
        subpath = owner.user_id.hex if row.ownership_type == "group" and name == ".local" else ""
        if subpath:
            await asyncio.to_thread(
                service.volume.mkdir, row.id, subpath, parents=True, exist_ok=True
            )
        host = await _host_path(service, row, subpath, name)
        specs.append(MountSpec(name, host, target, row.permission == "ro"))
        targets.append((name, target))
        used_ids.add(row.id)
    if used_ids:
        async with service.db() as db, db.begin():
            await db.execute(
                sa.update(VFolderRow)
                .where(VFolderRow.id.in_(list(used_ids)))
                .values(last_used=utcnow())
            )
    return specs


async def _host_path(service: VFolderService, row: VFolderRow, subpath: str, key: str) -> str:
    if not subpath:
        return str(service.volume.folder_path(row.id))
    try:
        path = await asyncio.to_thread(service.volume.resolve_dir, row.id, subpath)
    except ObjectNotFound:
        raise ObjectNotFound(
            f"the virtual folder {row.name!r} has no directory {subpath!r} (mount {key!r})",
            object_name="virtual folder",
        ) from None
    return str(path)
