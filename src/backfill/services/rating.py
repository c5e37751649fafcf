"""Rating over a window: lease segments, reservations and usage events → priced line items.

The arithmetic is ``domain.rating`` and ``domain.sla``; this module reads what they need in one
session. Windows are ``[since, until)``, capped at the engine's now (the future is not billed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backfill.domain.pricebook import DIMENSIONS, EVENT_PRODUCT, PriceBook
from backfill.domain.rating import (
    SLA_CREDIT,
    Contract,
    LineItem,
    Segment,
    UnitTotal,
    lease_charges,
    rate_contracts,
    rate_gpu,
    rate_units,
    shown,
)
from backfill.domain.sla import POLICIES, LeaseRun, availability, credit
from backfill.services import pricebook
from backfill.services.context import Context
from backfill.services.sync import sync
from backfill.store.models import Lease, LeaseSegment, UsageEventRow


@dataclass(frozen=True)
class Rated:
    """A window's charges and the SLA credits earned in it."""

    since: datetime
    until: datetime
    charges: list[LineItem]
    credits: list[LineItem]


def rate(
    ctx: Context, *, since: datetime, until: datetime, tenant_id: str | None = None
) -> list[LineItem]:
    """Every charge within ``[since, until)``, of one tenant or (None) of all."""
    sync(ctx)
    until = min(until, ctx.engine_now())
    with ctx.unit_of_work() as session:
        rated = rate_in(ctx, session, since=since, until=until, tenant_id=tenant_id, credits=False)
        return rated.charges


def rate_in(
    ctx: Context,
    session: Session,
    *,
    since: datetime,
    until: datetime,
    tenant_id: str | None,
    credits: bool = True,
) -> Rated:
    """The charges within ``[since, until)`` and the SLA credits earned there, inside the
    caller's unit of work (no sync, no cap at now); without the credits (each lease's
    availability) when ``credits`` is false."""
    if until <= since:
        return Rated(since, max(since, until), [], [])
    leases = _leases(session, since, until, tenant_id)
    contracts = [
        Contract(
            lease_id=lease.id,
            tenant_id=lease.tenant_id,
            pool=lease.pool,
            gpus=lease.gpus,
            price=lease.contract_price,
            start=lease.start_at,
            end=lease.end_at,
        )
        for lease in leases
        if lease.tier == "reserved"
        and lease.contract_price is not None
        and lease.start_at is not None
        and lease.end_at is not None
    ]
    signed = {c.lease_id for c in contracts}
    segments = [s for s in _segments(session, since, until, tenant_id) if s.lease_id not in signed]
    book = pricebook.book(session, ctx.engine.fleet())
    totals = _unit_totals(session, book, since, until, tenant_id)
    charges = (
        rate_gpu(segments, since, until)
        + rate_contracts(contracts, since, until)
        + rate_units(totals, since, until)
    )
    if not credits:
        return Rated(since, until, charges, [])
    charged = lease_charges(segments, contracts, since, until)
    return Rated(since, until, charges, _sla_credits(leases, charged, since, until))


def _leases(
    session: Session, since: datetime, until: datetime, tenant_id: str | None
) -> list[Lease]:
    """Leases that could have run or been promised within the window."""
    query = select(Lease).where(
        Lease.created_at < until,
        (Lease.ended_at.is_(None)) | (Lease.ended_at > since) | (Lease.end_at > since),
    )
    if tenant_id is not None:
        query = query.where(Lease.tenant_id == tenant_id)
    return list(session.scalars(query.order_by(Lease.created_at, Lease.id)))


def _segments(
    session: Session, since: datetime, until: datetime, tenant_id: str | None
) -> list[Segment]:
    query = select(LeaseSegment).where(
        LeaseSegment.started_at < until,
        (LeaseSegment.ended_at.is_(None)) | (LeaseSegment.ended_at > since),
    )
    if tenant_id is not None:
        query = query.where(LeaseSegment.tenant_id == tenant_id)
    return [
        Segment(
            lease_id=s.lease_id,
            tenant_id=s.tenant_id,
            pool=s.pool,
            tier=s.tier,
            gpus=s.gpus,
            price=s.price,
            started_at=s.started_at,
            ended_at=s.ended_at,
        )
        for s in session.scalars(query.order_by(LeaseSegment.id))
    ]


