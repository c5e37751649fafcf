"""price_book, invoices, invoice_lines, credit_notes; leases.contract_price, leases.end_reason

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from backfill.store.types import Money, UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("contract_price", Money(), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.String(200), nullable=True))
    op.create_table(
        "price_book",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("item", sa.String(160), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("price", Money(), nullable=False),
        sa.Column("effective_from", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("note", sa.String(200), nullable=True),
        sa.Column("applied_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("product", "item", "dimension", "effective_from", name="uq_price_book"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("number", sa.String(40), nullable=True, unique=True),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("subtotal", Money(), nullable=False),
        sa.Column("credits", Money(), nullable=False),
        sa.Column("tax", Money(), nullable=True),
        sa.Column("total", Money(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("tenant_id", "period_start", name="uq_invoices_month"),
    )
    op.create_index("ix_invoices_tenant_id", "invoices", ["tenant_id"])
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.String(40), sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("product", sa.String(16), nullable=False),
        sa.Column("pool", sa.String(160), nullable=True),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("item", sa.String(160), nullable=True),
        sa.Column("dimension", sa.String(16), nullable=True),
        sa.Column("lease_id", sa.String(40), nullable=True),
        sa.Column("description", sa.String(300), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price", Money(), nullable=True),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
        sa.UniqueConstraint("invoice_id", "position"),
    )
    op.create_index("ix_invoice_lines_invoice_id", "invoice_lines", ["invoice_id"])
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("number", sa.String(40), nullable=False, unique=True),
        sa.Column("invoice_id", sa.String(40), sa.ForeignKey("invoices.id"), nullable=False),
        sa.Column("tenant_id", sa.String(40), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("line_position", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("invoice_id", "idempotency_key"),
    )
    op.create_index("ix_credit_notes_invoice_id", "credit_notes", ["invoice_id"])
    op.create_index("ix_credit_notes_tenant_id", "credit_notes", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("credit_notes")
    op.drop_table("invoice_lines")
    op.drop_table("invoices")
    op.drop_table("price_book")
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("end_reason")
        batch.drop_column("contract_price")
