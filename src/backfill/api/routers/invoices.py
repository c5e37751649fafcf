"""The price book and invoices: tenants read theirs; the operator prices, drafts, finalizes and
corrects."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Header, Query, Response, status

from backfill.api.auth import context, operator, tenant_id
from backfill.api.invoice_schemas import (
    CreditNoteCreate,
    CreditNoteRead,
    InvoiceDraft,
    InvoiceList,
    InvoiceRead,
    PriceList,
    PriceRead,
    PriceSet,
)
from backfill.domain.pricebook import PRICE_UNITS, PriceVersion
from backfill.services import exports
from backfill.services import invoices as invoice_service
from backfill.services import pricebook as price_service
from backfill.services.context import Context
from backfill.services.documents import credit_note_document, invoice_document
from backfill.services.invoices import InvoiceView

router = APIRouter(tags=["billing"])
admin = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])
Format = Literal["json", "csv", "focus"]


def invoice_read(view: InvoiceView) -> InvoiceRead:
    return InvoiceRead.model_validate(invoice_document(view))


def price_read(version: PriceVersion) -> PriceRead:
    return PriceRead(
        product=version.product,
        item=version.item,
        dimension=version.dimension,
        price=version.price,
        unit=PRICE_UNITS[version.product],
        effective_from=version.effective_from,
    )


def export(ctx: Context, view: InvoiceView, format: Format) -> Response:
    name = view.invoice.number or view.invoice.id
    if format == "json":
        return Response(invoice_read(view).model_dump_json(), media_type="application/json")
    body = (
        exports.to_csv(view)
        if format == "csv"
        else exports.to_focus_csv(view, issuer=ctx.engine.fleet().name)
    )
    suffix = "focus.csv" if format == "focus" else "csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.{suffix}"'},
    )


@router.get("/v1/prices", response_model=PriceList)
def list_prices(
    product: Literal["gpu", "inference", "finetune", "tool"] | None = None,
    ctx: Context = Depends(context),
    _: str = Depends(tenant_id),
) -> PriceList:
    """The price book: every price and its versions, scheduled ones included."""
    return PriceList(data=[price_read(v) for v in price_service.versions(ctx, product=product)])


@router.get("/v1/invoices", response_model=InvoiceList)
def list_invoices(ctx: Context = Depends(context), tenant: str = Depends(tenant_id)) -> InvoiceList:
    """Your invoices, newest month first."""
    return InvoiceList(
        data=[invoice_read(v) for v in invoice_service.get_all(ctx, tenant_id=tenant)]
    )


@router.get("/v1/invoices/{invoice_id}", response_model=InvoiceRead)
def get_invoice(
    invoice_id: str, ctx: Context = Depends(context), tenant: str = Depends(tenant_id)
) -> InvoiceRead:
    return invoice_read(invoice_service.get(ctx, invoice_id=invoice_id, tenant_id=tenant))


@router.get("/v1/invoices/{invoice_id}/export")
def export_invoice(
    invoice_id: str,
    format: Format = Query("csv"),
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
) -> Response:
    """The invoice as ``json``, ``csv`` or FinOps ``focus`` (CSV with FOCUS 1.0 columns)."""
    return export(ctx, invoice_service.get(ctx, invoice_id=invoice_id, tenant_id=tenant), format)


@admin.post("/prices", response_model=PriceRead, status_code=status.HTTP_201_CREATED)
def set_price(body: PriceSet, ctx: Context = Depends(context)) -> PriceRead:
    """Schedule a price from ``effective_from`` (default now; never in the past)."""
    row = price_service.set_price(ctx, **body.model_dump())
    return price_read(
        PriceVersion(row.product, row.item, row.dimension, row.price, row.effective_from)
    )


@admin.post("/invoices", response_model=InvoiceList, status_code=status.HTTP_201_CREATED)
def draft_invoices(body: InvoiceDraft, ctx: Context = Depends(context)) -> InvoiceList:
    """Draft (or draft again) the month's invoice of one tenant, or of every tenant."""
    if body.tenant_id is not None:
        views = [invoice_service.draft(ctx, tenant_id=body.tenant_id, month=body.month)]
    else:
        views = invoice_service.draft_all(ctx, month=body.month)
    return InvoiceList(data=[invoice_read(v) for v in views])


@admin.get("/invoices", response_model=InvoiceList)
def all_invoices(
    month: str | None = Query(None, pattern=r"^\d{4}-\d{2}$"),
    tenant_id: str | None = Query(None, max_length=40),
    ctx: Context = Depends(context),
) -> InvoiceList:
    views = invoice_service.get_all(ctx, tenant_id=tenant_id, month=month)
    return InvoiceList(data=[invoice_read(v) for v in views])


@admin.get("/invoices/{invoice_id}", response_model=InvoiceRead)
def admin_invoice(invoice_id: str, ctx: Context = Depends(context)) -> InvoiceRead:
    return invoice_read(invoice_service.get(ctx, invoice_id=invoice_id))


@admin.get("/invoices/{invoice_id}/export")
def admin_export(
    invoice_id: str, format: Format = Query("csv"), ctx: Context = Depends(context)
) -> Response:
    return export(ctx, invoice_service.get(ctx, invoice_id=invoice_id), format)


@admin.post("/invoices/{invoice_id}/finalize", response_model=InvoiceRead)
def finalize_invoice(invoice_id: str, ctx: Context = Depends(context)) -> InvoiceRead:
    """Number and freeze a draft once its month is over; from then on only credit notes."""
    return invoice_read(invoice_service.finalize(ctx, invoice_id=invoice_id))


@admin.post(
    "/invoices/{invoice_id}/credit-notes",
    response_model=CreditNoteRead,
    status_code=status.HTTP_201_CREATED,
)
def create_credit_note(
    invoice_id: str,
    body: CreditNoteCreate,
    ctx: Context = Depends(context),
    idempotency_key: str | None = Header(None, max_length=255, min_length=1),
) -> CreditNoteRead:
    """Correct a finalized invoice (or one of its lines) by an amount, saying why. Retry with
    the same ``Idempotency-Key`` to get the same credit note back."""
    note = invoice_service.credit_note(
        ctx,
        invoice_id=invoice_id,
        amount=body.amount,
        reason=body.reason,
        line_position=body.line_position,
        idempotency_key=idempotency_key,
    )
    return CreditNoteRead.model_validate(credit_note_document(note))
