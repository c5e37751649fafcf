"""Usage events: CloudEvents in (structured or batched), read back per tenant."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

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


Since = Annotated[AwareDatetime | None, Query(description="events at or after this time")]
Until = Annotated[AwareDatetime | None, Query(description="events before this time")]


@dataclass(frozen=True)
class EventQuery:
    """The filters of an event listing (a FastAPI dependency: query parameters)."""

    type: Annotated[str | None, Query(max_length=128, description="only this type")] = None
    since: Since = None
    until: Until = None
    after: Annotated[int | None, Query(ge=0, description="stored after this seq (paging)")] = None
    limit: Annotated[int, Query(ge=1, le=1000)] = 100


@dataclass(frozen=True)
class Window:
    """A window of event time (a FastAPI dependency: query parameters)."""

    since: Since = None
    until: Until = None


def _list(ctx: Context, tenant: str, q: EventQuery) -> EventList:
    if q.type is not None and q.type not in METERS:
        known = ", ".join(sorted(METERS))
        raise InvalidRequest(f"no event type {q.type!r}: {known}", field="type")
    rows = event_service.events(
        ctx,
        tenant_id=tenant,
        type=q.type,
        since=q.since,
        until=q.until,
        after=q.after,
        limit=q.limit,
    )
    return EventList(
        data=[_read(r) for r in rows], next_after=rows[-1].seq if len(rows) == q.limit else None
    )


def _totals(ctx: Context, tenant: str, window: Window) -> MeterTotals:
    rows = event_service.totals(ctx, tenant_id=tenant, since=window.since, until=window.until)
    return MeterTotals(
        since=window.since,
        until=window.until,
        data=[MeterTotalRead(type=t.type, key=t.key, events=t.events, units=t.units) for t in rows],
    )


@router.get("/v1/events", response_model=EventList)
def list_events(
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    query: EventQuery = Depends(),
) -> EventList:
    """Your usage events as Backfill stored them (each once)."""
    return _list(ctx, tenant, query)


@router.get("/v1/meters", response_model=MeterTotals)
def meter_totals(
    ctx: Context = Depends(context), tenant: str = Depends(tenant_id), window: Window = Depends()
) -> MeterTotals:
    """Your metered units per type and model or tool, over a window of event time."""
    return _totals(ctx, tenant, window)


@admin.get("/tenants/{tenant}/events", response_model=EventList)
def tenant_events(
    tenant: str, ctx: Context = Depends(context), query: EventQuery = Depends()
) -> EventList:
    tenant_service.get(ctx, tenant_id=tenant)
    return _list(ctx, tenant, query)


@admin.get("/tenants/{tenant}/meters", response_model=MeterTotals)
def tenant_meter_totals(
    tenant: str, ctx: Context = Depends(context), window: Window = Depends()
) -> MeterTotals:
    tenant_service.get(ctx, tenant_id=tenant)
    return _totals(ctx, tenant, window)
