"""Bodies of the deployment and rate-limit routes (the OpenAI routes take OpenAI's own)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from backfill.api.schemas import Strict


class DeploymentCreate(Strict):
    model: str = Field(min_length=1, max_length=128, description="the name tenants ask for")
    engine: Literal["llama.cpp", "vllm"] = "llama.cpp"
    weights: str = Field(
        min_length=1,
        max_length=1024,
        description="a path, or pkg:<package>/<file> for weights a Python package ships",
    )
    replicas: int = Field(1, ge=0, le=64)
    tier: Literal["on_demand", "spot", "internal"] = "on_demand"
    pool: str | None = Field(None, max_length=160, description="default: the fleet's first")
    gpus: int = Field(1, ge=1, le=512, description="GPUs per replica")
    context_length: int = Field(2048, ge=256, le=1_048_576)
    tenant_id: str | None = Field(None, max_length=40, description="private to this tenant")


class DeploymentScale(Strict):
    replicas: int = Field(ge=0, le=64)


class ReplicaRead(BaseModel):
    id: str
    state: Literal["placed", "starting", "ready"]
    url: str
    pid: int | None
    in_flight: int
    served: int


class DeploymentRead(BaseModel):
    id: str
    object: Literal["deployment"] = "deployment"
    model: str
    engine: str
    weights: str
    replicas: int
    tier: str
    pool: str
    gpus: int
    context_length: int
    tenant_id: str | None
    created_at: datetime
    running: list[ReplicaRead]


class DeploymentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeploymentRead]


class RateLimitSet(Strict):
    requests_per_minute: int | None = Field(None, ge=1, le=10**9)
    tokens_per_minute: int | None = Field(None, ge=1, le=10**9)


class RateLimitRead(BaseModel):
    tenant_id: str
    scope: str
    requests_per_minute: int | None
    tokens_per_minute: int | None
