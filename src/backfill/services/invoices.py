"""Invoices: one per tenant per calendar month (UTC), draft → finalized, corrected by credit notes.

A **draft** is the month's rating (``services.rating``) written down: charges grouped by product,
the month's SLA credits with their evidence, taxes left out (``tax`` stays null for a tax engine
to fill). Making the draft again rates the month again. **Finalizing** it — only once the month
is over — gives it a number and freezes it: nothing changes a finalized invoice, and usage events
timed inside its month are refused from then on (the sender hears why; nothing is dropped
silently). A **credit note** is the only correction: it names the invoice (and the line) it
corrects, and all of an invoice's credit notes never exceed what it billed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.domain.rating import LineItem
from backfill.errors import Conflict, IdempotencyKeyReused, InvalidRequest, NotFound
from backfill.services import rating
from backfill.services.budgets import check_amount
from backfill.services.context import Context
from backfill.services.ids import new_id
from backfill.services.sync import sync
from backfill.services.tenants import existing
from backfill.store.models import CreditNote, Invoice, InvoiceLine, Tenant

CURRENCY = "USD"
DRAFT, FINALIZED = "draft", "finalized"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
PRODUCT_ORDER = {"gpu": 0, "inference": 1, "finetune": 2, "tool": 3}


@dataclass(frozen=True)
class InvoiceView:
    invoice: Invoice
    tenant_name: str
    lines: list[InvoiceLine]
    credit_notes: list[CreditNote]

    @property
    def credited(self) -> Decimal:
        return sum((note.amount for note in self.credit_notes), Decimal(0))

    @property
    def amount_due(self) -> Decimal:
        """The total less its credit notes."""
        return self.invoice.total - self.credited


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → the month's ``[start, end)`` in UTC."""
    found = _MONTH.match(month)
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1970:
        raise InvalidRequest(f"a month is YYYY-MM, not {month[:20]!r}", field="month")
    year, number = int(found.group(1)), int(found.group(2))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def draft(ctx: Context, *, tenant_id: str, month: str) -> InvoiceView:
    """Make (or make again) the tenant's draft invoice for ``month`` from its rated usage."""
    start, end = month_bounds(month)
    sync(ctx)
    now = ctx.engine_now()
    if start >= now:
        raise InvalidRequest(f"{month} has not begun: nothing to bill yet", field="month")
    with ctx.lock, ctx.unit_of_work() as session:
        existing(session, tenant_id)
        invoice = _by_month(session, tenant_id, start)
        if invoice is not None and invoice.status == FINALIZED:
            raise Conflict(
                f"invoice {invoice.number} for {month} is finalized and cannot change: "
                "correct it with a credit note",
                field="month",
            )
        rated = rating.rate_in(ctx, session, since=start, until=min(end, now), tenant_id=tenant_id)
        if invoice is None:
            invoice = Invoice(
                id=new_id("inv"),
                tenant_id=tenant_id,
                period_start=start,
                period_end=end,
                status=DRAFT,
                currency=CURRENCY,
                created_at=now,
            )
            session.add(invoice)
        else:
            session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id == invoice.id))
        charges = sorted(rated.charges, key=lambda line: PRODUCT_ORDER[line.product])
        for position, line in enumerate(charges + rated.credits, start=1):
            session.add(_line(invoice.id, position, line))
        invoice.subtotal = sum((c.amount for c in charges), Decimal(0))
        invoice.credits = -sum((c.amount for c in rated.credits), Decimal(0))
        invoice.tax = None
        invoice.total = invoice.subtotal - invoice.credits
        invoice.updated_at = now
        try:
            session.commit()
        except IntegrityError:
            raise Conflict("the invoice was drafted at the same time; try again") from None
        return _view(session, invoice)


def draft_all(ctx: Context, *, month: str) -> list[InvoiceView]:
    """Draft ``month`` for every tenant that has something billed in it (finalized ones are
    left as they are)."""
    start, _ = month_bounds(month)
    with ctx.unit_of_work() as session:
        tenants = list(session.scalars(select(Tenant.id).order_by(Tenant.created_at, Tenant.id)))
        done = {
            invoice.tenant_id
            for invoice in session.scalars(
                select(Invoice).where(Invoice.period_start == start, Invoice.status == FINALIZED)
            )
        }
    drafts = []
    for tenant_id in tenants:
        if tenant_id in done:
            continue
        view = draft(ctx, tenant_id=tenant_id, month=month)
        if view.lines:
            drafts.append(view)
        else:
            _discard(ctx, view.invoice.id)
    return drafts


def _discard(ctx: Context, invoice_id: str) -> None:
    """Drop an empty draft: nothing to bill, nothing to send."""
    with ctx.lock, ctx.unit_of_work() as session:
        session.execute(delete(Invoice).where(Invoice.id == invoice_id, Invoice.status == DRAFT))
        session.commit()


def finalize(ctx: Context, *, invoice_id: str) -> InvoiceView:
    """Number and freeze a draft. Idempotent; refused until its month is over."""
    sync(ctx)
    now = ctx.engine_now()
    with ctx.lock, ctx.unit_of_work() as session:
        invoice = _get(session, invoice_id)
        if invoice.status == FINALIZED:
            return _view(session, invoice)
        if now < invoice.period_end:
            raise Conflict(
                f"the month ends at {invoice.period_end.isoformat()}: usage may still come",
                field="invoice_id",
            )
        done = session.scalar(
            select(func.count()).where(
                Invoice.period_start == invoice.period_start, Invoice.status == FINALIZED
            )
        )
        invoice.number = f"BF-{invoice.period_start:%Y%m}-{int(done or 0) + 1:06d}"
        invoice.status = FINALIZED
        invoice.finalized_at = now
        try:
            session.commit()
        except IntegrityError:
            raise Conflict("another invoice was numbered at the same time; try again") from None
        return _view(session, invoice)


