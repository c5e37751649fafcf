"""The owner's books over a window: where each pool's GPU-seconds went, and showback.

Over a window of ``W`` seconds a pool of ``G`` GPUs has ``G × W`` GPU-seconds of capacity. The
engine's accounting says what each tier held of it; the rest was left idle, so

    internal + reserved + on_demand + spot + idle = capacity        (exactly, per pool)

What the owner's own work left free (``capacity − internal``, the would-be idle) is what could be
sold; ``sold`` is what the external tiers held of it, and ``sold_share`` their share of it.

**Showback** prices the owner's own (internal) GPU-seconds at the pool's on-demand list price:
what its teams' work would have cost a tenant. It is reported, never billed: one figure per pool
and team, ``GPU-seconds × price / 3600`` rounded half-even to the micro-unit once per figure, so
a pool's showback is the exact sum of its teams'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from backfill.domain.metering import SECONDS_PER_HOUR, segment_cost
from backfill.domain.tiers import Tier

SHARE = Decimal("0.0001")
HOURS = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Held:
    """GPU-seconds one workload held in one pool within the window."""

    pool: str
    tier: Tier
    owner: str
    """The tenant (external tiers) or the owner's team (internal)."""
    gpu_seconds: int


@dataclass(frozen=True, slots=True)
class PoolCapacity:
    pool: str
    gpus: int
    on_demand: Decimal
    """The on-demand list price per GPU-hour: what showback charges."""


@dataclass(frozen=True, slots=True)
class TeamShowback:
    pool: str
    team: str
    gpu_seconds: int
    price: Decimal
    """Per GPU-hour (the pool's on-demand list price)."""
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PoolBooks:
    pool: str
    gpus: int
    window_seconds: int
    by_tier: Mapping[Tier, int] = field(default_factory=dict)
    """GPU-seconds held per tier (every tier present, zero if none)."""
    showback: tuple[TeamShowback, ...] = ()
    on_demand: Decimal | None = None
    """The pool's on-demand list price per GPU-hour (None: several pools added up)."""

    @property
    def capacity(self) -> int:
        return self.gpus * self.window_seconds

    @property
    def internal(self) -> int:
        return self.by_tier.get(Tier.INTERNAL, 0)

    @property
    def sold(self) -> int:
        """GPU-seconds held by external tiers: the would-be idle that was sold."""
        return sum(s for tier, s in self.by_tier.items() if tier.external)

    @property
    def idle(self) -> int:
        """GPU-seconds left idle (negative only if the accounting holds more than capacity)."""
        return self.capacity - self.internal - self.sold

    @property
    def would_be_idle(self) -> int:
        """What the owner's own work left free: what could have been sold."""
        return self.capacity - self.internal

    @property
    def sold_share(self) -> Decimal | None:
        """``sold / would_be_idle`` to four places; None when the owner left nothing free."""
        if self.would_be_idle <= 0:
            return None
        return (Decimal(self.sold) / self.would_be_idle).quantize(SHARE, ROUND_HALF_EVEN)

    @property
    def showback_amount(self) -> Decimal:
        return sum((s.amount for s in self.showback), Decimal(0))


def gpu_hours(gpu_seconds: int) -> Decimal:
    """GPU-seconds as GPU-hours, to four places (0.36 s)."""
    return (Decimal(gpu_seconds) / SECONDS_PER_HOUR).quantize(HOURS, ROUND_HALF_EVEN)


def showback_cost(gpu_seconds: int, price: Decimal) -> Decimal:
    """Internal GPU-seconds at ``price`` per GPU-hour, to the micro-unit."""
    return segment_cost(1, gpu_seconds, price)


def pool_books(
    pools: Sequence[PoolCapacity], held: Iterable[Held], window_seconds: int
) -> list[PoolBooks]:
    """Each pool's GPU-seconds per tier over a window of ``window_seconds``, and the showback of
    its internal work per team, in the order of ``pools``.

    Raises ``ValueError`` for a negative window or a workload in a pool not in ``pools``.
    """
    if window_seconds < 0:
        raise ValueError("the window must not be negative")
    by_tier: dict[str, dict[Tier, int]] = {p.pool: dict.fromkeys(Tier, 0) for p in pools}
    teams: dict[str, dict[str, int]] = {p.pool: {} for p in pools}
    for h in held:
        if h.pool not in by_tier:
            raise ValueError(f"a workload held GPUs of {h.pool!r}, which is not a known pool")
        by_tier[h.pool][h.tier] += h.gpu_seconds
        if h.tier is Tier.INTERNAL and h.gpu_seconds:
            teams[h.pool][h.owner] = teams[h.pool].get(h.owner, 0) + h.gpu_seconds
    return [
        PoolBooks(
            pool=p.pool,
            gpus=p.gpus,
            window_seconds=window_seconds,
            by_tier=by_tier[p.pool],
            showback=tuple(
                TeamShowback(p.pool, team, gpu_s, p.on_demand, showback_cost(gpu_s, p.on_demand))
                for team, gpu_s in sorted(teams[p.pool].items())
            ),
            on_demand=p.on_demand,
        )
        for p in pools
    ]


def fleet_books(pools: Sequence[PoolBooks], window_seconds: int) -> PoolBooks:
    """Every pool's figures added up, as one pool named ``all``."""
    by_tier = dict.fromkeys(Tier, 0)
    for books in pools:
        for tier, seconds in books.by_tier.items():
            by_tier[tier] += seconds
    return PoolBooks(
        pool="all",
        gpus=sum(books.gpus for books in pools),
        window_seconds=window_seconds,
        by_tier=by_tier,
        showback=tuple(s for books in pools for s in books.showback),
    )
