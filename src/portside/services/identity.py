"""Use cases on users and keypairs, with who-may-do-what decided here, not in the API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from portside import resources
from portside.db.models import Group, GroupMember, KeyPair, KeyPairResourcePolicy, User
from portside.db.repositories import identity
from portside.db.repositories.identity import Principal
from portside.errors import InsufficientPrivilege, InvalidAPIParameters, ObjectNotFound

from .bootstrap import DEFAULT_DOMAIN, DEFAULT_GROUP
from .platform import Platform


@dataclass(frozen=True, slots=True)
class KeyPairInfo:
    access_key: str
    secret_key: str
    user_uuid: str
    user_email: str
    is_active: bool
    is_admin: bool
    resource_policy: str
    rate_limit: int
    created_at: datetime
    modified_at: datetime
    last_used: datetime | None
    projects: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "user_id": self.user_email,
            "user": self.user_uuid,
            "is_active": self.is_active,
            "is_admin": self.is_admin,
            "resource_policy": self.resource_policy,
            "rate_limit": self.rate_limit,
            "created_at": self.created_at.isoformat(),
            "modified_at": self.modified_at.isoformat(),
            "last_used": self.last_used.isoformat() if self.last_used else None,
            "projects": self.projects,
        }


def require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise InsufficientPrivilege("this operation needs an administrator's keypair")


async def _projects_of(db: Any, user_id: Any) -> list[str]:
    rows = await db.execute(
        sa.select(Group.name)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user_id)
        .order_by(Group.name)
    )
    return list(rows.scalars())


def _info(keypair: KeyPair, user: User, projects: list[str]) -> KeyPairInfo:
    return KeyPairInfo(
        access_key=keypair.access_key,
        secret_key=keypair.secret_key,
        user_uuid=str(user.uuid),
        user_email=user.email,
        is_active=keypair.is_active,
        is_admin=keypair.is_admin,
        resource_policy=keypair.resource_policy,
        rate_limit=keypair.rate_limit,
        created_at=keypair.created_at,
        modified_at=keypair.modified_at,
        last_used=keypair.last_used,
        projects=projects,
    )


async def get_keypair(
    platform: Platform, principal: Principal, access_key: str | None = None
) -> KeyPairInfo:
    """The caller's own keypair, or (for administrators) any keypair."""
    access_key = access_key or principal.access_key
    if access_key != principal.access_key:
        require_admin(principal)
    async with platform.db() as db:
        keypair = await identity.get_keypair(db, access_key)
        user = await db.get(User, keypair.user_id)
        assert user is not None
        return _info(keypair, user, await _projects_of(db, user.uuid))


async def list_keypairs(
    platform: Platform,
    principal: Principal | None,
    *,
    email: str | None = None,
    is_active: bool | None = None,
) -> list[KeyPairInfo]:
    """``principal`` None means the local operator (the ``portside admin`` command)."""
    if principal is not None and not principal.is_admin:
        if email not in (None, principal.email):
            raise InsufficientPrivilege("only administrators can list other users' keypairs")
        email = principal.email
    async with platform.db() as db:
        rows = await identity.list_keypairs(db, email=email, is_active=is_active)
        return [_info(kp, user, await _projects_of(db, user.uuid)) for kp, user in rows]


async def create_user(
    platform: Platform,
    *,
    email: str,
    role: str = "user",
    domain_name: str = DEFAULT_DOMAIN,
    group_name: str = DEFAULT_GROUP,
    full_name: str = "",
) -> User:
    if role not in ("user", "admin", "superadmin"):
        raise InvalidAPIParameters(f"unknown role {role!r}; use user, admin or superadmin")
    if "@" not in email:
        raise InvalidAPIParameters(f"{email!r} is not an email address")
    async with platform.db() as db, db.begin():
        group = await db.run_sync(identity.get_group, domain_name, group_name)
        return await identity.create_user(
            db, email=email, domain_name=domain_name, role=role, full_name=full_name, groups=[group]
        )


