"""The JSON documents a tenant sees: the API answers and the webhook bodies are the same."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backfill.domain.pricebook import BASE_UNITS, PRICE_UNITS
from backfill.domain.rating import shown
from backfill.store.models import CreditNote, InvoiceLine, Lease

if TYPE_CHECKING:
    from backfill.services.invoices import InvoiceView


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def lease_document(lease: Lease) -> dict[str, Any]:
    region, _, accelerator = lease.pool.partition("/")
    notice = None
    if lease.notice_at is not None:
        notice = {
            "notice_at": _iso(lease.notice_at),
            "stop_at": _iso(lease.stop_at),
            "reason": lease.notice_reason,
        }
    return {
        "id": lease.id,
        "object": "lease",
        "tenant_id": lease.tenant_id,
        "tier": lease.tier,
        "pool": lease.pool,
        "region": region,
        "accelerator": accelerator,
        "gpus": lease.gpus,
        "state": lease.state,
        "command": lease.command,
        "duration": lease.duration,
        "max_price": str(lease.max_price) if lease.max_price is not None else None,
        "start": _iso(lease.start_at),
        "end": _iso(lease.end_at),
        "created_at": _iso(lease.created_at),
        "started_at": _iso(lease.started_at),
        "ended_at": _iso(lease.ended_at),
        "notice": notice,
        "exit_code": lease.exit_code,
        "end_reason": lease.end_reason,
        "allocation": lease.allocation or {},
    }


def _money(value: Decimal | None) -> str | None:
    """An amount as a string: to the cent at least, to the micro-unit where it has them."""
    return shown(value) if value is not None else None


def invoice_document(view: InvoiceView) -> dict[str, Any]:
    """An invoice as the tenant sees it: lines grouped by product, credits, credit notes."""
    invoice = view.invoice
    return {
        "id": invoice.id,
        "object": "invoice",
        "number": invoice.number,
        "tenant_id": invoice.tenant_id,
        "tenant_name": view.tenant_name,
        "status": invoice.status,
        "currency": invoice.currency,
        "period_start": _iso(invoice.period_start),
        "period_end": _iso(invoice.period_end),
        "subtotal": _money(invoice.subtotal),
        "sla_credits": _money(invoice.credits),
        "tax": _money(invoice.tax),
        "total": _money(invoice.total),
        "credited": _money(view.credited),
        "amount_due": _money(view.amount_due),
        "created_at": _iso(invoice.created_at),
        "updated_at": _iso(invoice.updated_at),
        "finalized_at": _iso(invoice.finalized_at),
        "products": _by_product(view.lines),
        "lines": [line_document(line) for line in view.lines],
        "credit_notes": [credit_note_document(note) for note in view.credit_notes],
    }


def line_document(line: InvoiceLine) -> dict[str, Any]:
    return {
        "position": line.position,
        "kind": line.kind,
        "product": line.product,
        "description": line.description,
        "pool": line.pool,
        "tier": line.tier,
        "item": line.item,
        "dimension": line.dimension,
        "lease_id": line.lease_id,
        "quantity": line.quantity,
        "unit": BASE_UNITS[line.product],
        "unit_price": _money(line.unit_price),
        "price_unit": PRICE_UNITS[line.product],
        "amount": _money(line.amount),
        "period_start": _iso(line.period_start),
        "period_end": _iso(line.period_end),
        "evidence": line.evidence,
    }


def credit_note_document(note: CreditNote) -> dict[str, Any]:
    return {
        "id": note.id,
        "object": "credit_note",
        "number": note.number,
        "invoice_id": note.invoice_id,
        "tenant_id": note.tenant_id,
        "amount": _money(note.amount),
        "reason": note.reason,
        "line_position": note.line_position,
        "created_at": _iso(note.created_at),
    }


def _by_product(lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    totals: dict[str, Decimal] = {}
    for line in lines:
        if line.amount >= 0:
            totals[line.product] = totals.get(line.product, Decimal(0)) + line.amount
    return [{"product": product, "amount": str(amount)} for product, amount in totals.items()]