def credit_note(
    ctx: Context,
    *,
    invoice_id: str,
    amount: Decimal,
    reason: str,
    line_position: int | None = None,
    idempotency_key: str | None = None,
) -> CreditNote:
    """Correct a finalized invoice by ``amount`` (of one line, or of the whole). The same
    ``idempotency_key`` and request give the same note back, never a second one."""
    check_amount(amount, "amount")
    if not 1 <= len(reason.strip()) <= 500:
        raise InvalidRequest("say why, in 1..500 characters", field="reason")
    with ctx.lock, ctx.unit_of_work() as session:
        invoice = _get(session, invoice_id)
        if idempotency_key is not None:
            earlier = session.scalar(
                select(CreditNote).where(
                    CreditNote.invoice_id == invoice.id,
                    CreditNote.idempotency_key == idempotency_key,
                )
            )
            if earlier is not None:
                same = (earlier.amount, earlier.reason, earlier.line_position)
                if same != (amount, reason.strip(), line_position):
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request",
                        field="Idempotency-Key",
                    )
                return earlier
        if invoice.status != FINALIZED:
            raise Conflict(
                "a draft is corrected by drafting it again; credit notes correct finalized "
                "invoices",
                field="invoice_id",
            )
        notes = _notes(session, invoice.id)
        room = invoice.total - sum((n.amount for n in notes), Decimal(0))
        if line_position is not None:
            line = session.scalar(
                select(InvoiceLine).where(
                    InvoiceLine.invoice_id == invoice.id, InvoiceLine.position == line_position
                )
            )
            if line is None or line.amount <= 0:
                raise InvalidRequest(
                    f"invoice {invoice.number} has no charge at line {line_position}",
                    field="line_position",
                )
            on_line = sum((n.amount for n in notes if n.line_position == line_position), Decimal(0))
            room = min(room, line.amount - on_line)
        if amount > room:
            raise InvalidRequest(
                f"credit notes cannot exceed what was billed: {max(room, Decimal(0))} is left "
                "to credit",
                field="amount",
            )
        count = session.scalar(select(func.count()).select_from(CreditNote))
        note = CreditNote(
            id=new_id("cn"),
            number=f"CN-{int(count or 0) + 1:06d}",
            invoice_id=invoice.id,
            tenant_id=invoice.tenant_id,
            amount=amount,
            reason=reason.strip(),
            line_position=line_position,
            idempotency_key=idempotency_key,
            created_at=ctx.engine_now(),
        )
        session.add(note)
        try:
            session.commit()
        except IntegrityError:
            raise Conflict("another credit note was numbered at the same time; try again") from None
        return note


def get(ctx: Context, *, invoice_id: str, tenant_id: str | None = None) -> InvoiceView:
    """One invoice; a tenant asking for another's gets NotFound."""
    with ctx.unit_of_work() as session:
        invoice = _get(session, invoice_id)
        if tenant_id is not None and invoice.tenant_id != tenant_id:
            raise NotFound(f"no invoice {invoice_id!r}")
        return _view(session, invoice)


def get_all(
    ctx: Context, *, tenant_id: str | None = None, month: str | None = None
) -> list[InvoiceView]:
    with ctx.unit_of_work() as session:
        query = select(Invoice)
        if tenant_id is not None:
            query = query.where(Invoice.tenant_id == tenant_id)
        if month is not None:
            query = query.where(Invoice.period_start == month_bounds(month)[0])
        rows = session.scalars(query.order_by(Invoice.period_start.desc(), Invoice.id))
        return [_view(session, invoice) for invoice in rows]


def closed_until(session: Session, tenants: set[str]) -> dict[str, datetime]:
    """Per tenant, the end of its last finalized month: usage before it can no longer be
    billed, so events timed before it are refused."""
    if not tenants:
        return {}
    rows = session.execute(
        select(Invoice.tenant_id, func.max(Invoice.period_end))
        .where(Invoice.tenant_id.in_(sorted(tenants)), Invoice.status == FINALIZED)
        .group_by(Invoice.tenant_id)
    ).all()
    return {tenant: end for tenant, end in rows}


def _line(invoice_id: str, position: int, line: LineItem) -> InvoiceLine:
    return InvoiceLine(
        invoice_id=invoice_id,
        position=position,
        kind=line.kind,
        product=line.product,
        pool=line.pool,
        tier=line.tier,
        item=line.item,
        dimension=line.dimension,
        lease_id=line.lease_id,
        description=line.description[:300],
        quantity=line.quantity,
        unit_price=line.unit_price,
        amount=line.amount,
        period_start=line.period_start,
        period_end=line.period_end,
        evidence=dict(line.evidence) if line.evidence is not None else None,
    )


def _by_month(session: Session, tenant_id: str, start: datetime) -> Invoice | None:
    return session.scalar(
        select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.period_start == start)
    )


def _get(session: Session, invoice_id: str) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id!r}")
    return invoice


def _notes(session: Session, invoice_id: str) -> list[CreditNote]:
    return list(
        session.scalars(
            select(CreditNote)
            .where(CreditNote.invoice_id == invoice_id)
            .order_by(CreditNote.created_at, CreditNote.number)
        )
    )


def _view(session: Session, invoice: Invoice) -> InvoiceView:
    lines = session.scalars(
        select(InvoiceLine)
        .where(InvoiceLine.invoice_id == invoice.id)
        .order_by(InvoiceLine.position)
    )
    tenant = session.get(Tenant, invoice.tenant_id)
    return InvoiceView(
        invoice=invoice,
        tenant_name=tenant.name if tenant is not None else invoice.tenant_id,
        lines=list(lines),
        credit_notes=_notes(session, invoice.id),
    )
