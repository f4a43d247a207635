"""Virtual folders.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
USER_OWNED = sa.text("ownership_type = 'user'")
GROUP_OWNED = sa.text("ownership_type = 'group'")


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("host", sa.String(64), nullable=False),
        sa.Column("domain_name", sa.String(64), nullable=False),
        sa.Column("ownership_type", sa.String(16), nullable=False),
        sa.Column(
            "user_id", sa.Uuid, sa.ForeignKey("users.uuid", ondelete="CASCADE"), nullable=True
        ),
        sa.Column(
            "group_id", sa.Uuid, sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("creator", sa.String(128), nullable=False),
        sa.Column("usage_mode", sa.String(16), nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("quota", sa.BigInteger, nullable=False),
        sa.Column("cloneable", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used", TS, nullable=True),
    )
    op.create_index("ix_vfolders_user_id", "vfolders", ["user_id"])
    op.create_index("ix_vfolders_group_id", "vfolders", ["group_id"])
    op.create_index(
        "uq_vfolders_user_name",
        "vfolders",
        ["user_id", "name"],
        unique=True,
        sqlite_where=USER_OWNED,
        postgresql_where=USER_OWNED,
    )
    op.create_index(
        "uq_vfolders_group_name",
        "vfolders",
        ["group_id", "name"],
        unique=True,
        sqlite_where=GROUP_OWNED,
        postgresql_where=GROUP_OWNED,
    )


def downgrade() -> None:
    op.drop_index("uq_vfolders_group_name", "vfolders")
    op.drop_index("uq_vfolders_user_name", "vfolders")
    op.drop_index("ix_vfolders_group_id", "vfolders")
    op.drop_index("ix_vfolders_user_id", "vfolders")
    op.drop_table("vfolders")
