"""Usage events in, exactly once; and read back, per tenant.

Exactly once, because the key is the event: ``(tenant, source, id)`` is a unique constraint on
the event's own row, and a batch is one ``INSERT … ON CONFLICT DO NOTHING`` committed before the
sender hears back. A key can therefore never be recorded without its event (the way OpenMeter's
separate dedup store could drop an event for good, openmeter #5118), and an event acknowledged is
durable. Resending anything, any number of times, concurrently or after a crash, adds nothing.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backfill.domain.events import METERS, Rejection, UsageEvent, parse_batch
from backfill.errors import InvalidRequest
from backfill.services import invoices
from backfill.services.context import Context, wall_now
from backfill.store.models import Tenant, UsageEventRow

MAX_BATCH = 10_000


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    """Events stored now for the first time."""
    duplicates: int
    """Valid events that were stored already (sent before, or twice in this batch)."""
    rejected: list[Rejection]


@dataclass(frozen=True)
class MeterTotal:
    type: str
    key: str
    events: int
    units: dict[str, int]


def ingest(ctx: Context, items: list[Any]) -> IngestResult:
    """Store the valid events of ``items`` that are new; say why each invalid one was refused.
    Each event's ``subject`` names its tenant, which must exist."""
    if len(items) > MAX_BATCH:
        raise InvalidRequest(f"a batch holds at most {MAX_BATCH} events, not {len(items)}")
    checked, rejected = parse_batch(items, now=ctx.engine_now())
    known, closed = _known_tenants(ctx, {event.subject for _, event in checked})
    good = []
    for index, event in checked:
        if event.subject not in known:
            problem, field = f"no tenant {event.subject!r}", "subject"
        elif event.subject in closed and event.time < closed[event.subject]:
            problem, field = _closed(closed[event.subject]), "time"
        else:
            good.append(event)
            continue
        rejected.append(
            Rejection(index=index, message=problem, field=field, id=event.id, source=event.source)
        )
    rejected.sort(key=lambda r: r.index)
    if not good:
        return IngestResult(accepted=0, duplicates=0, rejected=rejected)
    received = wall_now()
    # In key order, so that two batches sharing events lock them in the same order (no deadlock).
    ordered = sorted(good, key=_key)
    serial = ctx.ingest_lock if ctx.sessions.kw["bind"].dialect.name == "sqlite" else nullcontext()
    with serial, ctx.unit_of_work() as session:
        stored = _insert_new(session, ordered, received)
        session.commit()
    return IngestResult(accepted=stored, duplicates=len(good) - stored, rejected=rejected)


def _key(event: UsageEvent) -> tuple[str, str, str]:
    return event.subject, event.source, event.id


def _known_tenants(ctx: Context, ids: set[str]) -> tuple[set[str], dict[str, datetime]]:
    """The tenants among ``ids``, and where each one's billing is closed (finalized) until."""
    if not ids:
        return set(), {}
    with ctx.unit_of_work() as session:
        known = set(session.scalars(select(Tenant.id).where(Tenant.id.in_(sorted(ids)))))
        return known, invoices.closed_until(session, known)


def _closed(until: datetime) -> str:
    return (
        f"time is in a billing period already invoiced and finalized (before "
        f"{until.isoformat()}): it can no longer be billed; ask the operator for a credit note "
        "or a correction"
    )


_COLUMNS = (
    "tenant_id",
    "source",
    "event_id",
    "type",
    "time",
    "key",
    "units",
    "units2",
    "data",
    "extensions",
    "received_at",
)


def _insert_new(session: Session, events: list[UsageEvent], received: datetime) -> int:
    """Insert the events whose key is new; returns how many were.

    One ``INSERT … ON CONFLICT DO NOTHING`` run with the driver's executemany (SQLite and
    PostgreSQL both take this statement, and both drivers count the rows it inserted). It is
    written as SQL rather than through the ORM because the ORM's per-row work took two thirds of
    the ingest time; times go through the column's own type, so they are stored as every other
    query reads them.
    """
    connection = session.connection()
    dialect = connection.dialect
    time_type = UsageEventRow.__table__.c.time.type
    to_db = time_type.dialect_impl(dialect).bind_processor(dialect)
    memo: dict[datetime, Any] = {}

    def stored(at: datetime) -> Any:
        if at not in memo:
            memo[at] = to_db(at) if to_db is not None else at
        return memo[at]

    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    sql = (
        f"INSERT INTO usage_events ({', '.join(_COLUMNS)}) "
        f"VALUES ({', '.join([mark] * len(_COLUMNS))}) "
        "ON CONFLICT (tenant_id, source, event_id) DO NOTHING"
    )
    received_at = stored(received)
    rows = [
        (
            e.subject,
            e.source,
            e.id,
            e.type,
            stored(e.time),
            e.key,
            e.units[0],
            e.units[1],
            e.data,
            e.extensions,
            received_at,
        )
        for e in events
    ]
    return int(connection.exec_driver_sql(sql, rows).rowcount)


def events(
    ctx: Context,
    *,
    tenant_id: str,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: int | None = None,
    limit: int = 100,
) -> list[UsageEventRow]:
    """A tenant's events in the order they were stored; ``after`` pages on from a ``seq``."""
    with ctx.unit_of_work() as session:
        query = select(UsageEventRow).where(UsageEventRow.tenant_id == tenant_id)
        if type is not None:
            query = query.where(UsageEventRow.type == type)
        if since is not None:
            query = query.where(UsageEventRow.time >= since)
        if until is not None:
            query = query.where(UsageEventRow.time < until)
        if after is not None:
            query = query.where(UsageEventRow.seq > after)
        return list(session.scalars(query.order_by(UsageEventRow.seq).limit(limit)))


def totals(
    ctx: Context, *, tenant_id: str, since: datetime | None = None, until: datetime | None = None
) -> list[MeterTotal]:
    """A tenant's metered units per type and key (model, tool) over ``[since, until)``."""
    with ctx.unit_of_work() as session:
        query = select(
            UsageEventRow.type,
            UsageEventRow.key,
            func.count(),
            func.coalesce(func.sum(UsageEventRow.units), 0),
            func.coalesce(func.sum(UsageEventRow.units2), 0),
        ).where(UsageEventRow.tenant_id == tenant_id)
        if since is not None:
            query = query.where(UsageEventRow.time >= since)
        if until is not None:
            query = query.where(UsageEventRow.time < until)
        rows = session.execute(
            query.group_by(UsageEventRow.type, UsageEventRow.key).order_by(
                UsageEventRow.type, UsageEventRow.key
            )
        ).all()
    out = []
    for kind, key, count, units, units2 in rows:
        meter = METERS[kind]
        values = dict(zip(meter.units, (int(units), int(units2)), strict=False))
        out.append(MeterTotal(type=kind, key=key, events=int(count), units=values))
    return out
