"""Compute sessions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("status NOT IN ('TERMINATED', 'CANCELLED', 'ERROR')")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("access_key", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("group_id", sa.Uuid, nullable=False),
        sa.Column("image", sa.String(256), nullable=False),
        sa.Column("architecture", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("tag", sa.String(64), nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_info", sa.Text, nullable=True),
        sa.Column("status_data", sa.JSON, nullable=False),
        sa.Column("status_history", sa.JSON, nullable=False),
        sa.Column("status_changed", TS, nullable=False),
        sa.Column("result", sa.String(16), nullable=False),
        sa.Column("requested_slots", sa.JSON, nullable=False),
        sa.Column("occupying_slots", sa.JSON, nullable=False),
        sa.Column("resource_opts", sa.JSON, nullable=False),
        sa.Column("environ", sa.JSON, nullable=False),
        sa.Column("mounts", sa.JSON, nullable=False),
        sa.Column("preopen_ports", sa.JSON, nullable=False),
        sa.Column("startup_command", sa.Text, nullable=True),
        sa.Column("bootstrap_script", sa.Text, nullable=True),
        sa.Column("batch_timeout", sa.Float, nullable=True),
        sa.Column("callback_url", sa.Text, nullable=True),
        sa.Column("dependencies", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("starts_at", TS, nullable=True),
        sa.Column("scheduled_at", TS, nullable=True),
        sa.Column("terminated_at", TS, nullable=True),
        sa.Column("last_access", TS, nullable=False),
        sa.Column("num_queries", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=True),
        sa.Column("kernel_id", sa.Uuid, nullable=True),
        sa.Column("kernel_info", sa.JSON, nullable=False),
        sa.Column("service_ports", sa.JSON, nullable=False),
    )
    op.create_index("ix_sessions_access_key", "sessions", ["access_key"])
    op.create_index("ix_sessions_status_created", "sessions", ["status", "created_at"])
    op.create_index(
        "uq_sessions_live_name",
        "sessions",
        ["access_key", "name"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_sessions_live_name", "sessions")
    op.drop_index("ix_sessions_status_created", "sessions")
    op.drop_index("ix_sessions_access_key", "sessions")
    op.drop_table("sessions")
