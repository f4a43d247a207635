"""First-start set-up: the default domain, project and administrator, and the env file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from portside.config import Config
from portside.db.engine import Database
from portside.db.models import KeyPair, User
from portside.db.repositories import identity

DEFAULT_DOMAIN = "default"
DEFAULT_GROUP = "default"
ADMIN_EMAIL = "admin@portside.local"

#: Backend.AI's own test-suite keypairs, seeded only in development mode (issue #2).
DEV_KEYPAIRS = (
    (
        "admin@lablup.com",
        "superadmin",
        True,
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "user@lablup.com",
        "user",
        False,
        "AKIANABBDUSEREXAMPLE",
        "C8qnIo29EZvXkPK_MXcuAakYTy4NYrxwmCEyNPlf",
    ),
)


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    admin_access_key: str
    admin_secret_key: str
    env_file: Path


async def _ensure_user_with_key(
    db: AsyncSession,
    *,
    email: str,
    role: str,
    is_admin: bool,
    access_key: str | None = None,
    secret_key: str | None = None,
) -> KeyPair:
    group = await identity.ensure_group(db, DEFAULT_DOMAIN, DEFAULT_GROUP)
    user = await identity.get_user_by_email(db, email)
    if user is None:
        user = await identity.create_user(
            db,
            email=email,
            domain_name=DEFAULT_DOMAIN,
            role=role,
            groups=[group],
        )
    query = sa.select(KeyPair).where(KeyPair.user_id == user.uuid, KeyPair.is_active.is_(True))
    if access_key is not None:
        query = sa.select(KeyPair).where(KeyPair.access_key == access_key)
    keypair = (await db.execute(query.order_by(KeyPair.created_at).limit(1))).scalar_one_or_none()
    if keypair is None:
        keypair = await identity.create_keypair(
            db, user, is_admin=is_admin, access_key=access_key, secret_key=secret_key
        )
    return keypair


def write_env_file(path: Path, endpoint: str, access_key: str, secret_key: str) -> None:
    """Writes a file that ``source`` (or python-dotenv) turns into a configured client."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Written by `portside serve`: `source` this file to point Backend.AI clients here.\n"
        f"export BACKEND_ENDPOINT={endpoint}\n"
        f"export BACKEND_ACCESS_KEY={access_key}\n"
        f"export BACKEND_SECRET_KEY={secret_key}\n"
        "export BACKEND_ENDPOINT_TYPE=api\n"
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


async def bootstrap(db_factory: Database, config: Config) -> BootstrapResult:
    async with db_factory() as db, db.begin():
        await identity.ensure_domain(db, DEFAULT_DOMAIN)
        await identity.ensure_group(db, DEFAULT_DOMAIN, DEFAULT_GROUP)
        await identity.ensure_resource_policy(db, "default")
        superadmin = (
            await db.execute(
                sa.select(User).where(User.role == "superadmin").order_by(User.created_at).limit(1)
            )
        ).scalar_one_or_none()
        email = ADMIN_EMAIL if superadmin is None else superadmin.email
        admin_key = await _ensure_user_with_key(db, email=email, role="superadmin", is_admin=True)
        if config.dev:
            for dev_email, role, is_admin, ak, sk in DEV_KEYPAIRS:
                await _ensure_user_with_key(
                    db, email=dev_email, role=role, is_admin=is_admin, access_key=ak, secret_key=sk
                )
    env_file = config.data_dir / "portside.env"
    write_env_file(env_file, config.api_url, admin_key.access_key, admin_key.secret_key)
    return BootstrapResult(admin_key.access_key, admin_key.secret_key, env_file)
