"""Core identity tables: domains, groups, users, keypairs and their resource policies.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("domain_name", sa.String(64), sa.ForeignKey("domains.name"), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("domain_name", "name", name="uq_groups_domain_name"),
    )
    op.create_table(
        "users",
        sa.Column("uuid", sa.Uuid, primary_key=True),
        sa.Column("email", sa.String(128), nullable=False, unique=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("full_name", sa.String(128), nullable=False),
        sa.Column("domain_name", sa.String(64), sa.ForeignKey("domains.name"), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_id", sa.Uuid, sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "user_id", sa.Uuid, sa.ForeignKey("users.uuid", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_table(
        "keypair_resource_policies",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("total_resource_slots", sa.JSON, nullable=False),
        sa.Column("default_for_unspecified", sa.String(16), nullable=False),
        sa.Column("max_concurrent_sessions", sa.Integer, nullable=False),
        sa.Column("max_pending_session_count", sa.Integer, nullable=True),
        sa.Column("max_containers_per_session", sa.Integer, nullable=False),
        sa.Column("max_session_lifetime", sa.Integer, nullable=False),
        sa.Column("idle_timeout", sa.Integer, nullable=False),
        sa.Column("allowed_vfolder_hosts", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "keypairs",
        sa.Column("access_key", sa.String(20), primary_key=True),
        sa.Column("secret_key", sa.String(40), nullable=False),
        sa.Column(
            "user_id", sa.Uuid, sa.ForeignKey("users.uuid", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean, nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column(
            "resource_policy",
            sa.String(64),
            sa.ForeignKey("keypair_resource_policies.name"),
            nullable=False,
        ),
        sa.Column("rate_limit", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("modified_at", TS, nullable=False),
        sa.Column("last_used", TS, nullable=True),
    )
    op.create_index("ix_keypairs_user_id", "keypairs", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_keypairs_user_id", "keypairs")
    op.drop_table("keypairs")
    op.drop_table("keypair_resource_policies")
    op.drop_table("group_members")
    op.drop_table("users")
    op.drop_table("groups")
    op.drop_table("domains")
