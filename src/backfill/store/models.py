"""The tables. One class per thing the control plane remembers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backfill.store.types import Money, UTCDateTime


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    gpu_quota: Mapped[int | None] = mapped_column(Integer)
    """The most GPUs its leases may hold at once (every tier, running or waiting); None: no
    limit. The engine enforces it (Slurm: the account's GrpTRES)."""


class ApiKey(Base):
    """A key is shown once; only its SHA-256 is kept (keys are 256-bit random, not passwords)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_pool_tier_state", "pool", "tier", "state"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    tier: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str] = mapped_column(String(160))
    gpus: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    command: Mapped[str | None] = mapped_column(Text)
    duration: Mapped[int | None] = mapped_column(Integer)
    max_price: Mapped[Decimal | None] = mapped_column(Money())
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    stop_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    notice_reason: Mapped[str | None] = mapped_column(String(200))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    allocation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    contract_price: Mapped[Decimal | None] = mapped_column(Money())
    """Reserved: the price per GPU-hour it was signed at, billed for its whole period."""
    end_reason: Mapped[str | None] = mapped_column(String(200))
    """Why it ended, as the engine said (a node failure, the end of its notice)."""


class LeaseSegment(Base):
    """A stretch of a lease's running time at one price: usage is billed per segment, per second."""

    __tablename__ = "lease_segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    pool: Mapped[str] = mapped_column(String(160))
    tier: Mapped[str] = mapped_column(String(16))
    gpus: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money())
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    lease_id: Mapped[str] = mapped_column(ForeignKey("leases.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """The outbox: a webhook is recorded with the change that caused it, then sent (and retried)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(500))


class SpotPrice(Base):
    """The spot price of a pool from ``at`` until the next row: usage is priced from these."""

    __tablename__ = "spot_prices"

    pool: Mapped[str] = mapped_column(String(160), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    price: Mapped[Decimal] = mapped_column(Money())


class UsageEventRow(Base):
    """A usage event as received, once: ``(tenant_id, source, event_id)`` is its key, kept in
    the same row (so in the same transaction) as the event itself."""

    __tablename__ = "usage_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "source", "event_id", name="uq_usage_events_key"),
        Index("ix_usage_events_tenant_time", "tenant_id", "time"),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    source: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    time: Mapped[datetime] = mapped_column(UTCDateTime())
    key: Mapped[str] = mapped_column(String(160))
    units: Mapped[int] = mapped_column(BigInteger)
    units2: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[str] = mapped_column(Text)
    extensions: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Budget(Base):
    """What a tenant (``scope`` "tenant": its prepaid credit) or one of its API keys (``scope``
    the key's id: a cap its tenant set) may spend. ``held`` is reserved for work under way,
    ``spent`` settled; the rest is available. Changed only by conditional UPDATEs, so concurrent
    requests can never take more than is there."""

    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("tenant_id", "scope"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    scope: Mapped[str] = mapped_column(String(40))
    limit: Mapped[Decimal] = mapped_column(Money())
    held: Mapped[Decimal] = mapped_column(Money())
    spent: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CreditGrant(Base):
    """Prepaid credit the operator added to a tenant's budget (a payment, a promotion)."""

    __tablename__ = "credit_grants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SpendHold(Base):
    """Spend reserved before work starts, then settled at its real cost or released."""

    __tablename__ = "spend_holds"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_id: Mapped[str | None] = mapped_column(String(40))
    amount: Mapped[Decimal] = mapped_column(Money())
    state: Mapped[str] = mapped_column(String(16))
    settled_amount: Mapped[Decimal | None] = mapped_column(Money())
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PriceRow(Base):
    """A version of a price in the price book (``domain.pricebook``), in force from
    ``effective_from`` until the next version of the same price."""

    __tablename__ = "price_book"
    __table_args__ = (
        UniqueConstraint("product", "item", "dimension", "effective_from", name="uq_price_book"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product: Mapped[str] = mapped_column(String(16))
    item: Mapped[str] = mapped_column(String(160))
    dimension: Mapped[str] = mapped_column(String(16))
    price: Mapped[Decimal] = mapped_column(Money())
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(String(200))
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """GPU prices: when running leases' usage segments were cut at ``effective_from``."""


class Invoice(Base):
    """A tenant's bill for one calendar month (UTC): a draft until finalized, then immutable."""

    __tablename__ = "invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "period_start", name="uq_invoices_month"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(40), unique=True)
    """Given when finalized, in sequence: BF-YYYYMM-NNNNNN."""
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(Money())
    credits: Mapped[Decimal] = mapped_column(Money())
    """SLA credits (a positive amount taken off the subtotal)."""
    tax: Mapped[Decimal | None] = mapped_column(Money())
    """Left out: None until a tax engine fills it."""
    total: Mapped[Decimal] = mapped_column(Money())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finalized_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (UniqueConstraint("invoice_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    product: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str | None] = mapped_column(String(160))
    tier: Mapped[str | None] = mapped_column(String(16))
    item: Mapped[str | None] = mapped_column(String(160))
    dimension: Mapped[str | None] = mapped_column(String(16))
    lease_id: Mapped[str | None] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[Decimal | None] = mapped_column(Money())
    amount: Mapped[Decimal] = mapped_column(Money())
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CreditNote(Base):
    """A correction of a finalized invoice: the only way its amount changes after the fact."""

    __tablename__ = "credit_notes"
    __table_args__ = (UniqueConstraint("invoice_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money())
    reason: Mapped[str] = mapped_column(String(500))
    line_position: Mapped[int | None] = mapped_column(Integer)
    """The invoice line it corrects (None: the invoice as a whole)."""
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Deployment(Base):
    """A model served behind the OpenAI-compatible gateway: ``replicas`` engine servers, each a
    workload of ``gpus`` GPUs of ``pool`` at ``tier`` on the fleet."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), unique=True)
    """The name tenants ask for (``model`` in a request)."""
    engine: Mapped[str] = mapped_column(String(16))
    weights: Mapped[str] = mapped_column(String(1024))
    replicas: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))
    pool: Mapped[str] = mapped_column(String(160))
    gpus: Mapped[int] = mapped_column(Integer)
    context_length: Mapped[int] = mapped_column(Integer)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    """None: public, every tenant may use it; else private to that tenant."""
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateLimit(Base):
    """Requests and tokens per minute a tenant (``key_id`` None) or one of its keys may use."""

    __tablename__ = "rate_limits"
    __table_args__ = (UniqueConstraint("tenant_id", "scope"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    scope: Mapped[str] = mapped_column(String(40))
    """``tenant``, or the key's id."""
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
