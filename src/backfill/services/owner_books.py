"""The owner's books over a window: revenue per pool, tier and tenant; each pool's GPU-hours by
tier, the idle it sold and the idle it left; showback of its own teams' work at list price.

GPU-seconds come from the engine's own accounting (``FleetEngine.accounting``), where the owner's
work is seen as the engine ran it; the arithmetic is ``domain.showback``. Revenue is what rating
charges within the window (``services.rating``: what the invoices bill).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, select

from backfill.domain.showback import Held, PoolBooks, PoolCapacity, fleet_books, pool_books
from backfill.engines.base import PoolUsage
from backfill.errors import InvalidRequest
from backfill.services import rating
from backfill.services.context import Context
from backfill.services.sync import latest_spot, sync
from backfill.store.models import Lease, Tenant


@dataclass(frozen=True)
class Charge:
    """One amount earned within the window (the fields of a rating line item it needs)."""

    tenant_id: str
    product: str
    pool: str | None
    tier: str | None
    amount: Decimal


@dataclass(frozen=True)
class RevenueRow:
    product: str
    pool: str | None
    tier: str | None
    tenant_id: str
    tenant_name: str | None
    amount: Decimal


@dataclass(frozen=True)
class OwnerBooks:
    since: datetime
    until: datetime
    engine: str
    pools: list[PoolBooks]
    revenue: list[RevenueRow]

    @property
    def fleet(self) -> PoolBooks:
        """Every pool's figures added up."""
        return fleet_books(self.pools, int((self.until - self.since).total_seconds()))

    def revenue_of(self, pool: str | None = None) -> Decimal:
        """Revenue of one pool, or of everything (None)."""
        rows = self.revenue if pool is None else [r for r in self.revenue if r.pool == pool]
        return sum((r.amount for r in rows), Decimal(0))


@dataclass(frozen=True)
class Snapshot:
    """What ``/metrics`` exposes, read at once."""

    usage: list[PoolUsage]
    spot_prices: dict[str, Decimal]
    tenants: int
    leases: dict[tuple[str, str], int]
    """(tier, state) → leases."""
    month: OwnerBooks
    """The books since the start of the current UTC month."""


def month_start(at: datetime) -> datetime:
    """The first second of ``at``'s month, in UTC."""
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def report(ctx: Context, *, since: datetime | None, until: datetime | None) -> OwnerBooks:
    """The books over ``[since, until)``, to the second: ``since`` defaults to the start of the
    current UTC month, ``until`` to now, and ``until`` is capped at now (nothing has run later).

    Raises ``InvalidRequest`` when ``until`` is not after ``since`` or ``since`` is after now."""
    sync(ctx)
    now = ctx.engine_now()
    start = month_start(now) if since is None else _to_second(since)
    end = now if until is None else _to_second(until)
    if until is not None and end <= start:
        raise InvalidRequest("until must be after since", field="until")
    if start > now:
        raise InvalidRequest("since must not be after the engine's now", field="since")
    return _books(ctx, since=start, until=min(end, now))


def snapshot(ctx: Context) -> Snapshot:
    """The fleet now (GPUs per tier, spot prices, tenants, leases) and the month's books."""
    month = report(ctx, since=None, until=None)
    usage = ctx.engine.usage()
    with ctx.unit_of_work() as session:
        spot = {}
        for pool in ctx.engine.fleet().pools:
            last = latest_spot(session, pool.key)
            spot[pool.key] = last.price if last is not None else pool.prices.spot_floor
        tenants = session.scalar(select(func.count()).select_from(Tenant)) or 0
        counts = session.execute(
            select(Lease.tier, Lease.state, func.count()).group_by(Lease.tier, Lease.state)
        )
        leases = {(tier, state): int(n) for tier, state, n in counts}
    return Snapshot(usage=usage, spot_prices=spot, tenants=tenants, leases=leases, month=month)


def _books(ctx: Context, *, since: datetime, until: datetime) -> OwnerBooks:
    lo, hi = since.timestamp(), until.timestamp()
    held = [
        Held(r.pool, r.tier, r.owner, r.gpu_seconds(lo, hi)) for r in ctx.engine.accounting(lo, hi)
    ]
    capacity = [PoolCapacity(p.key, p.gpus, p.prices.on_demand) for p in ctx.engine.fleet().pools]
    books = pool_books(capacity, held, int(hi - lo))
    return OwnerBooks(
        since=since,
        until=until,
        engine=ctx.engine.name,
        pools=books,
        revenue=_rows(ctx, _revenue(ctx, since=since, until=until)),
    )


def _revenue(ctx: Context, *, since: datetime, until: datetime) -> list[Charge]:
    """Every charge within ``[since, until)`` as rating prices it for the invoices (SLA credits,
    which invoices deduct, are not netted here)."""
    return [
        Charge(item.tenant_id, item.product, item.pool, item.tier, item.amount)
        for item in rating.rate(ctx, since=since, until=until)
    ]


def _rows(ctx: Context, charges: list[Charge]) -> list[RevenueRow]:
    """Charges added up per product, pool, tier and tenant, with the tenant's name."""
    sums: dict[tuple[str, str | None, str | None, str], Decimal] = {}
    for c in charges:
        key = (c.product, c.pool, c.tier, c.tenant_id)
        sums[key] = sums.get(key, Decimal(0)) + c.amount
    with ctx.unit_of_work() as session:
        ids = sorted({key[3] for key in sums})
        query = select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids))
        names = {tenant: name for tenant, name in session.execute(query)}
    return [
        RevenueRow(product, pool, tier, tenant, names.get(tenant), amount)
        for (product, pool, tier, tenant), amount in sorted(
            sums.items(), key=lambda item: tuple(part or "" for part in item[0])
        )
    ]


def _to_second(at: datetime) -> datetime:
    """``at`` in UTC, down to the whole second (usage is kept per second)."""
    return at.astimezone(UTC).replace(microsecond=0)
