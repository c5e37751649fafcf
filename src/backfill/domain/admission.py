"""Admission under the sellable floor.

Reserved and on-demand leases are sold only under the pool's sellable floor: the GPUs the owner's
own work is expected to leave free. Spot is admitted against what is idle this minute and is
taken back when the owner needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from backfill.domain.tiers import Tier


@dataclass(frozen=True, kw_only=True)
class PoolLoad:
    """What one pool holds now, in GPUs."""

    total: int
    by_tier: Mapping[Tier, int]
    """GPUs held now by running (and noticed) work of each tier."""
    claimed: int = 0
    """Idle GPUs promised to work that waits for noticed holders to stop."""
    down: int = 0
    """GPUs of nodes out of service: neither busy nor idle."""

    @property
    def busy(self) -> int:
        return sum(self.by_tier.values())

    @property
    def idle(self) -> int:
        return max(0, self.total - self.busy - self.claimed - self.down)


def floor_headroom(floor: int, committed: int) -> int:
    """GPUs still sellable as reserved or on-demand, given ``committed`` already sold."""
    return max(0, floor - committed)


def available_now(tier: Tier, load: PoolLoad, floor: int, committed: int) -> int:
    """How many GPUs a tenant can have in ``tier`` right now (ignoring node shape)."""
    if tier is Tier.SPOT:
        return load.idle
    if tier is Tier.ON_DEMAND:
        # On-demand may take spot's GPUs (spot gets its notice); it never takes internal work's.
        reclaimable = load.idle + load.by_tier.get(Tier.SPOT, 0)
        return min(floor_headroom(floor, committed), reclaimable)
    if tier is Tier.RESERVED:
        return floor_headroom(floor, committed)
    return 0
