"""Bring the store in line with the engine: apply its events, re-price spot.

Applying an event is idempotent (an event that does not move a lease forward changes nothing), so
the same event seen twice — or an event for work Backfill did not place, such as the owner's
own jobs — is harmless.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill.domain.leases import LeaseState
from backfill.domain.pricing import list_price, spot_price, utilization
from backfill.domain.tiers import Tier
from backfill.engines.base import EngineEvent, EventKind, Outcome
from backfill.services import pricebook, webhooks
from backfill.services.context import Context, to_datetime
from backfill.services.documents import lease_document
from backfill.store.models import Lease, LeaseSegment, SpotPrice

_END_STATE = {
    Outcome.STOPPED: LeaseState.STOPPED,
    Outcome.PREEMPTED: LeaseState.PREEMPTED,
    Outcome.COMPLETED: LeaseState.COMPLETED,
    Outcome.FAILED: LeaseState.FAILED,
}


def sync(ctx: Context) -> None:
    """One unit of work: apply the engine's events, re-price spot, apply what that caused."""
    with ctx.lock, ctx.unit_of_work() as session:
        apply_events(ctx, session, ctx.engine.poll())
        pricebook.apply_changes(session, ctx.engine_now())
        reprice(ctx, session)
        apply_events(ctx, session, ctx.engine.poll())
        session.commit()


def apply_events(ctx: Context, session: Session, events: list[EngineEvent]) -> None:
    for event in events:
        lease = session.get(Lease, event.workload)
        if lease is None:
            continue  # the owner's own work: observed through usage, not stored
        at = to_datetime(event.at)
        state = LeaseState(lease.state)
        if event.kind is EventKind.STARTED and state is LeaseState.PENDING:
            lease.state = LeaseState.RUNNING
            lease.started_at = at
            lease.allocation = {node: list(idx) for node, idx in event.allocation.items()}
            price = lease.contract_price
            if price is None:
                price = current_price(ctx, session, lease.pool, Tier(lease.tier), at)
            _open_segment(session, lease, at, price)
        elif event.kind is EventKind.NOTICED and state is LeaseState.RUNNING:
            assert event.notice_at is not None and event.stop_at is not None
            lease.state = LeaseState.NOTICED
            lease.notice_at = to_datetime(event.notice_at)
            lease.stop_at = to_datetime(event.stop_at)
            lease.notice_reason = event.reason
            webhooks.enqueue(
                session,
                tenant_id=lease.tenant_id,
                event_type="lease.notice",
                data=lease_document(lease),
            )
        elif event.kind is EventKind.ENDED and not state.terminal:
            assert event.outcome is not None
            end_lease(
                session,
                lease,
                _END_STATE[event.outcome],
                at,
                exit_code=event.exit_code,
                reason=event.reason,
            )
    session.flush()


def end_lease(
    session: Session,
    lease: Lease,
    state: LeaseState,
    at: datetime,
    *,
    exit_code: int | None = None,
    reason: str | None = None,
) -> None:
    """End a lease at ``at``: its state, its open usage segments closed, a webhook recorded."""
    lease.state = state
    lease.ended_at = at
    lease.exit_code = exit_code
    lease.end_reason = reason[:200] if reason else None
    close_segments(session, lease.id, at)
    webhooks.enqueue(
        session, tenant_id=lease.tenant_id, event_type="lease.ended", data=lease_document(lease)
    )


def reprice(ctx: Context, session: Session) -> None:
    """Set each pool's spot price from its utilization, at most once per ``price_interval``.

    Running spot leases get a new usage segment at the new price, and those whose ``max_price``
    the new price passes get their notice, as a preemption would give it.
    """
    now = to_datetime(ctx.engine.now())
    usage = {u.pool: u for u in ctx.engine.usage()}
    fleet = ctx.engine.fleet()
    for pool in fleet.pools:
        last = latest_spot(session, pool.key)
        if last is not None and now - last.at < timedelta(seconds=ctx.price_interval):
            continue
        load = usage[pool.key]
        prices = pricebook.gpu_prices(session, fleet, pool.key, now)
        price = spot_price(prices, utilization(load.busy + load.claimed, load.total))
        if last is not None and last.price == price:
            continue
        session.add(SpotPrice(pool=pool.key, at=now, price=price))
        running = session.scalars(
            select(Lease).where(
                Lease.pool == pool.key,
                Lease.tier == Tier.SPOT,
                Lease.state.in_([LeaseState.RUNNING, LeaseState.NOTICED]),
            )
        )
        for lease in running:
            close_segments(session, lease.id, now)
            _open_segment(session, lease, now, price)
            if (
                lease.state == LeaseState.RUNNING
                and lease.max_price is not None
                and price > lease.max_price
            ):
                ctx.engine.notice(lease.id, reason="spot price above max_price")
    session.flush()


def latest_spot(session: Session, pool_key: str) -> SpotPrice | None:
    return session.scalar(
        select(SpotPrice).where(SpotPrice.pool == pool_key).order_by(SpotPrice.at.desc()).limit(1)
    )


def current_price(ctx: Context, session: Session, pool: str, tier: Tier, at: datetime) -> Decimal:
    """The price per GPU-hour of ``tier`` in ``pool`` at ``at``: the book's list price, or the
    latest spot price."""
    prices = pricebook.gpu_prices(session, ctx.engine.fleet(), pool, at)
    last = latest_spot(session, pool) if tier is Tier.SPOT else None
    spot = last.price if last is not None else prices.spot_floor
    return list_price(prices, tier, spot)


def _open_segment(session: Session, lease: Lease, at: datetime, price: Decimal) -> None:
    """A new segment at ``price``, never above the lease's ``max_price``: that is a promise."""
    if lease.max_price is not None:
        price = min(price, lease.max_price)
    session.add(
        LeaseSegment(
            lease_id=lease.id,
            tenant_id=lease.tenant_id,
            pool=lease.pool,
            tier=lease.tier,
            gpus=lease.gpus,
            price=price,
            started_at=at,
        )
    )


def close_segments(session: Session, lease_id: str, at: datetime) -> None:
    session.flush()
    for segment in session.scalars(
        select(LeaseSegment).where(
            LeaseSegment.lease_id == lease_id, LeaseSegment.ended_at.is_(None)
        )
    ):
        if segment.started_at >= at:
            session.delete(segment)  # a segment of no time bills nothing: drop it
        else:
            segment.ended_at = at