def _unit_totals(
    session: Session, book: PriceBook, since: datetime, until: datetime, tenant_id: str | None
) -> list[UnitTotal]:
    """Metered units per tenant, item and dimension, cut where the item's price changes."""
    out: list[UnitTotal] = []
    for tenant, kind, key, units, units2 in _sums(session, since, until, tenant_id, None):
        product = EVENT_PRODUCT[kind]
        cuts = book.changes(product, key, since, until)
        if not cuts:
            out += _priced(book, tenant, product, key, since, (units, units2))
            continue
        bounds = [since, *cuts, until]
        for lo, hi in pairwise(bounds):
            for _, _, _, part, part2 in _sums(session, lo, hi, tenant, (kind, key)):
                out += _priced(book, tenant, product, key, lo, (part, part2))
    return out


def _sums(
    session: Session,
    since: datetime,
    until: datetime,
    tenant_id: str | None,
    only: tuple[str, str] | None,
) -> list[tuple[str, str, str, int, int]]:
    e = UsageEventRow
    query = select(e.tenant_id, e.type, e.key, func.sum(e.units), func.sum(e.units2)).where(
        e.time >= since, e.time < until
    )
    if tenant_id is not None:
        query = query.where(e.tenant_id == tenant_id)
    if only is not None:
        query = query.where(e.type == only[0], e.key == only[1])
    rows = session.execute(query.group_by(e.tenant_id, e.type, e.key)).all()
    return [(t, k, key, int(u or 0), int(u2 or 0)) for t, k, key, u, u2 in rows]


def _priced(
    book: PriceBook, tenant: str, product: str, item: str, at: datetime, units: tuple[int, int]
) -> list[UnitTotal]:
    return [
        UnitTotal(
            tenant_id=tenant,
            product=product,
            item=item,
            dimension=dimension,
            units=count,
            price=book.price_at(product, item, dimension, at),
        )
        for dimension, count in zip(DIMENSIONS[product], units, strict=False)
    ]


def _sla_credits(
    leases: list[Lease], charged: dict[str, Decimal], since: datetime, until: datetime
) -> list[LineItem]:
    """A credit line per lease whose availability in the window fell below its tier's promise,
    with the evidence: the window, each interruption, the availability and the step."""
    lines = []
    for lease in leases:
        measured = availability(_run(lease), since, until)
        if measured is None or not measured.interruptions:
            continue
        base = charged.get(lease.id, Decimal(0))
        percent, value = credit(measured, base)
        if value == 0:
            continue
        lines.append(
            LineItem(
                tenant_id=lease.tenant_id,
                product="gpu",
                kind=SLA_CREDIT,
                pool=lease.pool,
                tier=lease.tier,
                item=None,
                dimension=lease.tier,
                quantity=measured.downtime_seconds * lease.gpus,
                unit_price=None,
                amount=-value,
                period_start=measured.window_start,
                period_end=measured.window_end,
                description=(
                    f"SLA credit, {lease.tier} lease {lease.id}: {measured.percent} % available "
                    f"(promised {POLICIES[lease.tier].target} %), {percent} % of its "
                    f"{shown(base)} back"
                ),
                lease_id=lease.id,
                evidence={
                    "lease_id": lease.id,
                    "tier": lease.tier,
                    "pool": lease.pool,
                    "window": [measured.window_start.isoformat(), measured.window_end.isoformat()],
                    "window_seconds": measured.window_seconds,
                    "downtime_seconds": measured.downtime_seconds,
                    "availability_percent": str(measured.percent),
                    "credit_percent": str(percent),
                    "charged": str(base),
                    "interruptions": [dict(i) for i in measured.interruptions],
                },
            )
        )
    return lines


def _run(lease: Lease) -> LeaseRun:
    return LeaseRun(
        lease_id=lease.id,
        tenant_id=lease.tenant_id,
        tier=lease.tier,
        pool=lease.pool,
        gpus=lease.gpus,
        state=lease.state,
        started_at=lease.started_at,
        ended_at=lease.ended_at,
        exit_code=lease.exit_code,
        reason=lease.notice_reason if lease.state == "preempted" else lease.end_reason,
        start_at=lease.start_at,
        end_at=lease.end_at,
    )
