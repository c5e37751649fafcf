from __future__ import annotations

from fastapi import APIRouter, Depends

from backfill.api.auth import context, tenant_id
from backfill.api.schemas import InstanceType, InstanceTypeList, pool_read
from backfill.services import fleet as fleet_service
from backfill.services.context import Context

router = APIRouter(tags=["catalog"])


@router.get("/v1/instance-types", response_model=InstanceTypeList)
def list_instance_types(
    ctx: Context = Depends(context), _tenant: str = Depends(tenant_id)
) -> InstanceTypeList:
    """Every pool with its price per GPU-hour and the GPUs that can be had now, per tier."""
    _now, views = fleet_service.pools(ctx)
    return InstanceTypeList(
        data=[InstanceType.model_validate(pool_read(v).model_dump()) for v in views]
    )
