"""Deployments: models served behind the gateway, each with replicas on the fleet.

The operator creates a deployment (public, or private to one tenant); the replica supervisor
(``inference.replicas``) then keeps its replicas placed and running. Tenants see a deployment
through ``GET /v1/models`` only when it is public or theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.domain.placement import ShapeError, check_shape
from backfill.domain.tiers import Tier
from backfill.errors import Conflict, InvalidRequest, NotFound
from backfill.inference.workers import ENGINES, resolve_weights
from backfill.services.context import Context
from backfill.services.ids import new_id
from backfill.services.tenants import existing, owned_key
from backfill.store.models import Deployment, RateLimit

_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
MAX_REPLICAS = 64


@dataclass(frozen=True)
class DeploymentSpec:
    model: str
    engine: str
    weights: str
    replicas: int = 1
    tier: Tier = Tier.ON_DEMAND
    pool: str | None = None
    gpus: int = 1
    context_length: int = 2048
    tenant_id: str | None = None


def create(ctx: Context, *, spec: DeploymentSpec) -> Deployment:
    """Record a deployment; its replicas are placed and started by the supervisor."""
    if not _MODEL.match(spec.model):
        raise InvalidRequest("a model name is 1..128 letters, digits and . _ : / -", field="model")
    if spec.engine not in ENGINES:
        raise InvalidRequest(f"engine is one of {', '.join(ENGINES)}", field="engine")
    if spec.engine == "llama.cpp":
        resolve_weights(spec.weights)  # says why when the file is not there
    if not 0 <= spec.replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"replicas is 0..{MAX_REPLICAS}", field="replicas")
    if spec.tier is Tier.RESERVED:
        raise InvalidRequest("a deployment runs on_demand, spot or internal", field="tier")
    fleet = ctx.engine.fleet()
    pool_key = spec.pool or fleet.pools[0].key
    if not fleet.has_pool(pool_key):
        raise InvalidRequest(f"no pool {pool_key!r} in this fleet", field="pool")
    try:
        check_shape(spec.gpus, [node.gpus for node in fleet.pool(pool_key).nodes])
    except ShapeError as exc:
        raise InvalidRequest(str(exc), field="gpus") from None
    if not 256 <= spec.context_length <= 1_048_576:
        raise InvalidRequest("context_length is 256..1048576 tokens", field="context_length")
    with ctx.unit_of_work() as session:
        if spec.tenant_id is not None:
            existing(session, spec.tenant_id)
        deployment = Deployment(
            id=new_id("dep"),
            model=spec.model,
            engine=spec.engine,
            weights=spec.weights,
            replicas=spec.replicas,
            tier=spec.tier.value,
            pool=pool_key,
            gpus=spec.gpus,
            context_length=spec.context_length,
            tenant_id=spec.tenant_id,
            state="active",
            created_at=ctx.engine_now(),
        )
        session.add(deployment)
        try:
            session.commit()
        except IntegrityError:
            raise Conflict(
                f"a deployment of {spec.model!r} exists already", field="model"
            ) from None
        return deployment


def get_all(ctx: Context) -> list[Deployment]:
    with ctx.unit_of_work() as session:
        return list(session.scalars(select(Deployment).order_by(Deployment.model)))


def scale(ctx: Context, *, deployment_id: str, replicas: int) -> Deployment:
    if not 0 <= replicas <= MAX_REPLICAS:
        raise InvalidRequest(f"replicas is 0..{MAX_REPLICAS}", field="replicas")
    with ctx.unit_of_work() as session:
        deployment = _get(session, deployment_id)
        deployment.replicas = replicas
        session.commit()
        return deployment


def delete(ctx: Context, *, deployment_id: str) -> Deployment:
    """Remove a deployment; the supervisor stops its replicas at its next pass."""
    with ctx.unit_of_work() as session:
        deployment = _get(session, deployment_id)
        session.delete(deployment)
        session.commit()
        return deployment


def set_rate_limit(
    ctx: Context,
    *,
    tenant_id: str,
    key_id: str | None,
    requests_per_minute: int | None,
    tokens_per_minute: int | None,
) -> RateLimit:
    """Requests and tokens per minute for a tenant (``key_id`` None) or one of its keys."""
    for name, value in (
        ("requests_per_minute", requests_per_minute),
        ("tokens_per_minute", tokens_per_minute),
    ):
        if value is not None and not 1 <= value <= 10**9:
            raise InvalidRequest(f"{name} is 1..10^9, or null for no limit", field=name)
    with ctx.unit_of_work() as session:
        existing(session, tenant_id)
        if key_id is not None:
            owned_key(session, tenant_id, key_id)
        scope = key_id or "tenant"
        row = session.scalar(
            select(RateLimit).where(RateLimit.tenant_id == tenant_id, RateLimit.scope == scope)
        )
        if row is None:
            row = RateLimit(tenant_id=tenant_id, scope=scope)
            session.add(row)
        row.requests_per_minute = requests_per_minute
        row.tokens_per_minute = tokens_per_minute
        try:
            session.commit()
        except IntegrityError:
            raise Conflict("the limit changed at the same time; try again") from None
        return row


def _get(session: Session, deployment_id: str) -> Deployment:
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise NotFound(f"no deployment {deployment_id!r}")
    return deployment
