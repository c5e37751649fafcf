"""deployments, rate_limits: models served behind the OpenAI-compatible gateway, and their limits

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backfill.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False, unique=True),
        sa.Column("engine", sa.String(16), nullable=False),
        sa.Column("weights", sa.String(1024), nullable=False),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(160), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("context_length", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_deployments_tenant_id", "deployments", ["tenant_id"])
    op.create_table(
        "rate_limits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.UniqueConstraint("tenant_id", "scope"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
    op.drop_table("deployments")
