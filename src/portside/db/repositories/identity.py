"""Queries on who is who: domains, projects, users, keypairs and keypair resource policies."""

from __future__ import annotations

import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from portside.db.models import (
    Domain,
    Group,
    GroupMember,
    KeyPair,
    KeyPairResourcePolicy,
    User,
    utcnow,
)
from portside.errors import Conflict, ObjectNotFound

_AK_ALPHABET = string.ascii_uppercase + string.digits
_SK_ALPHABET = string.ascii_letters + string.digits + "/+_-"


def generate_access_key() -> str:
    """A 20-character access key shaped like Backend.AI's (``AKIA`` + 16 upper alphanumerics)."""
    return "AKIA" + "".join(secrets.choice(_AK_ALPHABET) for _ in range(16))


def generate_secret_key() -> str:
    return "".join(secrets.choice(_SK_ALPHABET) for _ in range(40))


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request: a keypair and the user who owns it."""

    access_key: str
    user_id: uuid.UUID
    email: str
    domain_name: str
    role: str
    is_admin: bool
    resource_policy: str

    @property
    def is_superadmin(self) -> bool:
        return self.role == "superadmin"


@dataclass(frozen=True, slots=True)
class ActiveKey:
    """What the authenticator needs to check one request's signature."""

    secret_key: str
    principal: Principal


async def get_active_key(db: AsyncSession, access_key: str) -> ActiveKey | None:
    return (await get_active_keys(db, [access_key])).get(access_key)


async def get_active_keys(db: AsyncSession, access_keys: list[str]) -> dict[str, ActiveKey]:
    """Those of ``access_keys`` that are active and whose owners are, with their owners."""
    rows = await db.execute(
        sa.select(KeyPair, User)
        .join(User, User.uuid == KeyPair.user_id)
        .where(
            KeyPair.access_key.in_(access_keys),
            KeyPair.is_active.is_(True),
            User.is_active.is_(True),
        )
    )
    return {
        keypair.access_key: ActiveKey(
            secret_key=keypair.secret_key,
            principal=Principal(
                access_key=keypair.access_key,
                user_id=user.uuid,
                email=user.email,
                domain_name=user.domain_name,
                role=user.role,
                is_admin=keypair.is_admin,
                resource_policy=keypair.resource_policy,
            ),
        )
        for keypair, user in rows.tuples()
    }


async def touch_keypair(db: AsyncSession, access_key: str, when: datetime) -> None:
    await db.execute(
        sa.update(KeyPair).where(KeyPair.access_key == access_key).values(last_used=when)
    )


async def ensure_domain(db: AsyncSession, name: str) -> Domain:
    domain = await db.get(Domain, name)
    if domain is None:
        domain = Domain(name=name, description="", is_active=True)
        db.add(domain)
        await db.flush()
    return domain


async def ensure_group(db: AsyncSession, domain_name: str, name: str) -> Group:
    group = (
        await db.execute(
            sa.select(Group).where(Group.domain_name == domain_name, Group.name == name)
        )
    ).scalar_one_or_none()
    if group is None:
        group = Group(name=name, domain_name=domain_name, description="", is_active=True)
        db.add(group)
        await db.flush()
    return group


#: Built once: every session start runs it (see ``services.mounts._mountable``).
_GROUP = sa.select(Group).where(
    Group.domain_name == sa.bindparam("domain"),
    # By name, or by id when the name is one (``group_id`` None matches nothing).
    sa.or_(Group.name == sa.bindparam("name"), Group.id == sa.bindparam("group_id")),
)


def get_group(db: Session, domain_name: str, name_or_id: str) -> Group:
    """Synchronous, for the units of work session starts run (``Database.run``); async code
    calls it through ``AsyncSession.run_sync``."""
    try:
        group_id: uuid.UUID | None = uuid.UUID(name_or_id)
    except ValueError:
        group_id = None
    params = {"domain": domain_name, "name": name_or_id, "group_id": group_id}
    group = db.execute(_GROUP, params).scalar_one_or_none()
    if group is None:
        raise ObjectNotFound(
            f"project {name_or_id!r} does not exist in domain {domain_name!r}",
            object_name="project",
        )
    return group


def is_group_member(db: Session, group_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    return db.get(GroupMember, (group_id, user_id)) is not None


async def ensure_resource_policy(
    db: AsyncSession, name: str, **values: Any
) -> KeyPairResourcePolicy:
    policy = await db.get(KeyPairResourcePolicy, name)
    if policy is None:
        policy = KeyPairResourcePolicy(name=name, **values)
        db.add(policy)
        await db.flush()
    return policy


async def get_resource_policy(db: AsyncSession, name: str) -> KeyPairResourcePolicy:
    policy = await db.get(KeyPairResourcePolicy, name)
    if policy is None:
        raise ObjectNotFound(
            f"resource policy {name!r} does not exist", object_name="resource policy"
        )
    return policy


async def list_resource_policies(db: AsyncSession) -> list[KeyPairResourcePolicy]:
    return list((await db.execute(sa.select(KeyPairResourcePolicy).order_by("name"))).scalars())


async def get_user_by_email(db: AsyncSession, email: str) -> User | None:
    return (await db.execute(sa.select(User).where(User.email == email))).scalar_one_or_none()


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    domain_name: str,
    role: str = "user",
    username: str | None = None,
    full_name: str = "",
    groups: list[Group] | None = None,
) -> User:
    if await get_user_by_email(db, email) is not None:
        raise Conflict(f"a user with the email {email!r} already exists")
    user = User(
        email=email,
        username=username or email,
        full_name=full_name,
        domain_name=domain_name,
        role=role,
        is_active=True,
    )
    db.add(user)
    await db.flush()
    for group in groups or []:
        db.add(GroupMember(group_id=group.id, user_id=user.uuid))
    await db.flush()
    return user


async def create_keypair(
    db: AsyncSession,
    user: User,
    *,
    is_admin: bool = False,
    resource_policy: str = "default",
    access_key: str | None = None,
    secret_key: str | None = None,
) -> KeyPair:
    if access_key is not None and await db.get(KeyPair, access_key) is not None:
        raise Conflict(f"the access key {access_key} already exists")
    keypair = KeyPair(
        access_key=access_key or generate_access_key(),
        secret_key=secret_key or generate_secret_key(),
        user_id=user.uuid,
        is_active=True,
        is_admin=is_admin,
        resource_policy=resource_policy,
    )
    db.add(keypair)
    await db.flush()
    return keypair


async def get_keypair(db: AsyncSession, access_key: str) -> KeyPair:
    keypair = await db.get(KeyPair, access_key)
    if keypair is None:
        raise ObjectNotFound(f"keypair {access_key} does not exist", object_name="keypair")
    return keypair


async def list_keypairs(
    db: AsyncSession, *, email: str | None = None, is_active: bool | None = None
) -> list[tuple[KeyPair, User]]:
    query = sa.select(KeyPair, User).join(User, User.uuid == KeyPair.user_id)
    if email is not None:
        query = query.where(User.email == email)
    if is_active is not None:
        query = query.where(KeyPair.is_active.is_(is_active))
    rows = await db.execute(query.order_by(KeyPair.created_at, KeyPair.access_key))
    return [(kp, user) for kp, user in rows.tuples()]


async def set_keypair_active(db: AsyncSession, access_key: str, active: bool) -> KeyPair:
    keypair = await get_keypair(db, access_key)
    keypair.is_active = active
    keypair.modified_at = utcnow()
    await db.flush()
    return keypair
