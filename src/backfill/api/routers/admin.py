"""The operator's routes: the fleet, tenants and keys, the owner's work, the clock."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import AwareDatetime
from starlette.concurrency import run_in_threadpool

from backfill.api.auth import context, operator
from backfill.api.routers.keys import key_read
from backfill.api.routers.usage import usage_read
from backfill.api.schemas import (
    AdvanceRequest,
    ClockRead,
    Dashboard,
    FleetRead,
    FleetSummary,
    InternalJobCreate,
    InternalJobRead,
    KeyCreated,
    KeyRead,
    NodeDown,
    NodeRead,
    QuotaSet,
    ReconciliationRead,
    TenantCreate,
    TenantCreated,
    TenantRead,
    UsageRead,
    pool_read,
)
from backfill.engines.base import WorkloadView
from backfill.engines.sim import ManualClock
from backfill.errors import InvalidRequest
from backfill.services import fleet as fleet_service
from backfill.services import nodes as node_service
from backfill.services import reconcile as reconcile_service
from backfill.services import tenants as tenant_service
from backfill.services import usage as usage_service
from backfill.services.context import Context, to_datetime
from backfill.store.models import Tenant

router = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])


@router.get("/fleet", response_model=FleetRead)
def show_fleet(ctx: Context = Depends(context)) -> FleetRead:
    fleet = ctx.engine.fleet()
    _, views = fleet_service.pools(ctx)
    return FleetRead(
        name=fleet.name,
        regions=list(fleet.regions),
        accelerators=list(fleet.accelerators),
        nodes=fleet.node_count,
        gpus=fleet.gpus,
        pools=[pool_read(v) for v in views],
    )


@router.post("/fleet/check", response_model=FleetSummary)
async def check_fleet_file(
    request: Request, filename: str = Query(min_length=1, max_length=255)
) -> FleetSummary:
    """Validate a fleet file (YAML, TOML) or inventory CSV sent as the body; changes nothing."""
    content = await request.body()
    fleet = await run_in_threadpool(fleet_service.check_file, filename=filename, content=content)
    return FleetSummary(
        name=fleet.name,
        regions=list(fleet.regions),
        accelerators=list(fleet.accelerators),
        pools=[pool.key for pool in fleet.pools],
        nodes=fleet.node_count,
        gpus=fleet.gpus,
    )


@router.get("/dashboard", response_model=Dashboard)
def show_dashboard(ctx: Context = Depends(context)) -> Dashboard:
    """What the terminal's live view shows: use per tier per pool, spot prices, revenue."""
    data = fleet_service.dashboard(ctx)
    data["pools"] = [pool_read(v) for v in data["pools"]]
    return Dashboard(**data)


@router.get("/usage", response_model=UsageRead)
def all_usage(ctx: Context = Depends(context)) -> UsageRead:
    return usage_read(usage_service.segments(ctx, tenant_id=None))


@router.get("/reconciliation", response_model=ReconciliationRead)
def reconciliation(
    since: AwareDatetime = Query(description="start of the window (with its time zone)"),
    until: AwareDatetime | None = Query(None, description="end of the window (default: now)"),
    ctx: Context = Depends(context),
) -> ReconciliationRead:
    """Metered GPU-seconds per lease against the engine's own accounting (Slurm: sacct); every
    difference is listed, none is fixed."""
    end = until if until is not None else ctx.engine_now()
    if end <= since:
        raise InvalidRequest("until must be after since", field="until")
    report = reconcile_service.reconcile(ctx, since=since, until=end)
    return ReconciliationRead.model_validate(report, from_attributes=True)


@router.post("/tenants", response_model=TenantCreated, status_code=status.HTTP_201_CREATED)
def create_tenant(body: TenantCreate, ctx: Context = Depends(context)) -> TenantCreated:
    tenant, key = tenant_service.create(ctx, name=body.name)
    return TenantCreated(tenant=tenant_read(tenant), api_key=key.secret)


@router.get("/tenants", response_model=list[TenantRead])
def list_tenants(ctx: Context = Depends(context)) -> list[TenantRead]:
    return [tenant_read(t) for t in tenant_service.get_all(ctx)]


@router.put("/tenants/{tenant_id}/quota", response_model=TenantRead)
def set_quota(tenant_id: str, body: QuotaSet, ctx: Context = Depends(context)) -> TenantRead:
    """The most GPUs the tenant's leases may hold at once (null: no limit)."""
    return tenant_read(tenant_service.set_quota(ctx, tenant_id=tenant_id, gpus=body.gpus))


