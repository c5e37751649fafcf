"""Leases: what a tenant rents, admitted under the sellable floor, placed by the engine."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backfill.domain.fleet import Pool
from backfill.domain.leases import ACTIVE_STATES, LeaseState
from backfill.domain.placement import ShapeError, check_shape
from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec
from backfill.errors import (
    IdempotencyKeyReused,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    PriceAboveMax,
    ShapeNotPlaceable,
)
from backfill.services import budgets
from backfill.services.context import Context
from backfill.services.ids import new_id
from backfill.services.sync import apply_events, current_price, sync
from backfill.store.models import IdempotencyRecord, Lease

MAX_RESERVATION = timedelta(days=366)
MIN_RESERVATION = timedelta(minutes=1)


@dataclass(frozen=True)
class LeaseRequest:
    tier: Tier
    gpus: int
    region: str | None = None
    accelerator: str | None = None
    max_price: Decimal | None = None
    start: datetime | None = None
    end: datetime | None = None
    command: str | None = None
    duration: int | None = None

    def fingerprint(self) -> str:
        """A digest of the request, to tell a retry from a different request under one key."""
        body = {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def create(
    ctx: Context, *, tenant_id: str, request: LeaseRequest, idempotency_key: str | None = None
) -> Lease:
    """Admit, place and record a lease; the same ``idempotency_key`` and request give it back."""
    if request.tier is Tier.INTERNAL:
        raise InvalidRequest("tenants lease reserved, on_demand or spot GPUs", field="tier")
    if request.max_price is not None and request.tier is not Tier.SPOT:
        raise InvalidRequest("max_price is for spot leases only", field="max_price")
    with ctx.lock:
        sync(ctx)
        with ctx.unit_of_work() as session:
            if idempotency_key is not None:
                earlier = _replay(session, tenant_id, idempotency_key, request.fingerprint())
                if earlier is not None:
                    return earlier
            lease = _admit_and_place(ctx, session, tenant_id, request)
            if idempotency_key is not None:
                session.add(
                    IdempotencyRecord(
                        tenant_id=tenant_id,
                        key=idempotency_key,
                        request_hash=request.fingerprint(),
                        lease_id=lease.id,
                        created_at=lease.created_at,
                    )
                )
            try:
                apply_events(ctx, session, ctx.engine.poll())
                session.commit()
            except BaseException:
                ctx.engine.stop(lease.id)  # the store does not know it: the engine must not run it
                raise
            return lease


def _replay(session: Session, tenant_id: str, key: str, fingerprint: str) -> Lease | None:
    record = session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
        )
    )
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", field="Idempotency-Key"
        )
    return session.get(Lease, record.lease_id)


def _admit_and_place(
    ctx: Context, session: Session, tenant_id: str, request: LeaseRequest
) -> Lease:
    now = ctx.engine_now()
    start, end = _period(request, now)
    pools = _candidate_pools(ctx, request)
    priced = sorted(
        ((current_price(ctx, session, pool.key, request.tier, now), pool) for pool in pools),
        key=lambda item: (item[0], item[1].key),
    )
    reasons: list[str] = []
    for price, pool in priced:
        if request.max_price is not None and price > request.max_price:
            reasons.append(f"{pool.key}: spot price {price} is above max_price")
            continue
        if request.tier in (Tier.ON_DEMAND, Tier.RESERVED):
            committed = committed_gpus(session, pool.key, start, end)
            if committed + request.gpus > pool.floor:
                reasons.append(
                    f"{pool.key}: {pool.floor - committed} GPUs left under the sellable floor"
                )
                continue
        hours = Decimal(1)  # on credit, a lease needs its first hour (a reservation: all of it)
        if end is not None and request.tier is Tier.RESERVED:
            hours = Decimal(int((end - start).total_seconds())) / 3600
        budgets.check_lease(ctx, session, tenant_id, price * request.gpus * hours)
        lease_id = new_id("lse")
        spec = WorkloadSpec(
            id=lease_id,
            tier=request.tier,
            pool=pool.key,
            gpus=request.gpus,
            owner=tenant_id,
            command=request.command,
            duration=request.duration,
            start_at=start.timestamp() if request.tier is Tier.RESERVED else None,
            end_at=end.timestamp() if end is not None else None,
        )
        try:
            ctx.engine.submit(spec)
        except InsufficientCapacity as exc:
            reasons.append(f"{pool.key}: {exc.message}")
            continue
        lease = Lease(
            id=lease_id,
            tenant_id=tenant_id,
            tier=request.tier,
            pool=pool.key,
            gpus=request.gpus,
            state=LeaseState.PENDING,
            command=request.command,
            duration=request.duration,
            max_price=request.max_price,
            start_at=start if request.tier is Tier.RESERVED else None,
            end_at=end,
            contract_price=price if request.tier is Tier.RESERVED else None,
            created_at=now,
            allocation={},
        )
        session.add(lease)
        session.flush()
        return lease
    if reasons and all("max_price" in reason for reason in reasons):
        raise PriceAboveMax("; ".join(reasons), field="max_price")
    raise InsufficientCapacity(
        f"no pool can take {request.gpus} {request.tier.value} GPUs now: " + "; ".join(reasons),
        field="gpus",
    )


def _period(request: LeaseRequest, now: datetime) -> tuple[datetime, datetime | None]:
    if request.tier is not Tier.RESERVED:
        if request.start is not None or request.end is not None:
            raise InvalidRequest("start and end are for reserved leases only", field="start")
        return now, None
    start = request.start or now
    if request.end is None:
        raise InvalidRequest("a reserved lease needs an end", field="end")
    if start < now - timedelta(seconds=60):
        raise InvalidRequest("a reservation cannot start in the past", field="start")
    start = max(start, now)
    if request.end - start < MIN_RESERVATION:
        raise InvalidRequest("a reservation lasts at least one minute", field="end")
    if request.end - start > MAX_RESERVATION:
        raise InvalidRequest("a reservation lasts at most 366 days", field="end")
    return start, request.end


def _candidate_pools(ctx: Context, request: LeaseRequest) -> list[Pool]:
    fleet = ctx.engine.fleet()
    if request.region is not None and request.region not in fleet.regions:
        raise InvalidRequest(f"no region {request.region!r} in this fleet", field="region")
    if request.accelerator is not None and request.accelerator not in fleet.accelerators:
        raise InvalidRequest(
            f"no accelerator {request.accelerator!r} in this fleet", field="accelerator"
        )
    pools = list(fleet.matching(request.region, request.accelerator))
    if not pools:
        raise InvalidRequest(
            f"no pool of {request.accelerator} in {request.region}", field="accelerator"
        )
    shaped: list[Pool] = []
    problems: list[str] = []
    for pool in pools:
        try:
            check_shape(request.gpus, [node.gpus for node in pool.nodes])
        except ShapeError as exc:
            problems.append(f"{pool.key}: {exc}")
        else:
            shaped.append(pool)
    if not shaped:
        raise ShapeNotPlaceable("; ".join(problems), field="gpus")
    return shaped


def committed_gpus(session: Session, pool_key: str, start: datetime, end: datetime | None) -> int:
    """GPUs of reserved and on-demand leases that overlap [start, end) in the pool."""
    overlap = or_(Lease.end_at.is_(None), Lease.end_at > start)
    if end is not None:
        overlap = overlap & or_(Lease.start_at.is_(None), Lease.start_at < end)
    total = session.scalar(
        select(func.coalesce(func.sum(Lease.gpus), 0)).where(
            Lease.pool == pool_key,
            Lease.tier.in_([Tier.ON_DEMAND, Tier.RESERVED]),
            Lease.state.in_(ACTIVE_STATES),
            overlap,
        )
    )
    return int(total or 0)


def get_all(
    ctx: Context, *, tenant_id: str, state: LeaseState | None = None, limit: int = 100
) -> list[Lease]:
    sync(ctx)
    with ctx.unit_of_work() as session:
        query = select(Lease).where(Lease.tenant_id == tenant_id)
        if state is not None:
            query = query.where(Lease.state == state)
        return list(session.scalars(query.order_by(Lease.created_at.desc(), Lease.id).limit(limit)))


def get(ctx: Context, *, tenant_id: str, lease_id: str) -> Lease:
    sync(ctx)
    with ctx.unit_of_work() as session:
        return _owned(session, tenant_id, lease_id)


def stop(ctx: Context, *, tenant_id: str, lease_id: str) -> Lease:
    """Stop a lease now. Idempotent: stopping a lease that has ended returns it as it is."""
    with ctx.lock:
        with ctx.unit_of_work() as session:
            lease = _owned(session, tenant_id, lease_id)
            if LeaseState(lease.state).terminal:
                return lease
        ctx.engine.stop(lease_id)
        sync(ctx)
        with ctx.unit_of_work() as session:
            return _owned(session, tenant_id, lease_id)


def _owned(session: Session, tenant_id: str, lease_id: str) -> Lease:
    lease = session.get(Lease, lease_id)
    if lease is None or lease.tenant_id != tenant_id:
        raise NotFound(f"no lease {lease_id!r}")
    return lease
