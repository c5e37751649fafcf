"""The owner's view (operator): revenue, idle sold and left, showback; Prometheus metrics."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AwareDatetime

from backfill.api import metrics as metrics_exposition
from backfill.api.auth import context, operator
from backfill.api.schemas import PoolBooksRead, RevenueReportRead, RevenueRowRead, ShowbackRead
from backfill.domain.showback import PoolBooks, gpu_hours
from backfill.domain.tiers import Tier
from backfill.services import owner_books
from backfill.services.context import Context

router = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])
metrics = APIRouter(tags=["metrics"], dependencies=[Depends(operator)])


@router.get("/revenue", response_model=RevenueReportRead)
def revenue(
    since: AwareDatetime | None = Query(None, description="default: the month's start (UTC)"),
    until: AwareDatetime | None = Query(None, description="default (and at most): now"),
    ctx: Context = Depends(context),
) -> RevenueReportRead:
    """Revenue per pool, tier and tenant; each pool's GPU-hours by tier, the idle sold and the
    idle left; the owner's own work priced at the on-demand list price (showback)."""
    return revenue_report_read(owner_books.report(ctx, since=since, until=until))


@metrics.get("/metrics", response_class=Response)
def prometheus(request: Request) -> Response:
    """Prometheus's text format, read now; send the operator's key as a bearer token."""
    body = metrics_exposition.exposition(request.app.state.metrics)
    return Response(body, media_type=metrics_exposition.CONTENT_TYPE)


def revenue_report_read(books: owner_books.OwnerBooks) -> RevenueReportRead:
    fleet = books.fleet
    return RevenueReportRead(
        since=books.since,
        until=books.until,
        engine=books.engine,
        window_seconds=fleet.window_seconds,
        pools=[_pool(p, books.revenue_of(p.pool)) for p in books.pools],
        revenue=[RevenueRowRead.model_validate(r, from_attributes=True) for r in books.revenue],
        showback=[
            ShowbackRead(
                pool=s.pool,
                team=s.team,
                gpu_seconds=s.gpu_seconds,
                gpu_hours=gpu_hours(s.gpu_seconds),
                price_per_gpu_hour=s.price,
                amount=s.amount,
            )
            for p in books.pools
            for s in p.showback
        ],
        totals=_pool(fleet, books.revenue_of()),
    )


def _pool(books: PoolBooks, revenue: Decimal) -> PoolBooksRead:
    seconds = {
        "capacity": books.capacity,
        **{tier.value: books.by_tier.get(tier, 0) for tier in Tier},
        "idle": books.idle,
        "sold": books.sold,
        "would_be_idle": books.would_be_idle,
    }
    return PoolBooksRead(
        pool=books.pool,
        gpus=books.gpus,
        on_demand_price=books.on_demand,
        gpu_seconds=seconds,
        gpu_hours={name: gpu_hours(value) for name, value in seconds.items()},
        sold_share=books.sold_share,
        revenue=revenue,
        showback=books.showback_amount,
    )
