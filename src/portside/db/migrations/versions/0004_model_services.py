"""Model services: endpoints, their routes (replicas) and issued tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
LIVE = sa.text("status != 'DESTROYED'")


def upgrade() -> None:
    op.create_table(
        "endpoints",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("access_key", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("group_id", sa.Uuid, nullable=False),
        sa.Column("image", sa.String(256), nullable=False),
        sa.Column("model_id", sa.Uuid, nullable=False),
        sa.Column("model_mount_destination", sa.String(256), nullable=False),
        sa.Column("model_definition_path", sa.String(256), nullable=True),
        sa.Column("model_definition", sa.JSON, nullable=False),
        sa.Column("runtime_variant", sa.String(32), nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("resources", sa.JSON, nullable=False),
        sa.Column("resource_opts", sa.JSON, nullable=False),
        sa.Column("environ", sa.JSON, nullable=False),
        sa.Column("open_to_public", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ingress_port", sa.Integer, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("destroyed_at", TS, nullable=True),
    )
    op.create_index("ix_endpoints_access_key", "endpoints", ["access_key"])
    op.create_index(
        "uq_endpoints_live_name",
        "endpoints",
        ["access_key", "name"],
        unique=True,
        sqlite_where=LIVE,
        postgresql_where=LIVE,
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "endpoint_id",
            sa.Uuid,
            sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("session_id", sa.Uuid, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_info", sa.Text, nullable=True),
        sa.Column("traffic_ratio", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_routes_endpoint_id", "routes", ["endpoint_id"])
    op.create_table(
        "endpoint_tokens",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(
            "endpoint_id",
            sa.Uuid,
            sa.ForeignKey("endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Uuid, nullable=False),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_endpoint_tokens_endpoint_id", "endpoint_tokens", ["endpoint_id"])


def downgrade() -> None:
    op.drop_table("endpoint_tokens")
    op.drop_table("routes")
    op.drop_index("uq_endpoints_live_name", "endpoints")
    op.drop_index("ix_endpoints_access_key", "endpoints")
    op.drop_table("endpoints")
