"""Reconciliation: metered usage against the engine's own accounting, differences reported.

For every lease that held GPUs within a window, the GPU-seconds Backfill metered (its usage
segments) are compared with the GPU-seconds the engine's accounting says it held (the sim engine's
records; Slurm's ``sacct``). A difference is reported with both figures and never fixed here: a
correction is a decision (a credit note, issue 6), not a side effect of looking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from backfill.engines.base import AccountRecord
from backfill.services.context import Context
from backfill.services.sync import sync
from backfill.store.models import Lease, LeaseSegment


@dataclass(frozen=True)
class Difference:
    lease_id: str
    tenant_id: str | None
    metered_gpu_seconds: int
    engine_gpu_seconds: int
    reason: str
    engine_id: str | None = None
    engine_state: str | None = None

    @property
    def gpu_seconds(self) -> int:
        """Metered minus accounted: positive when Backfill billed more than the engine ran."""
        return self.metered_gpu_seconds - self.engine_gpu_seconds


@dataclass(frozen=True)
class Reconciliation:
    since: datetime
    until: datetime
    engine: str
    leases: int
    """Leases checked: those metered or accounted within the window."""
    metered_gpu_seconds: int
    engine_gpu_seconds: int
    differences: list[Difference]


def reconcile(ctx: Context, *, since: datetime, until: datetime) -> Reconciliation:
    """Compare metered and accounted GPU-seconds per lease over ``[since, until)`` (capped at now:
    the future has been neither metered nor run)."""
    sync(ctx)
    now = ctx.engine_now()
    until = min(until, now)
    lo, hi = since.timestamp(), until.timestamp()
    books: dict[str, AccountRecord] = {}
    for entry in ctx.engine.accounting(lo, hi):
        if entry.tier.external:
            books[entry.workload] = entry
    metered: dict[str, int] = {}
    tenants: dict[str, str] = {}
    with ctx.unit_of_work() as session:
        rows = session.scalars(
            select(LeaseSegment).where(
                LeaseSegment.started_at < until,
                (LeaseSegment.ended_at.is_(None)) | (LeaseSegment.ended_at > since),
            )
        )
        for segment in rows:
            start = max(segment.started_at, since)
            end = min(segment.ended_at or until, until)
            seconds = max(0, int((end - start).total_seconds()))
            metered[segment.lease_id] = metered.get(segment.lease_id, 0) + segment.gpus * seconds
            tenants[segment.lease_id] = segment.tenant_id
        known = {
            lease.id: lease.tenant_id
            for lease in session.scalars(select(Lease).where(Lease.id.in_(list(books))))
        }
    differences = []
    for lease_id in sorted(set(metered) | set(books)):
        record = books.get(lease_id)
        engine = record.gpu_seconds(lo, hi) if record is not None else 0
        billed = metered.get(lease_id, 0)
        if record is None:
            reason = "metered, but the engine's accounting has no such job"
        elif lease_id not in known:
            reason = "the engine ran it, but Backfill has no such lease"
        elif billed != engine:
            reason = "metered and accounted GPU-seconds differ"
        else:
            continue
        differences.append(
            Difference(
                lease_id=lease_id,
                tenant_id=tenants.get(lease_id) or known.get(lease_id),
                metered_gpu_seconds=billed,
                engine_gpu_seconds=engine,
                reason=reason,
                engine_id=record.engine_id if record is not None else None,
                engine_state=record.state if record is not None else None,
            )
        )
    return Reconciliation(
        since=since,
        until=until,
        engine=ctx.engine.name,
        leases=len(set(metered) | set(books)),
        metered_gpu_seconds=sum(metered.values()),
        engine_gpu_seconds=sum(r.gpu_seconds(lo, hi) for r in books.values()),
        differences=differences,
    )
