"""The price book: list prices versioned by the moment they take effect (``domain.pricebook``).

The operator schedules a price with ``set_price``; from its ``effective_from`` on, new work is
priced at it, and running on-demand leases have their usage segment cut at that second, so each
second is billed at the price in force then. Reservations keep the price they were signed at.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.domain.fleet import MAX_PRICE, PRICE_UNIT, Fleet, Prices
from backfill.domain.pricebook import PriceBook, PriceVersion, check_dimension, list_prices
from backfill.errors import Conflict, InvalidRequest
from backfill.services.context import Context
from backfill.store.models import LeaseSegment, PriceRow

_ITEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,159}$")


def book(session: Session, fleet: Fleet) -> PriceBook:
    """Every version: the fleet file's list prices first, then the operator's. Read once per
    unit of work (a catalog read prices every pool and tier; a sync every lease it starts)."""
    cached = session.info.get("price_book")
    if cached is not None and cached[0] is fleet:
        return cached[1]  # type: ignore[no-any-return]
    rows = session.scalars(select(PriceRow)).all()
    versions = list_prices(fleet) + [
        PriceVersion(r.product, r.item, r.dimension, r.price, r.effective_from) for r in rows
    ]
    priced = PriceBook(versions)
    session.info["price_book"] = (fleet, priced)
    return priced


def gpu_prices(session: Session, fleet: Fleet, pool: str, at: datetime) -> Prices:
    """A pool's list prices in force at ``at``."""
    prices = book(session, fleet).gpu_prices(pool, at)
    return prices if prices is not None else fleet.pool(pool).prices


def set_price(
    ctx: Context,
    *,
    product: str,
    item: str,
    dimension: str,
    price: Decimal,
    effective_from: datetime | None = None,
    note: str | None = None,
) -> PriceRow:
    """Schedule a price from ``effective_from`` (default: now). The past cannot be repriced.
    Sending the same price again is a retry and changes nothing; another price for the same
    moment is a Conflict."""
    problem = check_dimension(product, dimension)
    if problem is not None:
        raise InvalidRequest(problem, field="dimension" if product in problem else "product")
    fleet = ctx.engine.fleet()
    if product == "gpu" and not fleet.has_pool(item):
        raise InvalidRequest(f"no pool {item!r} in this fleet", field="item")
    if not _ITEM.match(item):
        raise InvalidRequest(
            "an item is 1..160 letters, digits and . _ : / + - (a model, a tool, a pool)",
            field="item",
        )
    if not price.is_finite() or not 0 <= price <= MAX_PRICE or price != price.quantize(PRICE_UNIT):
        raise InvalidRequest(
            f"a price is 0..{MAX_PRICE} with at most 6 decimal places, not {price}", field="price"
        )
    now = ctx.engine_now()
    at = now if effective_from is None else effective_from
    if at < now:
        raise InvalidRequest(
            f"a price cannot take effect in the past ({at.isoformat()} is before "
            f"{now.isoformat()}): what was billed stays billed",
            field="effective_from",
        )
    with ctx.lock, ctx.unit_of_work() as session:
        row = PriceRow(
            product=product,
            item=item,
            dimension=dimension,
            price=price,
            effective_from=at.replace(microsecond=0),
            created_at=now,
            note=note,
        )
        session.add(row)
        session.info.pop("price_book", None)  # this unit of work now has another version
        try:
            session.flush()
            apply_changes(session, now)
            session.commit()
        except IntegrityError:
            session.rollback()
            earlier = session.scalar(
                select(PriceRow).where(
                    PriceRow.product == product,
                    PriceRow.item == item,
                    PriceRow.dimension == dimension,
                    PriceRow.effective_from == at.replace(microsecond=0),
                )
            )
            if earlier is not None and earlier.price == price:
                return earlier  # a retry of the same request
            raise Conflict(
                f"{product} {item} {dimension} already has a price from {at.isoformat()}",
                field="effective_from",
            ) from None
        return row


def versions(ctx: Context, *, product: str | None = None) -> list[PriceVersion]:
    """Every price and its versions, the fleet's list prices included."""
    with ctx.unit_of_work() as session:
        rows = session.scalars(
            select(PriceRow).order_by(
                PriceRow.product, PriceRow.item, PriceRow.dimension, PriceRow.effective_from
            )
        ).all()
    out = list_prices(ctx.engine.fleet()) + [
        PriceVersion(r.product, r.item, r.dimension, r.price, r.effective_from) for r in rows
    ]
    return [v for v in out if product is None or v.product == product]


def apply_changes(session: Session, now: datetime) -> None:
    """Cut running on-demand leases' segments at each GPU price change now in force.

    A segment that spans the change — open, or closed later by an event applied first — is split
    in two at ``effective_from``, the second half at the new price. Splitting at a moment no
    segment spans changes nothing, so this may run any number of times.
    """
    due = session.scalars(
        select(PriceRow).where(
            PriceRow.product == "gpu",
            PriceRow.dimension == "on_demand",
            PriceRow.applied_at.is_(None),
            PriceRow.effective_from <= now,
        )
    ).all()
    for change in sorted(due, key=lambda row: row.effective_from):
        at = change.effective_from
        spanning = session.scalars(
            select(LeaseSegment).where(
                LeaseSegment.pool == change.item,
                LeaseSegment.tier == "on_demand",
                LeaseSegment.started_at < at,
                (LeaseSegment.ended_at.is_(None)) | (LeaseSegment.ended_at > at),
            )
        ).all()
        for segment in spanning:
            session.add(
                LeaseSegment(
                    lease_id=segment.lease_id,
                    tenant_id=segment.tenant_id,
                    pool=segment.pool,
                    tier=segment.tier,
                    gpus=segment.gpus,
                    price=change.price,
                    started_at=at,
                    ended_at=segment.ended_at,
                )
            )
            segment.ended_at = at
        change.applied_at = now
    session.flush()
