"""Start-up: make the engine and the store agree about leases the store says are active.

An engine that keeps its own state (Slurm) still knows every lease; the sim engine starts empty.
Each active lease the engine does not know is submitted again, as it was, so it keeps its GPUs and
its open usage segment. A noticed lease whose ``stop_at`` has passed ends as preempted at
``stop_at``; one that no longer fits ends as failed now. Nothing is billed twice: segments stay
as they are, and a lease that ends has them closed at its end.
"""

from __future__ import annotations

from sqlalchemy import select

from backfill.domain.leases import ACTIVE_STATES, LeaseState
from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec
from backfill.errors import BackfillError, NotFound
from backfill.services.context import Context
from backfill.services.sync import apply_events, end_lease
from backfill.store.models import Lease


def restore(ctx: Context) -> dict[str, int]:
    """Re-adopt the store's active leases into the engine; returns counts by what happened."""
    counts = {"kept": 0, "resubmitted": 0, "preempted": 0, "failed": 0}
    now = ctx.engine_now()
    with ctx.lock, ctx.unit_of_work() as session:
        for lease in session.scalars(select(Lease).where(Lease.state.in_(ACTIVE_STATES))):
            try:
                ctx.engine.workload(lease.id)
            except NotFound:
                pass
            else:
                counts["kept"] += 1
                continue
            if lease.state == LeaseState.NOTICED and lease.stop_at and lease.stop_at <= now:
                end_lease(session, lease, LeaseState.PREEMPTED, lease.stop_at)
                counts["preempted"] += 1
                continue
            spec = WorkloadSpec(
                id=lease.id,
                tier=Tier(lease.tier),
                pool=lease.pool,
                gpus=lease.gpus,
                owner=lease.tenant_id,
                command=lease.command,
                duration=_remaining(lease, now.timestamp()),
                start_at=lease.start_at.timestamp() if lease.start_at else None,
                end_at=lease.end_at.timestamp() if lease.end_at else None,
            )
            try:
                ctx.engine.submit(spec)
            except BackfillError as exc:
                lease.notice_reason = f"not restored: {exc}"[:200]
                end_lease(session, lease, LeaseState.FAILED, now, reason=lease.notice_reason)
                counts["failed"] += 1
                continue
            if lease.state == LeaseState.NOTICED:
                ctx.engine.notice(lease.id, reason=lease.notice_reason or "restored notice")
            counts["resubmitted"] += 1
        # Events of resubmitted leases that were already running change nothing (idempotent).
        apply_events(ctx, session, ctx.engine.poll())
        session.commit()
    return counts


def _remaining(lease: Lease, now: float) -> float | None:
    if lease.duration is None:
        return None
    if lease.started_at is None:
        return float(lease.duration)
    return max(1.0, lease.started_at.timestamp() + lease.duration - now)
