"""The fleet as tenants and the operator see it: the catalog, utilization, the owner's work."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select

from backfill.domain.admission import available_now
from backfill.domain.fleet import Fleet
from backfill.domain.tiers import EXTERNAL_TIERS, Tier
from backfill.engines.base import WorkloadSpec, WorkloadView
from backfill.errors import InvalidFleetFile, InvalidRequest, NotFound
from backfill.inventory import load_fleet
from backfill.services.context import Context
from backfill.services.ids import new_id
from backfill.services.leases import committed_gpus
from backfill.services.sync import current_price, sync
from backfill.services.usage import measure
from backfill.store.models import LeaseSegment, Tenant


@dataclass(frozen=True)
class PoolView:
    key: str
    region: str
    accelerator: str
    nodes: int
    gpus_per_node: int
    gpus: int
    notice_seconds: int
    sellable_floor: int
    prices: dict[str, Decimal]
    available: dict[str, int]
    by_tier: dict[str, int]
    idle: int
    claimed: int
    down: int
    """GPUs of nodes out of service: neither held nor idle."""
    queued_gpus: int
    revenue: Decimal


def pools(ctx: Context) -> tuple[datetime, list[PoolView]]:
    """Every pool with its prices, what can be had in each tier, use per tier and revenue."""
    sync(ctx)
    now = ctx.engine_now()
    usage = {u.pool: u for u in ctx.engine.usage()}
    views: list[PoolView] = []
    with ctx.unit_of_work() as session:
        revenue: dict[str, Decimal] = {}
        for segment in session.scalars(select(LeaseSegment)):
            revenue[segment.pool] = (
                revenue.get(segment.pool, Decimal(0)) + measure(segment, now).cost
            )
        for pool in ctx.engine.fleet().pools:
            use = usage[pool.key]
            committed = committed_gpus(session, pool.key, now, None)
            views.append(
                PoolView(
                    key=pool.key,
                    region=pool.region,
                    accelerator=pool.accelerator,
                    nodes=len(pool.nodes),
                    gpus_per_node=pool.max_node_gpus,
                    gpus=pool.gpus,
                    notice_seconds=pool.notice_seconds,
                    sellable_floor=pool.floor,
                    prices={
                        t.value: current_price(ctx, session, pool.key, t, now)
                        for t in EXTERNAL_TIERS
                    },
                    available={
                        t.value: available_now(t, use, pool.floor, committed)
                        for t in EXTERNAL_TIERS
                    },
                    by_tier={t.value: use.by_tier.get(t, 0) for t in Tier},
                    idle=use.idle,
                    claimed=use.claimed,
                    down=use.down,
                    queued_gpus=use.queued_gpus,
                    revenue=revenue.get(pool.key, Decimal(0)).quantize(Decimal("0.01")),
                )
            )
    return now, views


def dashboard(ctx: Context) -> dict[str, Any]:
    """The operator's live view, as the terminal shows it."""
    now, views = pools(ctx)
    with ctx.unit_of_work() as session:
        tenants = session.scalar(select(func.count()).select_from(Tenant)) or 0
    totals = {t.value: sum(v.by_tier[t.value] for v in views) for t in Tier}
    return {
        "engine": ctx.engine.name,
        "now": now,
        "tenants": tenants,
        "gpus": sum(v.gpus for v in views),
        "by_tier": totals,
        "idle": sum(v.idle for v in views),
        "down": sum(v.down for v in views),
        "revenue": sum((v.revenue for v in views), Decimal(0)),
        "pools": views,
    }


FLEET_FILE_SUFFIXES = (".yaml", ".yml", ".toml", ".csv")


def check_file(*, filename: str, content: bytes) -> Fleet:
    """Validate an uploaded fleet file (YAML, TOML) or inventory CSV; changes nothing.

    Errors are ``InvalidFleetFile`` naming the uploaded file, the line and the field.
    """
    name = PurePosixPath(filename).name
    if name != filename or not name or name.startswith("."):
        raise InvalidRequest("give a plain file name, such as fleet.yaml", field="filename")
    if PurePosixPath(name).suffix.lower() not in FLEET_FILE_SUFFIXES:
        raise InvalidRequest(
            "the file name must end in " + ", ".join(FLEET_FILE_SUFFIXES), field="filename"
        )
    with tempfile.TemporaryDirectory(prefix="backfill-fleet-") as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            return load_fleet(path)
        except InvalidFleetFile as exc:
            exc.path = name  # the name the operator knows, not our temporary copy's
            raise


def submit_internal(
    ctx: Context,
    *,
    gpus: int,
    region: str | None,
    accelerator: str | None,
    duration: int | None,
    team: str,
) -> WorkloadView:
    """Submit the owner's own work to the engine, as its teams would (it queues if it must)."""
    fleet = ctx.engine.fleet()
    candidates = list(fleet.matching(region, accelerator))
    if not candidates:
        raise InvalidRequest(f"no pool of {accelerator} in {region}", field="accelerator")
    if len(candidates) > 1:
        raise InvalidRequest(
            "internal work names one pool: give region and accelerator", field="region"
        )
    spec = WorkloadSpec(
        id=new_id("job"),
        tier=Tier.INTERNAL,
        pool=candidates[0].key,
        gpus=gpus,
        owner=team,
        duration=duration,
        queue=True,
    )
    with ctx.lock:
        view = ctx.engine.submit(spec)
    sync(ctx)
    return ctx.engine.workload(view.spec.id)


def internal_work(ctx: Context) -> list[WorkloadView]:
    return ctx.engine.workloads(tier=Tier.INTERNAL)


def end_internal(ctx: Context, *, job_id: str) -> WorkloadView:
    try:
        view = ctx.engine.workload(job_id)
    except NotFound:
        raise NotFound(f"no internal job {job_id!r}") from None
    if view.spec.tier is not Tier.INTERNAL:
        raise NotFound(f"no internal job {job_id!r}")
    with ctx.lock:
        ctx.engine.stop(job_id)
    sync(ctx)
    return ctx.engine.workload(job_id)
