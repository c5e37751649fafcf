"""Usage: every lease segment, per second, with its cost so far."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from backfill.domain.metering import segment_cost
from backfill.services.context import Context
from backfill.services.sync import sync
from backfill.store.models import LeaseSegment


@dataclass(frozen=True)
class SegmentUsage:
    lease_id: str
    pool: str
    tier: str
    gpus: int
    price: Decimal
    started_at: datetime
    ended_at: datetime | None
    seconds: int
    cost: Decimal


@dataclass(frozen=True)
class UsageReport:
    as_of: datetime
    segments: list[SegmentUsage]

    @property
    def gpu_seconds(self) -> int:
        return sum(s.gpus * s.seconds for s in self.segments)

    @property
    def cost(self) -> Decimal:
        return sum((s.cost for s in self.segments), Decimal("0"))


def measure(segment: LeaseSegment, now: datetime, since: datetime | None = None) -> SegmentUsage:
    """The segment's seconds and cost up to ``now`` (if open), from ``since`` if it is later."""
    start = segment.started_at if since is None else max(segment.started_at, since)
    end = segment.ended_at or max(now, start)
    seconds = max(0, int((end - start).total_seconds()))
    return SegmentUsage(
        lease_id=segment.lease_id,
        pool=segment.pool,
        tier=segment.tier,
        gpus=segment.gpus,
        price=segment.price,
        started_at=start,
        ended_at=segment.ended_at,
        seconds=seconds,
        cost=segment_cost(segment.gpus, seconds, segment.price),
    )


def segments(ctx: Context, *, tenant_id: str | None, lease_id: str | None = None) -> UsageReport:
    """Usage of one tenant (or, for the operator, every tenant when ``tenant_id`` is None)."""
    sync(ctx)
    now = ctx.engine_now()
    with ctx.unit_of_work() as session:
        query = select(LeaseSegment)
        if tenant_id is not None:
            query = query.where(LeaseSegment.tenant_id == tenant_id)
        if lease_id is not None:
            query = query.where(LeaseSegment.lease_id == lease_id)
        rows = session.scalars(query.order_by(LeaseSegment.started_at, LeaseSegment.id))
        return UsageReport(as_of=now, segments=[measure(row, now) for row in rows])
