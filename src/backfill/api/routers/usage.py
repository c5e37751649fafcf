from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from backfill.api.auth import context, tenant_id
from backfill.api.schemas import UsageRead, UsageSegment
from backfill.services import usage as usage_service
from backfill.services.context import Context
from backfill.services.usage import UsageReport

router = APIRouter(tags=["usage"])


def usage_read(report: UsageReport) -> UsageRead:
    return UsageRead(
        as_of=report.as_of,
        segments=[
            UsageSegment(
                lease_id=s.lease_id,
                pool=s.pool,
                tier=s.tier,
                gpus=s.gpus,
                price_per_gpu_hour=s.price,
                started_at=s.started_at,
                ended_at=s.ended_at,
                seconds=s.seconds,
                cost=s.cost,
            )
            for s in report.segments
        ],
        gpu_seconds=report.gpu_seconds,
        cost=report.cost,
    )


@router.get("/v1/usage", response_model=UsageRead)
def get_usage(
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    lease_id: str | None = Query(None, max_length=40),
) -> UsageRead:
    """Per-second usage of every lease segment (a stretch at one price) and its cost so far."""
    return usage_read(usage_service.segments(ctx, tenant_id=tenant, lease_id=lease_id))
