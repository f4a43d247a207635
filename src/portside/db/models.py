"""The database schema, as SQLAlchemy 2 declarative models.

The schema changes only through Alembic migrations (``db/migrations``); these models describe
the latest revision and are what the repositories query.  Column types are chosen to behave the
same on SQLite and PostgreSQL: UUIDs via ``sa.Uuid``, JSON via ``sa.JSON``, timestamps always
timezone-aware UTC (SQLite drops the zone, ``UTCDateTime`` puts it back).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use datetime.now(UTC)")
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
        uuid.UUID: sa.Uuid(),
    }


class Domain(Base):
    __tablename__ = "domains"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Group(Base):
    """A project: the unit that owns shared folders and bills sessions."""

    __tablename__ = "groups"
    __table_args__ = (sa.UniqueConstraint("domain_name", "name", name="uq_groups_domain_name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(64))
    domain_name: Mapped[str] = mapped_column(sa.ForeignKey("domains.name"))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    uuid: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(sa.String(128), unique=True)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    full_name: Mapped[str] = mapped_column(sa.String(128), default="")
    domain_name: Mapped[str] = mapped_column(sa.ForeignKey("domains.name"))
    #: "superadmin", "admin" or "user", as in Backend.AI.
    role: Mapped[str] = mapped_column(sa.String(16), default="user")
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.uuid", ondelete="CASCADE"), primary_key=True
    )


class KeyPairResourcePolicy(Base):
    __tablename__ = "keypair_resource_policies"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    #: Slot name to limit; an unlisted slot is governed by ``default_for_unspecified``.
    total_resource_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: "UNLIMITED" or "LIMITED" (an unlisted slot then has a limit of zero).
    default_for_unspecified: Mapped[str] = mapped_column(sa.String(16), default="UNLIMITED")
    max_concurrent_sessions: Mapped[int] = mapped_column(default=30)
    max_pending_session_count: Mapped[int | None] = mapped_column(default=None)
    max_containers_per_session: Mapped[int] = mapped_column(default=1)
    #: Seconds since the kernel started; 0 means no limit.
    max_session_lifetime: Mapped[int] = mapped_column(default=0)
    #: Seconds of inactivity before a session is terminated; -1 means "the server default",
    #: 0 means never.
    idle_timeout: Mapped[int] = mapped_column(default=-1)
    allowed_vfolder_hosts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KeyPair(Base):
    __tablename__ = "keypairs"

    access_key: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    secret_key: Mapped[str] = mapped_column(sa.String(40))
    user_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("users.uuid", ondelete="CASCADE"), index=True
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    resource_policy: Mapped[str] = mapped_column(
        sa.ForeignKey("keypair_resource_policies.name"), default="default"
    )
    rate_limit: Mapped[int] = mapped_column(default=10000)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    modified_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(default=None)


#: Statuses after which a session holds nothing and its name is free again.
TERMINAL_STATUSES = ("TERMINATED", "CANCELLED", "ERROR")
#: Statuses in which a session no longer answers by name or id (runtime-semantics.md s.2.1).
DEAD_STATUSES = ("TERMINATED", "CANCELLED")


class SessionRow(Base):
    """A compute session and its one kernel (Portside sessions are single-kernel)."""

    __tablename__ = "sessions"
    __table_args__ = (
        # One live session per owner and name; finished ones keep their name for the record.
        sa.Index(
            "uq_sessions_live_name",
            "access_key",
            "name",
            unique=True,
            sqlite_where=sa.text("status NOT IN ('TERMINATED', 'CANCELLED', 'ERROR')"),
            postgresql_where=sa.text("status NOT IN ('TERMINATED', 'CANCELLED', 'ERROR')"),
        ),
        sa.Index("ix_sessions_status_created", "status", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(64))
    access_key: Mapped[str] = mapped_column(sa.String(20), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column()
    domain_name: Mapped[str] = mapped_column(sa.String(64))
    group_id: Mapped[uuid.UUID] = mapped_column()
    image: Mapped[str] = mapped_column(sa.String(256))
    architecture: Mapped[str] = mapped_column(sa.String(32))
    type: Mapped[str] = mapped_column(sa.String(16))
    tag: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    priority: Mapped[int] = mapped_column(default=10)
    status: Mapped[str] = mapped_column(sa.String(16))
    status_info: Mapped[str | None] = mapped_column(sa.Text, default=None)
    status_data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: ``[[status, iso timestamp], ...]`` in order, for ``status-history``.
    status_history: Mapped[list[Any]] = mapped_column(default=list)
    status_changed: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[str] = mapped_column(sa.String(16), default="UNDEFINED")
    requested_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occupying_slots: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resource_opts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environ: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mounts: Mapped[list[Any]] = mapped_column(default=list)
    preopen_ports: Mapped[list[Any]] = mapped_column(default=list)
    startup_command: Mapped[str | None] = mapped_column(sa.Text, default=None)
    bootstrap_script: Mapped[str | None] = mapped_column(sa.Text, default=None)
    batch_timeout: Mapped[float | None] = mapped_column(sa.Float, default=None)
    callback_url: Mapped[str | None] = mapped_column(sa.Text, default=None)
    dependencies: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    starts_at: Mapped[datetime | None] = mapped_column(default=None)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    terminated_at: Mapped[datetime | None] = mapped_column(default=None)
    last_access: Mapped[datetime] = mapped_column(default=utcnow)
    num_queries: Mapped[int] = mapped_column(default=0)
    #: The agent (node) that runs the kernel, and what it needs to find it again after a
    #: restart of the server (process ids, socket paths, isolation level).
    agent_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    kernel_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    kernel_info: Mapped[dict[str, Any]] = mapped_column(default=dict)
    service_ports: Mapped[list[Any]] = mapped_column(default=list)


class RunRow(Base):
    """A run that outlived the call that started it, and the API server holding it.

    A run's unread output and its pending input prompt live in the server that started it;
    with several servers, a continuation that reaches another one is passed on to that server
    (api/forward.py).  Runs that finish within their first call never get a row.
    """

    __tablename__ = "runs"

    session_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    server_url: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VFolderRow(Base):
    """A virtual folder: a directory on a volume host, owned by a user or by a project.

    Names are unique per owner (a user's own folders, or a project's folders), which is what
    lets the official client address a folder by name.
    """

    __tablename__ = "vfolders"
    __table_args__ = (
        sa.Index(
            "uq_vfolders_user_name",
            "user_id",
            "name",
            unique=True,
            sqlite_where=sa.text("ownership_type = 'user'"),
            postgresql_where=sa.text("ownership_type = 'user'"),
        ),
        sa.Index(
            "uq_vfolders_group_name",
            "group_id",
            "name",
            unique=True,
            sqlite_where=sa.text("ownership_type = 'group'"),
            postgresql_where=sa.text("ownership_type = 'group'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(64))
    host: Mapped[str] = mapped_column(sa.String(64), default="local")
    domain_name: Mapped[str] = mapped_column(sa.String(64))
    #: "user" (``user_id`` owns it) or "group" (members of ``group_id`` share it).
    ownership_type: Mapped[str] = mapped_column(sa.String(16))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.uuid", ondelete="CASCADE"), default=None, index=True
    )
    group_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), default=None, index=True
    )
    #: The email of whoever created it.
    creator: Mapped[str] = mapped_column(sa.String(128))
    #: "general", "data" or "model", as Backend.AI labels a folder's purpose.
    usage_mode: Mapped[str] = mapped_column(sa.String(16), default="general")
    #: "ro", "rw" or "wd": what sessions (and project members) may do with it.
    permission: Mapped[str] = mapped_column(sa.String(8), default="rw")
    #: Size limit in bytes; 0 means unlimited.
    quota: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    cloneable: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(16), default="ready")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(default=None)


class EndpointRow(Base):
    """A model service: a name, a model folder, and the replicas serving it behind one URL."""

    __tablename__ = "endpoints"
    __table_args__ = (
        sa.Index(
            "uq_endpoints_live_name",
            "access_key",
            "name",
            unique=True,
            sqlite_where=sa.text("status != 'DESTROYED'"),
            postgresql_where=sa.text("status != 'DESTROYED'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(sa.String(64))
    access_key: Mapped[str] = mapped_column(sa.String(20), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column()
    domain_name: Mapped[str] = mapped_column(sa.String(64))
    group_id: Mapped[uuid.UUID] = mapped_column()
    image: Mapped[str] = mapped_column(sa.String(256))
    model_id: Mapped[uuid.UUID] = mapped_column()
    model_mount_destination: Mapped[str] = mapped_column(sa.String(256), default="/models")
    model_definition_path: Mapped[str | None] = mapped_column(sa.String(256), default=None)
    #: The validated model definition at creation, so replicas start the same way later.
    model_definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runtime_variant: Mapped[str] = mapped_column(sa.String(32), default="custom")
    replicas: Mapped[int] = mapped_column(default=1)
    resources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    resource_opts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    environ: Mapped[dict[str, Any]] = mapped_column(default=dict)
    open_to_public: Mapped[bool] = mapped_column(default=False)
    #: "PROVISIONING", "HEALTHY", "DEGRADED", "DESTROYING" or "DESTROYED".
    status: Mapped[str] = mapped_column(sa.String(16), default="PROVISIONING")
    #: The port of its ingress on the app proxy, kept so its URL survives restarts.
    ingress_port: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    destroyed_at: Mapped[datetime | None] = mapped_column(default=None)


class RouteRow(Base):
    """One replica of a model service: an inference session and its share of the traffic."""

    __tablename__ = "routes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    #: "PROVISIONING", "HEALTHY", "UNHEALTHY", "DRAINING", "FAILED" or "TERMINATED".
    status: Mapped[str] = mapped_column(sa.String(16), default="PROVISIONING")
    status_info: Mapped[str | None] = mapped_column(sa.Text, default=None)
    traffic_ratio: Mapped[float] = mapped_column(sa.Float, default=1.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EndpointTokenRow(Base):
    """A token issued for a model service (kept for the record; tokens cannot be revoked)."""

    __tablename__ = "endpoint_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("endpoints.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column()
    token: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
