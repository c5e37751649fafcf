"""Usage events: CloudEvents in (structured or batched), read back per tenant."""

from __future__ import annotations

import json
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from backfill.api.auth import context, metering, operator, tenant_id
from backfill.api.schemas import (
    EventList,
    EventRead,
    EventRejection,
    IngestRead,
    MeterTotalRead,
    MeterTotals,
)
from backfill.domain.events import METERS
from backfill.errors import InvalidJson, InvalidRequest, UnsupportedMediaType
from backfill.services import events as event_service
from backfill.services import tenants as tenant_service
from backfill.services.context import Context
from backfill.services.tenants import Principal
from backfill.store.models import UsageEventRow

SINGLE = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
MAX_EVENTS_BODY = 8 * 1024 * 1024

router = APIRouter(tags=["usage events"])
admin = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            SINGLE: {"schema": {"type": "object"}},
            BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
        },
    }
}


@router.post("/v1/events", response_model=IngestRead, openapi_extra=_BODY)
async def post_events(
    request: Request, ctx: Context = Depends(context), who: Principal = Depends(metering)
) -> IngestRead:
    """Usage events in CloudEvents 1.0, one (``application/cloudevents+json``) or a batch
    (``application/cloudevents-batch+json``, at most 10,000). Each event's ``subject`` is the
    tenant it is billed to. An event whose ``(source, id)`` was sent before is counted once, not
    again; an invalid event is refused with its reason and the rest of its batch is kept."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in (SINGLE, BATCH):
        raise UnsupportedMediaType(
            f"send events as {SINGLE} (one) or {BATCH} (a JSON array), not {kind or 'nothing'}",
            field="Content-Type",
        )
    body = await request.body()
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidJson(f"the body is not valid JSON: {str(exc)[:200]}") from None
    if kind == BATCH and type(decoded) is not list:
        raise InvalidRequest(f"a {BATCH} body is a JSON array of events")
    items: list[Any] = decoded if kind == BATCH else [decoded]
    result = await run_in_threadpool(event_service.ingest, ctx, items)
    if kind == SINGLE and result.rejected:
        (refused,) = result.rejected
        raise InvalidRequest(refused.message, field=refused.field)
    return IngestRead(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[
            EventRejection(
                index=r.index, id=r.id, source=r.source, message=r.message, field=r.field
            )
            for r in result.rejected
        ],
    )


def _read(row: UsageEventRow) -> EventRead:
    return EventRead(
        seq=row.seq,
        id=row.event_id,
        source=row.source,
        type=row.type,
        subject=row.tenant_id,
        time=row.time,
        data=json.loads(row.data),
        extensions=json.loads(row.extensions) if row.extensions else None,
        received_at=row.received_at,
    )


def _list(
    ctx: Context,
    tenant: str,
    type: str | None,
    since: AwareDatetime | None,
    until: AwareDatetime | None,
    after: int | None,
    limit: int,
) -> EventList:
    if type is not None and type not in METERS:
        raise InvalidRequest(f"no event type {type!r}: {', '.join(sorted(METERS))}", field="type")
    rows = event_service.events(
        ctx, tenant_id=tenant, type=type, since=since, until=until, after=after, limit=limit
    )
    return EventList(
        data=[_read(r) for r in rows], next_after=rows[-1].seq if len(rows) == limit else None
    )


TypeQuery = Query(None, max_length=128, description="only events of this type")
SinceQuery = Query(None, description="events at or after this time")
UntilQuery = Query(None, description="events before this time")
AfterQuery = Query(None, ge=0, description="events stored after this seq (paging)")
LimitQuery = Query(100, ge=1, le=1000)


@router.get("/v1/events", response_model=EventList)
def list_events(
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    type: str | None = TypeQuery,
    since: AwareDatetime | None = SinceQuery,
    until: AwareDatetime | None = UntilQuery,
    after: int | None = AfterQuery,
    limit: int = LimitQuery,
) -> EventList:
    """Your usage events as Backfill stored them (each once)."""
    return _list(ctx, tenant, type, since, until, after, limit)


def _totals(
    ctx: Context, tenant: str, since: AwareDatetime | None, until: AwareDatetime | None
) -> MeterTotals:
    rows = event_service.totals(ctx, tenant_id=tenant, since=since, until=until)
    return MeterTotals(
        since=since,
        until=until,
        data=[MeterTotalRead(type=t.type, key=t.key, events=t.events, units=t.units) for t in rows],
    )


@router.get("/v1/meters", response_model=MeterTotals)
def meter_totals(
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    since: AwareDatetime | None = SinceQuery,
    until: AwareDatetime | None = UntilQuery,
) -> MeterTotals:
    """Your metered units per type and model or tool, over a window of event time."""
    return _totals(ctx, tenant, since, until)


@admin.get("/tenants/{tenant}/events", response_model=EventList)
def tenant_events(
    tenant: str,
    ctx: Context = Depends(context),
    type: str | None = TypeQuery,
    since: AwareDatetime | None = SinceQuery,
    until: AwareDatetime | None = UntilQuery,
    after: int | None = AfterQuery,
    limit: int = LimitQuery,
) -> EventList:
    tenant_service.get(ctx, tenant_id=tenant)
    return _list(ctx, tenant, type, since, until, after, limit)


@admin.get("/tenants/{tenant}/meters", response_model=MeterTotals)
def tenant_meter_totals(
    tenant: str,
    ctx: Context = Depends(context),
    since: AwareDatetime | None = SinceQuery,
    until: AwareDatetime | None = UntilQuery,
) -> MeterTotals:
    tenant_service.get(ctx, tenant_id=tenant)
    return _totals(ctx, tenant, since, until)
