"""Invoice exports: CSV (one row per line and credit note) and the FinOps FOCUS format.

FOCUS (FinOps Open Cost and Usage Specification, 1.0 column names) lets a tenant's FinOps tools
read a Backfill bill next to its public-cloud bills: usage is ``ChargeCategory`` Usage, a
reservation's capacity Purchase (recurring, ``PricingCategory`` Committed), spot usage is priced
Dynamic, an SLA credit is Credit, and a credit note an Adjustment of ``ChargeClass`` Correction.
Backfill's own dimensions ride in ``x_``-prefixed columns, as the specification allows.
"""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from backfill.domain.pricebook import PER_PRICE_UNIT, PRICE_UNITS
from backfill.services.documents import _iso, _money, credit_note_document, line_document
from backfill.services.invoices import InvoiceView

FORMATS = ("json", "csv", "focus")
CSV_COLUMNS = (
    "invoice_id",
    "invoice_number",
    "position",
    "kind",
    "product",
    "description",
    "pool",
    "tier",
    "item",
    "dimension",
    "lease_id",
    "quantity",
    "unit",
    "unit_price",
    "price_unit",
    "amount",
    "period_start",
    "period_end",
)
FOCUS_COLUMNS = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_Kind",
    "x_Pool",
    "x_Tier",
)
_SERVICE = {
    "gpu": ("GPU leases", "Compute", "GPU lease"),
    "inference": ("Inference", "AI and Machine Learning", "Model"),
    "finetune": ("Fine-tuning", "AI and Machine Learning", "Model"),
    "tool": ("Agent tools", "Developer Tools", "Tool"),
}
_PRICING = {"on_demand": "Standard", "reserved": "Committed", "spot": "Dynamic"}
_UNIT_NAME = {"gpu_hour": "GPU-Hours", "1M_tokens": "Million Tokens", "call": "Calls"}
PLACES = Decimal("0.000001")


def to_csv(view: InvoiceView) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    invoice = view.invoice
    for line in view.lines:
        row = line_document(line)
        row.pop("evidence")
        writer.writerow({"invoice_id": invoice.id, "invoice_number": invoice.number, **row})
    for note in view.credit_notes:
        doc = credit_note_document(note)
        writer.writerow(
            {
                "invoice_id": invoice.id,
                "invoice_number": invoice.number,
                "position": note.line_position,
                "kind": "credit_note",
                "product": "",
                "description": f"Credit note {note.number}: {note.reason}",
                "amount": f"-{doc['amount']}",
                "period_start": _iso(invoice.period_start),
                "period_end": _iso(invoice.period_end),
            }
        )
    return out.getvalue()


def focus_rows(view: InvoiceView, *, issuer: str) -> list[dict[str, Any]]:
    """The invoice as FOCUS rows: one per line, one per credit note."""
    invoice = view.invoice
    common = {
        "BillingAccountId": invoice.tenant_id,
        "BillingAccountName": view.tenant_name,
        "BillingCurrency": invoice.currency,
        "BillingPeriodStart": _iso(invoice.period_start),
        "BillingPeriodEnd": _iso(invoice.period_end),
        "InvoiceId": invoice.number or invoice.id,
        "InvoiceIssuerName": issuer,
        "ProviderName": issuer,
        "PublisherName": issuer,
        "SubAccountId": invoice.tenant_id,
        "SubAccountName": view.tenant_name,
        "Tags": "{}",
    }
    rows = []
    for line in view.lines:
        service, category, resource_type = _SERVICE[line.product]
        quantity = (Decimal(line.quantity) / PER_PRICE_UNIT[line.product]).quantize(
            PLACES, rounding=ROUND_HALF_EVEN
        )
        unit = _UNIT_NAME[PRICE_UNITS[line.product]]
        region = line.pool.partition("/")[0] if line.pool else None
        sku = ":".join(p for p in (line.product, line.pool or line.item, line.dimension) if p)
        kind = line.kind
        rows.append(
            {
                **common,
                "BilledCost": str(line.amount),
                "EffectiveCost": str(line.amount),
                "ContractedCost": str(line.amount),
                "ListCost": str(line.amount),
                "ChargeCategory": {"usage": "Usage", "commitment": "Purchase"}.get(kind, "Credit"),
                "ChargeClass": None,
                "ChargeDescription": line.description,
                "ChargeFrequency": "Recurring" if kind == "commitment" else "Usage-Based",
                "ChargePeriodStart": _iso(line.period_start),
                "ChargePeriodEnd": _iso(line.period_end),
                "ConsumedQuantity": str(quantity) if kind != "sla_credit" else None,
                "ConsumedUnit": unit if kind != "sla_credit" else None,
                "PricingQuantity": str(quantity) if kind != "sla_credit" else None,
                "PricingUnit": unit if kind != "sla_credit" else None,
                "ContractedUnitPrice": _money(line.unit_price),
                "ListUnitPrice": _money(line.unit_price),
                "PricingCategory": _PRICING.get(line.tier or "", "Standard")
                if kind != "sla_credit"
                else None,
                "RegionId": region,
                "RegionName": region,
                "ResourceId": line.lease_id or line.item or line.pool,
                "ResourceName": line.lease_id or line.item or line.pool,
                "ResourceType": resource_type,
                "ServiceCategory": category,
                "ServiceName": service,
                "SkuId": sku,
                "SkuPriceId": f"{sku}@{line.unit_price}" if line.unit_price is not None else None,
                "x_Kind": kind,
                "x_Pool": line.pool,
                "x_Tier": line.tier,
            }
        )
    for note in view.credit_notes:
        rows.append(
            {
                **common,
                "BilledCost": f"-{note.amount}",
                "EffectiveCost": f"-{note.amount}",
                "ContractedCost": f"-{note.amount}",
                "ListCost": f"-{note.amount}",
                "ChargeCategory": "Adjustment",
                "ChargeClass": "Correction",
                "ChargeDescription": f"Credit note {note.number}: {note.reason}",
                "ChargeFrequency": "One-Time",
                "ChargePeriodStart": _iso(invoice.period_start),
                "ChargePeriodEnd": _iso(invoice.period_end),
                "ServiceName": "Billing",
                "ServiceCategory": "Other",
                "x_Kind": "credit_note",
            }
        )
    return [{column: row.get(column) for column in FOCUS_COLUMNS} for row in rows]


def to_focus_csv(view: InvoiceView, *, issuer: str) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(focus_rows(view, issuer=issuer))
    return out.getvalue()
