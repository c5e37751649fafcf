from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Query, status

from backfill.api.auth import context, tenant_id
from backfill.api.schemas import LeaseCreate, LeaseList, LeaseRead, Notice
from backfill.domain.leases import LeaseState
from backfill.domain.tiers import Tier
from backfill.errors import NotFound
from backfill.services import leases as lease_service
from backfill.services.context import Context
from backfill.services.documents import lease_document
from backfill.store.models import Lease

router = APIRouter(tags=["leases"])


def _read(lease: Lease) -> LeaseRead:
    return LeaseRead.model_validate(lease_document(lease))


@router.post("/v1/leases", response_model=LeaseRead, status_code=status.HTTP_201_CREATED)
def create_lease(
    body: LeaseCreate,
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    idempotency_key: str | None = Header(None, max_length=255, min_length=1),
) -> LeaseRead:
    """Lease GPUs. Retry with the same ``Idempotency-Key`` to get the same lease back."""
    request = lease_service.LeaseRequest(
        tier=Tier(body.tier),
        gpus=body.gpus,
        region=body.region,
        accelerator=body.accelerator,
        max_price=body.max_price,
        start=body.start,
        end=body.end,
        command=body.command,
        duration=body.duration,
    )
    lease = lease_service.create(
        ctx, tenant_id=tenant, request=request, idempotency_key=idempotency_key
    )
    return _read(lease)


@router.get("/v1/leases", response_model=LeaseList)
def list_leases(
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
    state: LeaseState | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> LeaseList:
    leases = lease_service.get_all(ctx, tenant_id=tenant, state=state, limit=limit)
    return LeaseList(data=[_read(lease) for lease in leases])


@router.get("/v1/leases/{lease_id}", response_model=LeaseRead)
def get_lease(
    lease_id: str, ctx: Context = Depends(context), tenant: str = Depends(tenant_id)
) -> LeaseRead:
    return _read(lease_service.get(ctx, tenant_id=tenant, lease_id=lease_id))


@router.get("/v1/leases/{lease_id}/notice", response_model=Notice)
def get_notice(
    lease_id: str, ctx: Context = Depends(context), tenant: str = Depends(tenant_id)
) -> Notice:
    """The lease's spot notice, 404 while it has none (as a cloud's instance-action endpoint)."""
    notice = _read(lease_service.get(ctx, tenant_id=tenant, lease_id=lease_id)).notice
    if notice is None:
        raise NotFound("this lease has no notice")
    return notice


@router.delete("/v1/leases/{lease_id}", response_model=LeaseRead)
def stop_lease(
    lease_id: str, ctx: Context = Depends(context), tenant: str = Depends(tenant_id)
) -> LeaseRead:
    """Stop the lease now; billing ends now. Stopping an ended lease returns it unchanged."""
    return _read(lease_service.stop(ctx, tenant_id=tenant, lease_id=lease_id))
