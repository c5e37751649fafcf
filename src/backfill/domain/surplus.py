"""What may be sold of a pool, and when to take GPUs back: the surplus policy.

Two promises pull against each other: the owner's own work must not wait for GPUs it would have
had without leasing, and a lease sold as reserved or on-demand must never be taken back. The
policy keeps both with three rules:

- **Sellable floor** (reserved, on-demand). A lease of ``g`` GPUs over ``[now, end)`` is sold only
  if, at every moment of that window, ``g`` + the reserved and on-demand GPUs already sold
  + the owner's forecast peak demand (the ``confidence`` quantile of the *maximum* over the
  window) + the spot headroom fit the pool. With no forecast yet (too little history), nothing is
  sold under the floor.
- **Spot** fills what is idle now, never while the owner has work queued in the pool, and never
  from the pool's last ``headroom`` whole idle nodes: those are kept for the owner's next arrivals
  (an 8-GPU job needs a whole node), so its work rarely waits for a spot notice to run out.
- **Headroom is restored ahead of need.** When the owner's arrivals eat into the idle nodes, spot
  leases are noticed at once on the nodes that hold nothing but spot (fewest GPUs first), so the
  next idle nodes are on their way before the owner needs them.

A lease's price is checked here too: a spot buyer whose bid is below the price in force is turned
away.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from backfill.domain.tiers import Tier

DEFAULT_CONFIDENCE = 0.99
DEFAULT_HEADROOM = 0.03
DEFAULT_SURGE = 4.0


@dataclass(frozen=True)
class SurplusPolicy:
    """The knobs of a sale policy; ``spot``/``floor`` switch a kind of sale off entirely."""

    spot: bool = True
    floor: bool = False
    """Sell reserved and on-demand under the floor too (off by default: see ``DEFAULT``)."""
    confidence: float = DEFAULT_CONFIDENCE
    """The quantile of the owner's forecast peak that reserved and on-demand sales stay under."""
    headroom: float = DEFAULT_HEADROOM
    """Share of a pool's nodes kept wholly idle for the owner (rounded up: 3 % of 64 is 2)."""
    surge: float = DEFAULT_SURGE
    """The headroom also covers the GPUs the owner asked for in the last ``surge`` notice
    periods: a burst of arrivals is met by noticing spot before the burst eats the headroom."""
    apart: bool = True
    """Spot only on nodes without the owner's work."""

    def __post_init__(self) -> None:
        if not 0 < self.confidence < 1:
            raise ValueError(
                f"confidence must be between 0 and 1 (exclusive), not {self.confidence}"
            )
        if not 0 <= self.headroom < 1:
            raise ValueError(
                f"headroom must be a share of the nodes in [0, 1), not {self.headroom}"
            )

    @property
    def sells(self) -> bool:
        return self.spot or self.floor

    def headroom_nodes(self, nodes: int) -> int:
        return math.ceil(self.headroom * nodes - 1e-9) if self.headroom > 0 else 0

    def name(self) -> str:
        if not self.sells:
            return "no leasing"
        if not self.floor:
            return f"spot only (headroom {self.headroom:.0%})"
        return f"full (confidence {self.confidence:.2f}, headroom {self.headroom:.0%})"


NO_LEASING = SurplusPolicy(spot=False, floor=False)
SPOT_ONLY = SurplusPolicy()
FULL = SurplusPolicy(floor=True)
DEFAULT = SPOT_ONLY
"""The default sells spot only. Replays of four ITP owners (bench/RESULTS.md) show why: their
demand bursts past anything the forecast saw (cluster 07 to 1.9× its GPUs on day 16), and
firm leases, which cannot be taken back, then stand between the owner and its GPUs for hours,
while spot is back with the owner one notice period after the burst begins."""


@dataclass(frozen=True)
class Commitment:
    """GPUs sold as reserved or on-demand over ``[start, end)``."""

    start: float
    end: float
    gpus: int


def committed_peak(commitments: Iterable[Commitment], start: float, end: float) -> int:
    """The most GPUs the commitments hold at once within ``[start, end)``."""
    changes: list[tuple[float, int]] = []
    for c in commitments:
        if c.start < end and c.end > start:
            changes.append((max(c.start, start), c.gpus))
            changes.append((c.end, -c.gpus))
    peak = held = 0
    for _, delta in sorted(changes, key=lambda change: (change[0], change[1])):
        held += delta  # ends sort before starts at the same instant: a hand-over is not a peak
        peak = max(peak, held)
    return peak


def floor_room(*, capacity: int, headroom_gpus: int, owner_peak: float, committed: int) -> int:
    """GPUs that may still be sold as reserved or on-demand over a window."""
    return max(0, capacity - headroom_gpus - math.ceil(owner_peak - 1e-9) - committed)


def spot_refusal(
    *, owner_queued: int, bid: Decimal | None, price: Decimal, idle_gpus: int, gpus: int
) -> str | None:
    """Why a spot ask is turned away before placement, or None."""
    if owner_queued:
        return "owner_queued"
    if bid is not None and bid < price:
        return "bid_below_price"
    if idle_gpus < gpus:
        return "no_idle_gpus"
    return None


@dataclass(frozen=True)
class NodeHold:
    """One node as the headroom rule sees it."""

    name: str
    gpus: int
    free: int
    """GPUs idle and unclaimed."""
    spot: int
    """GPUs held by running spot work not yet noticed."""
    noticed: int
    """GPUs held by spot work already noticed."""
    reserved: bool = False
    """Some of its GPUs are set aside for a reservation: never the owner's, idle or not."""


def nodes_to_free(
    nodes: Sequence[NodeHold], want_idle: int, *, idle: int | None = None
) -> list[str]:
    """The nodes whose spot work to notice so that ``want_idle`` nodes are (or soon will be)
    wholly idle: nodes that hold nothing but spot, the fewest spot GPUs first (a node set aside
    for a reservation is never the owner's headroom).

    ``idle``: how many nodes are wholly idle (and not set aside), when ``nodes`` leaves them
    out; by default they are counted in ``nodes``."""
    nodes = [n for n in nodes if not n.reserved]
    if idle is None:
        idle = sum(1 for n in nodes if n.free == n.gpus)
    coming = sum(1 for n in nodes if n.noticed and n.spot == 0 and n.free + n.noticed == n.gpus)
    missing = want_idle - idle - coming
    if missing <= 0:
        return []
    spot_only = [n for n in nodes if n.spot and n.free + n.spot + n.noticed == n.gpus]
    spot_only.sort(key=lambda n: (n.spot, n.name))
    return [n.name for n in spot_only[:missing]]


def is_breach(tier: Tier, *, interrupted: bool, late_seconds: float) -> bool:
    """A reserved or on-demand lease taken back, or a reservation started late: a broken promise."""
    return tier in (Tier.RESERVED, Tier.ON_DEMAND) and (interrupted or late_seconds > 0)
