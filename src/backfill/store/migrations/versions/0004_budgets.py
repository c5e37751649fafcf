"""budgets, credit_grants, spend_holds: prepaid credit, per-key caps, reserve-then-settle

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backfill.store.types import Money, UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("limit", Money(), nullable=False),
        sa.Column("held", Money(), nullable=False),
        sa.Column("spent", Money(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "scope"),
    )
    op.create_table(
        "credit_grants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_credit_grants_tenant_id", "credit_grants", ["tenant_id"])
    op.create_table(
        "spend_holds",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("settled_amount", Money(), nullable=True),
        sa.Column("description", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_spend_holds_tenant_id", "spend_holds", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("spend_holds")
    op.drop_table("credit_grants")
    op.drop_table("budgets")