async def create_keypair(
    platform: Platform,
    principal: Principal | None,
    *,
    email: str,
    is_admin: bool = False,
    resource_policy: str = "default",
    is_active: bool = True,
) -> KeyPairInfo:
    """``principal`` None means the local operator (the ``portside admin`` command)."""
    if principal is not None:
        require_admin(principal)
    async with platform.db() as db, db.begin():
        user = await identity.get_user_by_email(db, email)
        if user is None:
            raise ObjectNotFound(f"there is no user with the email {email!r}", object_name="user")
        await identity.get_resource_policy(db, resource_policy)
        keypair = await identity.create_keypair(
            db, user, is_admin=is_admin, resource_policy=resource_policy
        )
        keypair.is_active = is_active
        return _info(keypair, user, await _projects_of(db, user.uuid))


async def modify_keypair(
    platform: Platform,
    principal: Principal | None,
    access_key: str,
    *,
    is_active: bool | None = None,
    is_admin: bool | None = None,
    resource_policy: str | None = None,
    rate_limit: int | None = None,
) -> None:
    if principal is not None:
        require_admin(principal)
    async with platform.db() as db, db.begin():
        keypair = await identity.get_keypair(db, access_key)
        if is_active is not None:
            keypair.is_active = is_active
        if is_admin is not None:
            keypair.is_admin = is_admin
        if resource_policy is not None:
            await identity.get_resource_policy(db, resource_policy)
            keypair.resource_policy = resource_policy
        if rate_limit is not None:
            keypair.rate_limit = rate_limit
    platform.keys.forget()


async def revoke_keypair(platform: Platform, principal: Principal | None, access_key: str) -> None:
    """Deactivates a keypair: it signs nothing from now on, and its sessions stay its own."""
    await modify_keypair(platform, principal, access_key, is_active=False)


async def delete_keypair(platform: Platform, principal: Principal | None, access_key: str) -> None:
    if principal is not None:
        require_admin(principal)
        if access_key == principal.access_key:
            raise InvalidAPIParameters("you cannot delete the keypair you are signing with")
    async with platform.db() as db, db.begin():
        keypair = await identity.get_keypair(db, access_key)
        await db.delete(keypair)
    platform.keys.forget()


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """Fields of a keypair resource policy to set; None leaves a field as it is."""

    total_resource_slots: dict[str, str] | None = None
    default_for_unspecified: str | None = None
    max_concurrent_sessions: int | None = None
    max_session_lifetime: int | None = None
    idle_timeout: int | None = None


async def set_resource_policy(
    platform: Platform, name: str, change: PolicyChange
) -> dict[str, Any]:
    """Creates or updates a keypair resource policy (the local operator's command)."""
    if change.default_for_unspecified not in (None, "LIMITED", "UNLIMITED"):
        raise InvalidAPIParameters("default_for_unspecified is LIMITED or UNLIMITED")
    async with platform.db() as db, db.begin():
        policy = await identity.ensure_resource_policy(db, name)
        if change.total_resource_slots is not None:
            policy.total_resource_slots = resources.to_json(
                resources.parse_slots(change.total_resource_slots, resources.KNOWN_SLOTS)
            )
        for field in (
            "default_for_unspecified",
            "max_concurrent_sessions",
            "max_session_lifetime",
            "idle_timeout",
        ):
            value = getattr(change, field)
            if value is not None:
                setattr(policy, field, value)
        return _policy_dict(policy)


async def list_resource_policies(platform: Platform) -> list[dict[str, Any]]:
    async with platform.db() as db:
        return [_policy_dict(p) for p in await identity.list_resource_policies(db)]


def _policy_dict(policy: KeyPairResourcePolicy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "total_resource_slots": policy.total_resource_slots,
        "default_for_unspecified": policy.default_for_unspecified,
        "max_concurrent_sessions": policy.max_concurrent_sessions,
        "max_session_lifetime": policy.max_session_lifetime,
        "idle_timeout": policy.idle_timeout,
    }
