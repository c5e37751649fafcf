"""Fleet engines: the muscle that runs workloads and enforces the tiers, behind one port."""

from backfill.engines.base import (
    AccountRecord,
    EngineEvent,
    EventKind,
    FleetEngine,
    Outcome,
    PoolUsage,
    WorkloadSpec,
    WorkloadState,
    WorkloadView,
)

__all__ = [
    "AccountRecord",
    "EngineEvent",
    "EventKind",
    "FleetEngine",
    "Outcome",
    "PoolUsage",
    "WorkloadSpec",
    "WorkloadState",
    "WorkloadView",
]
