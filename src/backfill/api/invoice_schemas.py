"""Bodies of the price book and invoice routes. Money is a decimal string; times RFC 3339 UTC."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from backfill.api.schemas import Price, Strict

Month = Annotated[str, Field(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM (UTC)")]
Amount = Annotated[Decimal, Field(gt=0, le=1_000_000_000, max_digits=16, decimal_places=6)]


class PriceSet(Strict):
    product: Literal["gpu", "inference", "finetune", "tool"]
    item: str = Field(min_length=1, max_length=160, description="the pool, model or tool")
    dimension: str = Field(
        min_length=1,
        max_length=16,
        description="gpu: on_demand|reserved|spot_floor; inference: input|output; "
        "finetune: tokens; tool: calls",
    )
    price: Price = Field(description="per GPU-hour, per million tokens, or per call")
    effective_from: AwareDatetime | None = Field(None, description="default: now; never past")
    note: str | None = Field(None, max_length=200)


class PriceRead(BaseModel):
    object: Literal["price"] = "price"
    product: str
    item: str
    dimension: str
    price: Decimal
    unit: str
    effective_from: datetime | None = Field(description="null: the fleet file's list price")


class PriceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[PriceRead]


class InvoiceLineRead(BaseModel):
    position: int
    kind: Literal["usage", "commitment", "sla_credit"]
    product: str
    description: str
    pool: str | None
    tier: str | None
    item: str | None
    dimension: str | None
    lease_id: str | None
    quantity: int = Field(description="in base units: GPU-seconds, tokens or calls")
    unit: str
    unit_price: Decimal | None = Field(description="per price_unit; null when it varied (spot)")
    price_unit: str
    amount: Decimal
    period_start: datetime
    period_end: datetime
    evidence: dict[str, Any] | None = Field(description="SLA credits: the interruptions")


class CreditNoteRead(BaseModel):
    id: str
    object: Literal["credit_note"] = "credit_note"
    number: str
    invoice_id: str
    tenant_id: str
    amount: Decimal
    reason: str
    line_position: int | None
    created_at: datetime


class ProductTotal(BaseModel):
    product: str
    amount: Decimal


class InvoiceRead(BaseModel):
    id: str
    object: Literal["invoice"] = "invoice"
    number: str | None
    tenant_id: str
    tenant_name: str
    status: Literal["draft", "finalized"]
    currency: str
    period_start: datetime
    period_end: datetime
    subtotal: Decimal
    sla_credits: Decimal
    tax: Decimal | None = Field(description="left out: null until a tax engine fills it")
    total: Decimal
    credited: Decimal = Field(description="the sum of its credit notes")
    amount_due: Decimal
    created_at: datetime
    updated_at: datetime
    finalized_at: datetime | None
    products: list[ProductTotal]
    lines: list[InvoiceLineRead]
    credit_notes: list[CreditNoteRead]


class InvoiceList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InvoiceRead]


class InvoiceDraft(Strict):
    month: Month
    tenant_id: str | None = Field(None, max_length=40, description="default: every tenant")


class CreditNoteCreate(Strict):
    amount: Amount
    reason: str = Field(min_length=1, max_length=500)
    line_position: int | None = Field(None, ge=1, description="the line it corrects, if one")
