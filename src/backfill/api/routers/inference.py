"""The OpenAI-compatible routes (served by the gateway), and the operator's deployments."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from backfill.api.auth import context, operator
from backfill.api.inference_schemas import (
    DeploymentCreate,
    DeploymentList,
    DeploymentRead,
    DeploymentScale,
    RateLimitRead,
    RateLimitSet,
    ReplicaRead,
)
from backfill.domain.tiers import Tier
from backfill.inference.gateway import Gateway
from backfill.services import deployments as deployment_service
from backfill.services.context import Context
from backfill.services.deployments import DeploymentSpec
from backfill.store.models import Deployment, RateLimit

router = APIRouter(tags=["inference"])
admin = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])


def gateway(request: Request) -> Gateway:
    found: Gateway = request.app.state.runtime.gateway
    return found


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    """The models you may use (OpenAI's list of models)."""
    return await gateway(request).models(request.headers.get("authorization"))


@router.get("/v1/models/{model:path}")
async def retrieve_model(model: str, request: Request) -> Response:
    """One model you may use (OpenAI's retrieve model); 404 when it is not yours to use."""
    return await gateway(request).models(request.headers.get("authorization"), model)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """OpenAI's chat completions, streamed (SSE) or not."""
    body = await request.body()
    return await gateway(request).complete(
        "chat.completions", request.headers.get("authorization"), body
    )


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    """OpenAI's (legacy) text completions, streamed (SSE) or not."""
    body = await request.body()
    return await gateway(request).complete(
        "completions", request.headers.get("authorization"), body
    )


def deployment_read(request: Request, deployment: Deployment) -> DeploymentRead:
    running = [
        ReplicaRead(
            id=r.id, state=r.state, url=r.url, pid=r.pid, in_flight=r.in_flight, served=r.served
        )
        for r in request.app.state.runtime.supervisor.replicas(deployment.id)
    ]
    return DeploymentRead.model_validate(
        {**{c: getattr(deployment, c) for c in _COLUMNS}, "running": running}
    )


_COLUMNS = (
    "id",
    "model",
    "engine",
    "weights",
    "replicas",
    "tier",
    "pool",
    "gpus",
    "context_length",
    "tenant_id",
    "created_at",
)


@admin.post("/deployments", response_model=DeploymentRead, status_code=status.HTTP_201_CREATED)
def create_deployment(
    body: DeploymentCreate, request: Request, ctx: Context = Depends(context)
) -> DeploymentRead:
    """Serve a model: its replicas are placed on the fleet and started."""
    spec = DeploymentSpec(**{**body.model_dump(), "tier": Tier(body.tier)})
    deployment = deployment_service.create(ctx, spec=spec)
    gateway(request).forget()
    return deployment_read(request, deployment)


@admin.get("/deployments", response_model=DeploymentList)
def list_deployments(request: Request, ctx: Context = Depends(context)) -> DeploymentList:
    return DeploymentList(
        data=[deployment_read(request, d) for d in deployment_service.get_all(ctx)]
    )


@admin.patch("/deployments/{deployment_id}", response_model=DeploymentRead)
def scale_deployment(
    deployment_id: str, body: DeploymentScale, request: Request, ctx: Context = Depends(context)
) -> DeploymentRead:
    deployment = deployment_service.scale(ctx, deployment_id=deployment_id, replicas=body.replicas)
    return deployment_read(request, deployment)


@admin.delete("/deployments/{deployment_id}", response_model=DeploymentRead)
def delete_deployment(
    deployment_id: str, request: Request, ctx: Context = Depends(context)
) -> DeploymentRead:
    deployment = deployment_service.delete(ctx, deployment_id=deployment_id)
    gateway(request).forget()
    return deployment_read(request, deployment)


def _limit(
    request: Request, ctx: Context, tenant_id: str, key_id: str | None, body: RateLimitSet
) -> RateLimitRead:
    row: RateLimit = deployment_service.set_rate_limit(
        ctx, tenant_id=tenant_id, key_id=key_id, **body.model_dump()
    )
    gateway(request).forget()
    return RateLimitRead.model_validate(row, from_attributes=True)


@admin.put("/tenants/{tenant_id}/rate-limits", response_model=RateLimitRead)
def set_tenant_rate_limit(
    tenant_id: str, body: RateLimitSet, request: Request, ctx: Context = Depends(context)
) -> RateLimitRead:
    """Requests and tokens per minute for all of a tenant's keys together (null: no limit)."""
    return _limit(request, ctx, tenant_id, None, body)


@admin.put("/tenants/{tenant_id}/keys/{key_id}/rate-limits", response_model=RateLimitRead)
def set_key_rate_limit(
    tenant_id: str,
    key_id: str,
    body: RateLimitSet,
    request: Request,
    ctx: Context = Depends(context),
) -> RateLimitRead:
    """Requests and tokens per minute for one of a tenant's keys."""
    return _limit(request, ctx, tenant_id, key_id, body)
