"""usage_events: CloudEvents usage, each (tenant, source, id) stored once

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backfill.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("source", sa.String(255), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(128), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("units2", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("extensions", sa.Text(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "source", "event_id", name="uq_usage_events_key"),
    )
    op.create_index("ix_usage_events_tenant_time", "usage_events", ["tenant_id", "time"])


def downgrade() -> None:
    op.drop_index("ix_usage_events_tenant_time", "usage_events")
    op.drop_table("usage_events")
