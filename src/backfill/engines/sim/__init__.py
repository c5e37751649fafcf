"""The built-in ``sim`` engine: a discrete-event model of a GPU cluster that enforces the tiers."""

from backfill.engines.sim.clock import Clock, ManualClock, WallClock
from backfill.engines.sim.engine import SimEngine
from backfill.engines.sim.owner import OwnerSource, OwnerWorkload, TraceOwner

__all__ = [
    "Clock",
    "ManualClock",
    "OwnerSource",
    "OwnerWorkload",
    "SimEngine",
    "TraceOwner",
    "WallClock",
]