def tenant_read(tenant: Tenant) -> TenantRead:
    return TenantRead(
        id=tenant.id, name=tenant.name, created_at=tenant.created_at, gpu_quota=tenant.gpu_quota
    )


@router.post("/meter-keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_meter_key(ctx: Context = Depends(context)) -> KeyCreated:
    """A key for an outside meter: it may send usage events (``POST /v1/events``) for any
    tenant, and do nothing else."""
    key = tenant_service.create_meter_key(ctx)
    return KeyCreated(id=key.key_id, api_key=key.secret)


@router.post(
    "/tenants/{tenant_id}/keys", response_model=KeyCreated, status_code=status.HTTP_201_CREATED
)
def create_key(tenant_id: str, ctx: Context = Depends(context)) -> KeyCreated:
    key = tenant_service.create_key(ctx, tenant_id=tenant_id)
    return KeyCreated(id=key.key_id, api_key=key.secret)


@router.get("/tenants/{tenant_id}/keys", response_model=list[KeyRead])
def list_keys(tenant_id: str, ctx: Context = Depends(context)) -> list[KeyRead]:
    tenant_service.get(ctx, tenant_id=tenant_id)
    return [key_read(k) for k in tenant_service.list_keys(ctx, tenant_id=tenant_id)]


@router.delete("/tenants/{tenant_id}/keys/{key_id}", response_model=KeyRead)
def revoke_key(
    tenant_id: str, key_id: str, request: Request, ctx: Context = Depends(context)
) -> KeyRead:
    k = tenant_service.revoke_key(ctx, tenant_id=tenant_id, key_id=key_id)
    request.app.state.runtime.gateway.forget()  # the gateway's cached keys: this one goes now
    return key_read(k)


def _job(view: WorkloadView) -> InternalJobRead:
    return InternalJobRead(
        id=view.spec.id,
        team=view.spec.owner,
        pool=view.spec.pool,
        gpus=view.spec.gpus,
        state=view.state.value,
        submitted_at=to_datetime(view.submitted_at),
        started_at=to_datetime(view.started_at) if view.started_at is not None else None,
        ended_at=to_datetime(view.ended_at) if view.ended_at is not None else None,
        allocation={node: list(idx) for node, idx in view.allocation.items()},
    )


@router.post("/internal-jobs", response_model=InternalJobRead, status_code=status.HTTP_201_CREATED)
def submit_internal_job(
    body: InternalJobCreate, ctx: Context = Depends(context)
) -> InternalJobRead:
    """Run the owner's own work, as its teams would submit it to the engine; it may queue."""
    view = fleet_service.submit_internal(
        ctx,
        gpus=body.gpus,
        region=body.region,
        accelerator=body.accelerator,
        duration=body.duration,
        team=body.team,
    )
    return _job(view)


@router.get("/internal-jobs", response_model=list[InternalJobRead])
def list_internal_jobs(ctx: Context = Depends(context)) -> list[InternalJobRead]:
    return [_job(v) for v in fleet_service.internal_work(ctx)]


@router.delete("/internal-jobs/{job_id}", response_model=InternalJobRead)
def end_internal_job(job_id: str, ctx: Context = Depends(context)) -> InternalJobRead:
    return _job(fleet_service.end_internal(ctx, job_id=job_id))


@router.post("/nodes/{node}/down", response_model=NodeRead)
def set_node_down(node: str, body: NodeDown, ctx: Context = Depends(context)) -> NodeRead:
    """Take a node out of service (it failed, or for maintenance): the work on it ends at once,
    its leases ``failed``; its GPUs go to no one until it is up. Idempotent."""
    view = node_service.set_down(ctx, node=node, reason=body.reason)
    return NodeRead(name=view.name, pool=view.pool, state=view.state)


@router.post("/nodes/{node}/up", response_model=NodeRead)
def set_node_up(node: str, ctx: Context = Depends(context)) -> NodeRead:
    """Put a node back in service; waiting work may start on it at once. Idempotent."""
    view = node_service.set_up(ctx, node=node)
    return NodeRead(name=view.name, pool=view.pool, state=view.state)


@router.get("/clock", response_model=ClockRead)
def show_clock(request: Request, ctx: Context = Depends(context)) -> ClockRead:
    manual = isinstance(request.app.state.runtime.clock, ManualClock)
    return ClockRead(now=ctx.engine_now(), manual=manual)


@router.post("/clock/advance", response_model=ClockRead)
def advance_clock(body: AdvanceRequest, request: Request) -> ClockRead:
    """Move a manual clock forward (tests and what-ifs); a wall clock answers 409."""
    now = request.app.state.runtime.advance(body.seconds)
    return ClockRead(now=to_datetime(now), manual=True)
