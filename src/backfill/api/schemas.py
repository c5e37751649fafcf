"""Request and response bodies. Money is a decimal string; times are RFC 3339 UTC."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator

from backfill.api import nul
from backfill.services.fleet import PoolView

Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, max_digits=13, decimal_places=6)]


class Strict(BaseModel):
    """A request body: unknown fields and NUL characters in text are refused."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return nul.refuse_in_text(value)


class LeaseCreate(Strict):
    tier: Literal["on_demand", "spot", "reserved"]
    gpus: int = Field(ge=1, le=65_536, description="GPUs; more than one node's must be whole nodes")
    region: Name | None = None
    accelerator: Name | None = None
    max_price: Price | None = Field(None, description="spot: the most per GPU-hour you will pay")
    start: AwareDatetime | None = Field(None, description="reserved: when the period starts")
    end: AwareDatetime | None = Field(None, description="reserved: when the period ends")
    command: str | None = Field(None, max_length=4096)
    duration: int | None = Field(
        None, ge=1, le=366 * 86_400, description="sim engine: seconds the command runs"
    )


class Notice(BaseModel):
    notice_at: datetime
    stop_at: datetime
    reason: str | None


class LeaseRead(BaseModel):
    id: str
    object: Literal["lease"] = "lease"
    tenant_id: str
    tier: str
    pool: str
    region: str
    accelerator: str
    gpus: int
    state: str
    command: str | None
    duration: int | None
    max_price: Decimal | None
    start: datetime | None
    end: datetime | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    notice: Notice | None
    exit_code: int | None
    end_reason: str | None = Field(
        description="Why the lease ended, as the engine said (a failed node names the node)"
    )
    allocation: dict[str, list[int]]


class LeaseList(BaseModel):
    object: Literal["list"] = "list"
    data: list[LeaseRead]


class InstanceType(BaseModel):
    id: str
    region: str
    accelerator: str
    gpus_per_node: int
    nodes: int
    gpus: int
    notice_seconds: int
    prices: dict[str, Decimal] = Field(description="per GPU-hour, per tier")
    available: dict[str, int] = Field(description="GPUs that can be had now, per tier")


class InstanceTypeList(BaseModel):
    object: Literal["list"] = "list"
    data: list[InstanceType]


class UsageSegment(BaseModel):
    lease_id: str
    pool: str
    tier: str
    gpus: int
    price_per_gpu_hour: Decimal
    started_at: datetime
    ended_at: datetime | None
    seconds: int
    cost: Decimal


class UsageRead(BaseModel):
    object: Literal["usage"] = "usage"
    as_of: datetime
    segments: list[UsageSegment]
    gpu_seconds: int
    cost: Decimal


class DifferenceRead(BaseModel):
    lease_id: str
    tenant_id: str | None
    metered_gpu_seconds: int
    engine_gpu_seconds: int
    gpu_seconds: int = Field(description="metered minus accounted")
    reason: str
    engine_id: str | None = Field(description="the engine's id of the job (Slurm job id)")
    engine_state: str | None


class ReconciliationRead(BaseModel):
    object: Literal["reconciliation"] = "reconciliation"
    since: datetime
    until: datetime
    engine: str
    leases: int
    metered_gpu_seconds: int
    engine_gpu_seconds: int
    differences: list[DifferenceRead]


class WebhookSet(Strict):
    url: str = Field(min_length=1, max_length=2048)


class WebhookRead(BaseModel):
    url: str | None
    secret: str | None = Field(description="HMAC-SHA256 key of the Backfill-Signature header")


class TenantCreate(Strict):
    name: Name


class TenantRead(BaseModel):
    id: str
    name: str
    created_at: datetime
    gpu_quota: int | None = Field(None, description="most GPUs its leases may hold at once")


class QuotaSet(Strict):
    gpus: StrictInt | None = Field(
        ge=0,
        le=1_000_000,
        description="most GPUs the tenant's leases may hold at once; null: no limit",
    )


class KeyRead(BaseModel):
    id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyRead]


class KeyCreated(BaseModel):
    id: str
    api_key: str = Field(description="shown once: store it now")


class TenantCreated(BaseModel):
    tenant: TenantRead
    api_key: str = Field(description="shown once: store it now")


class InternalJobCreate(Strict):
    gpus: int = Field(ge=1, le=65_536)
    region: Name | None = None
    accelerator: Name | None = None
    duration: int | None = Field(None, ge=1, le=366 * 86_400)
    team: Name = "owner"


class InternalJobRead(BaseModel):
    id: str
    team: str
    pool: str
    gpus: int
    state: str
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    allocation: dict[str, list[int]]


class PoolRead(BaseModel):
    id: str
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
    down: int = Field(description="GPUs of nodes out of service: neither held nor idle")
    queued_gpus: int
    revenue: Decimal


class Dashboard(BaseModel):
    engine: str
    now: datetime
    tenants: int
    gpus: int
    by_tier: dict[str, int]
    idle: int
    down: int
    revenue: Decimal
    pools: list[PoolRead]


class FleetRead(BaseModel):
    name: str
    regions: list[str]
    accelerators: list[str]
    nodes: int
    gpus: int
    pools: list[PoolRead]


class FleetSummary(BaseModel):
    name: str
    regions: list[str]
    accelerators: list[str]
    pools: list[str]
    nodes: int
    gpus: int


class AdvanceRequest(Strict):
    seconds: int = Field(ge=1, le=366 * 86_400)


class ClockRead(BaseModel):
    now: datetime
    manual: bool


def pool_read(view: PoolView) -> PoolRead:
    return PoolRead.model_validate({**asdict(view), "id": view.key})


class EventRejection(BaseModel):
    index: int = Field(description="the event's place in the batch, from 0")
    id: str | None
    source: str | None
    message: str
    field: str | None


class IngestRead(BaseModel):
    object: Literal["ingest_result"] = "ingest_result"
    accepted: int = Field(description="events stored now for the first time")
    duplicates: int = Field(description="valid events stored already: counted once, not again")
    rejected: list[EventRejection]


class EventRead(BaseModel):
    seq: int = Field(description="the order in which Backfill stored it")
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: dict[str, Any]
    extensions: dict[str, Any] | None
    received_at: datetime


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventRead]
    next_after: int | None = Field(description="pass as ?after= for the next page; null: no more")


class MeterTotalRead(BaseModel):
    type: str
    key: str = Field(description="what is priced: the model or the tool")
    events: int
    units: dict[str, int]


class MeterTotals(BaseModel):
    object: Literal["meter_totals"] = "meter_totals"
    since: datetime | None
    until: datetime | None
    data: list[MeterTotalRead]


Amount = Annotated[Decimal, Field(gt=0, le=1_000_000_000, max_digits=16, decimal_places=6)]


class BudgetRead(BaseModel):
    object: Literal["budget"] = "budget"
    scope: str = Field(description='"tenant" (its prepaid credit) or the id of one of its keys')
    limit: Decimal
    held: Decimal = Field(description="reserved for work under way")
    spent: Decimal = Field(description="settled holds")
    leases: Decimal = Field(description="running cost of the tenant's leases since it began")
    available: Decimal


class BudgetList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BudgetRead]


class CreditGrantCreate(Strict):
    amount: Amount
    note: str | None = Field(None, max_length=200)


class KeyLimitSet(Strict):
    limit: (
        Annotated[Decimal, Field(ge=0, le=1_000_000_000, max_digits=16, decimal_places=6)] | None
    ) = Field(description="the most the key may spend; null: no cap of its own")


class HoldCreate(Strict):
    tenant_id: str = Field(min_length=1, max_length=40)
    key_id: str | None = Field(None, min_length=1, max_length=40)
    amount: Amount
    description: str | None = Field(None, max_length=200)


class HoldSettle(Strict):
    amount: Annotated[Decimal, Field(ge=0, le=1_000_000_000, max_digits=16, decimal_places=6)]


class HoldRead(BaseModel):
    object: Literal["spend_hold"] = "spend_hold"
    id: str
    tenant_id: str
    key_id: str | None
    amount: Decimal
    state: str
    settled_amount: Decimal | None
    description: str | None
    created_at: datetime
    closed_at: datetime | None


class PoolBooksRead(BaseModel):
    pool: str
    gpus: int
    on_demand_price: Decimal | None = Field(
        description="list price per GPU-hour: what showback charges (null in the totals)"
    )
    gpu_seconds: dict[str, int] = Field(
        description="capacity (GPUs × window), internal, reserved, on_demand, spot, idle (left "
        "idle), sold (every external tier), would_be_idle (capacity − internal)"
    )
    gpu_hours: dict[str, Decimal] = Field(description="the same, in GPU-hours (4 places)")
    sold_share: Decimal | None = Field(
        description="sold / would_be_idle; null when the owner's work left nothing free"
    )
    revenue: Decimal
    showback: Decimal = Field(description="internal GPU-hours at the on-demand list price")


class RevenueRowRead(BaseModel):
    product: str = Field(description="gpu, inference, finetune or tool")
    pool: str | None
    tier: str | None
    tenant_id: str
    tenant_name: str | None
    amount: Decimal


class ShowbackRead(BaseModel):
    pool: str
    team: str = Field(description="the owner's team (the engine's account of the work)")
    gpu_seconds: int
    gpu_hours: Decimal
    price_per_gpu_hour: Decimal
    amount: Decimal


class RevenueReportRead(BaseModel):
    object: Literal["revenue_report"] = "revenue_report"
    since: datetime
    until: datetime = Field(description="the end asked for, capped at the engine's now")
    engine: str
    window_seconds: int
    pools: list[PoolBooksRead]
    revenue: list[RevenueRowRead]
    showback: list[ShowbackRead]
    totals: PoolBooksRead = Field(description="every pool added up (pool: all)")


class NodeDown(Strict):
    reason: str = Field(min_length=1, max_length=200, description="why it is out of service")


class NodeRead(BaseModel):
    object: Literal["node"] = "node"
    name: str
    pool: str
    state: Literal["down", "up"]
