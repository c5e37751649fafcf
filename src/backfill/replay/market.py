"""The market model: outside tenants' lease requests, seeded, for a replay.

A replay asks "what would leasing have sold?", so it needs buyers. They come from this model, read
from a TOML file (``backfill replay --market FILE``) or taken from the defaults below. Per pool::

    seed = 7                               # the whole stream is a function of the seed

    [pools.default]                        # every pool without a table of its own
    rate_per_1000_gpus = 120.0             # lease requests per hour per 1,000 GPUs (Poisson)
    daily_swing = 0.25                     # rate × (1 + swing × sin(2π (hour − 8) / 24)), UTC
    sizes = { 1 = 0.35, 2 = 0.2, 4 = 0.2, 8 = 0.2, 16 = 0.05 }   # GPUs asked : weight
    tiers = { spot = 0.6, on_demand = 0.3, reserved = 0.1 }      # the mix of asks
    hours = { median = 3.0, p90 = 24.0 }   # spot and on-demand run time: log-normal, in hours
    max_hours = 168.0                      # no run longer than a week
    reserved_days = { min = 1, max = 7 }   # a reserved contract's term, uniform in whole days
                                           # (the forecast reaches 14 days ahead)
    reserved_lead_hours = { min = 1, max = 72 }   # how far ahead a contract starts
    spot_bid = { at_on_demand = 0.7 }      # share of spot buyers whose bid is the on-demand price
                                           # (AWS's default); the rest bid uniformly between the
                                           # pool's spot floor and its on-demand price
    spot_patience_hours = 4.0              # a spot ask that cannot be placed at once waits this
                                           # long for GPUs (a persistent request, as AWS's and
                                           # a batch queue's are); 0: turned away at once

    [pools."us-east/H100"]                 # a pool's own table: its keys replace the defaults'
    rate_per_1000_gpus = 240.0

The defaults ask for about ten times the GPUs a half-idle pool has free (120 asks per hour per
1,000 GPUs × 3.95 GPUs × ~11 hours on average; spot alone about six times): a seller's market, as
GPUs have been since 2023, so what a replay sells measures the policy, not a shortage of buyers.
Measured on ITP cluster 04 with the default policy: 91.7 % of the idle GPU-hours sold at this rate,
92.4 % at five times it, 86.9 % at half of it (bench/RESULTS.md).
Reserved and on-demand requests that the policy or the fleet refuses are lost (a buyer who is
turned away goes elsewhere); a spot request waits up to its patience for GPUs, then goes.

Every time is a whole second, so a replay's money is exact.
"""

from __future__ import annotations

import math
import tomllib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from backfill.domain.fleet import Pool
from backfill.domain.tiers import EXTERNAL_TIERS, Tier

HOUR = 3600
DAY = 24 * HOUR
MAX_FILE_BYTES = 1 << 20
MAX_RATE = 100_000.0
"""Requests per hour per 1,000 GPUs: far above any real market, low enough to catch a typo."""
MAX_LEASE_GPUS = 4096


class InvalidMarket(ValueError):
    """A market file or value that breaks a rule; the message says where."""


@dataclass(frozen=True)
class PoolMarket:
    """What outside tenants ask of one pool."""

    rate_per_1000_gpus: float = 120.0
    daily_swing: float = 0.25
    sizes: Mapping[int, float] = field(
        default_factory=lambda: {1: 0.35, 2: 0.2, 4: 0.2, 8: 0.2, 16: 0.05}
    )
    tiers: Mapping[Tier, float] = field(
        default_factory=lambda: {Tier.SPOT: 0.6, Tier.ON_DEMAND: 0.3, Tier.RESERVED: 0.1}
    )
    median_hours: float = 3.0
    p90_hours: float = 24.0
    max_hours: float = 168.0
    reserved_days: tuple[int, int] = (1, 7)
    reserved_lead_hours: tuple[float, float] = (1.0, 72.0)
    bid_at_on_demand: float = 0.7
    spot_patience_hours: float = 4.0


@dataclass(frozen=True)
class LeaseRequest:
    """One outside tenant's ask."""

    id: str
    at: int
    """When it is asked (epoch seconds)."""
    pool: str
    tier: Tier
    gpus: int
    seconds: int
    """How long it runs once started (reserved: the contract's term)."""
    start_at: int | None = None
    """Reserved: when the contract starts."""
    bid: Decimal | None = None
    """Spot: the most it pays per GPU-hour."""

    @property
    def end_at(self) -> int:
        return (self.start_at if self.start_at is not None else self.at) + self.seconds


@dataclass(frozen=True)
class Market:
    seed: int = 7
    default: PoolMarket = field(default_factory=PoolMarket)
    pools: Mapping[str, PoolMarket] = field(default_factory=dict)

    def of(self, pool: str) -> PoolMarket:
        return self.pools.get(pool, self.default)

    def with_seed(self, seed: int) -> Market:
        return replace(self, seed=seed)

    def requests(self, pools: Sequence[Pool], start: int, end: int) -> list[LeaseRequest]:
        """Every request asked of ``pools`` in ``[start, end)``, in time order (ties by pool)."""
        out: list[LeaseRequest] = []
        for pool in pools:
            out.extend(self._pool_requests(pool, start, end))
        out.sort(key=lambda r: (r.at, r.pool, r.id))
        return out

    def _pool_requests(self, pool: Pool, start: int, end: int) -> list[LeaseRequest]:
        m = self.of(pool.key)
        # One stream per pool, so adding a pool leaves the others' requests as they were.
        rng = np.random.default_rng([self.seed, zlib.crc32(pool.key.encode())])
        largest = max(node.gpus for node in pool.nodes)
        sizes = [
            s
            for s in m.sizes
            if s <= largest or (s % largest == 0 and s // largest <= _whole_nodes(pool, largest))
        ]
        if not sizes:
            return []
        weights = np.array([m.sizes[s] for s in sizes], dtype=float)
        tiers = [t for t in EXTERNAL_TIERS if m.tiers.get(t, 0) > 0]
        tier_weights = np.array([m.tiers[t] for t in tiers], dtype=float)
        base = m.rate_per_1000_gpus * pool.gpus / 1000 / HOUR  # per second
        peak = base * (1 + abs(m.daily_swing))
        if peak <= 0 or not tiers:
            return []
        # A thinned Poisson process: candidate arrivals at the peak rate, kept with probability
        # rate(t) / peak, gives the daily swing exactly.
        count = int(rng.poisson(peak * (end - start)))
        times = np.sort(rng.uniform(start, end, count))
        hour_of_day = (times % DAY) / HOUR
        rate = base * (1 + m.daily_swing * np.sin(2 * np.pi * (hour_of_day - 8) / 24))
        times = np.floor(times[rng.uniform(0, 1, count) * peak < rate]).astype(np.int64)
        n = len(times)
        size = np.array(sizes)[rng.choice(len(sizes), n, p=weights / weights.sum())]
        tier_index = rng.choice(len(tiers), n, p=tier_weights / tier_weights.sum())
        sigma = math.log(m.p90_hours / m.median_hours) / 1.2815515655446004
        hours = np.minimum(m.median_hours * np.exp(sigma * rng.standard_normal(n)), m.max_hours)
        seconds = np.maximum(60, np.round(hours * HOUR)).astype(np.int64)
        days = rng.integers(m.reserved_days[0], m.reserved_days[1] + 1, n)
        lead = np.round(rng.uniform(*m.reserved_lead_hours, n) * HOUR).astype(np.int64)
        at_on_demand = rng.uniform(0, 1, n) < m.bid_at_on_demand
        share = rng.uniform(0, 1, n)
        prices = pool.prices
        out = []
        for i in range(n):
            tier = tiers[tier_index[i]]
            at = int(times[i])
            rid = f"{pool.key}#{i + 1:07d}"
            if tier is Tier.RESERVED:
                out.append(
                    LeaseRequest(
                        rid, at, pool.key, tier, int(size[i]), int(days[i]) * DAY,
                        start_at=at + int(lead[i]),
                    )
                )  # fmt: skip
            elif tier is Tier.SPOT:
                bid = prices.on_demand
                if not at_on_demand[i]:
                    span = prices.on_demand - prices.spot_floor
                    bid = prices.spot_floor + (span * Decimal(f"{share[i]:.4f}")).quantize(
                        Decimal("0.01")
                    )
                out.append(
                    LeaseRequest(rid, at, pool.key, tier, int(size[i]), int(seconds[i]), bid=bid)
                )
            else:
                out.append(LeaseRequest(rid, at, pool.key, tier, int(size[i]), int(seconds[i])))
        return out


def _whole_nodes(pool: Pool, size: int) -> int:
    return sum(1 for node in pool.nodes if node.gpus == size)


DEFAULT_MARKET = Market()


# -- the file -------------------------------------------------------------------------------------

_POOL_KEYS = {
    "rate_per_1000_gpus",
    "daily_swing",
    "sizes",
    "tiers",
    "hours",
    "max_hours",
    "reserved_days",
    "reserved_lead_hours",
    "spot_bid",
    "spot_patience_hours",
}


def load_market(path: str | Path) -> Market:
    """Read a market file (TOML, format in the module docstring); ``InvalidMarket`` says where
    a value is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidMarket(f"{path}: cannot read: {exc.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise InvalidMarket(f"{path}: {size:,} bytes, more than a market file's {MAX_FILE_BYTES:,}")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidMarket(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidMarket(f"{path}: not valid TOML: {exc}") from None
    return parse_market(data, where=str(path))


def parse_market(data: Mapping[str, Any], *, where: str = "market") -> Market:
    unknown = set(data) - {"seed", "pools"}
    if unknown:
        raise InvalidMarket(f"{where}: unknown key {sorted(unknown)[0]!r} (seed, pools)")
    seed = data.get("seed", DEFAULT_MARKET.seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        raise InvalidMarket(f"{where}: seed must be a non-negative integer, not {seed!r}")
    pools_data = data.get("pools", {})
    if not isinstance(pools_data, dict):
        raise InvalidMarket(f"{where}: pools must be a table of pool tables")
    default = DEFAULT_MARKET.default
    if "default" in pools_data:
        default = _pool_market(pools_data["default"], default, f"{where}: pools.default")
    pools = {
        key: _pool_market(value, default, f"{where}: pools.{key!r}")
        for key, value in pools_data.items()
        if key != "default"
    }
    return Market(seed=seed, default=default, pools=pools)


def _pool_market(data: object, base: PoolMarket, where: str) -> PoolMarket:
    if not isinstance(data, dict):
        raise InvalidMarket(f"{where}: must be a table")
    unknown = set(data) - _POOL_KEYS
    if unknown:
        raise InvalidMarket(
            f"{where}: unknown key {sorted(unknown)[0]!r} ({', '.join(sorted(_POOL_KEYS))})"
        )
    m = base
    if "rate_per_1000_gpus" in data:
        rate = _number(data["rate_per_1000_gpus"], f"{where}.rate_per_1000_gpus", 0, MAX_RATE)
        m = replace(m, rate_per_1000_gpus=rate)
    if "daily_swing" in data:
        m = replace(m, daily_swing=_number(data["daily_swing"], f"{where}.daily_swing", 0, 1))
    if "sizes" in data:
        sizes = _weights(data["sizes"], f"{where}.sizes")
        parsed: dict[int, float] = {}
        for key, weight in sizes.items():
            if not key.isdigit() or not 1 <= int(key) <= MAX_LEASE_GPUS:
                raise InvalidMarket(
                    f"{where}.sizes: {key!r} is not a GPU count in 1..{MAX_LEASE_GPUS}"
                )
            parsed[int(key)] = weight
        m = replace(m, sizes=parsed)
    if "tiers" in data:
        tiers = _weights(data["tiers"], f"{where}.tiers")
        names = {t.value: t for t in EXTERNAL_TIERS}
        for key in tiers:
            if key not in names:
                raise InvalidMarket(f"{where}.tiers: {key!r} is not one of {', '.join(names)}")
        m = replace(m, tiers={names[k]: w for k, w in tiers.items()})
    if "hours" in data:
        hours = _table(data["hours"], f"{where}.hours", {"median", "p90"})
        median = _number(hours.get("median", m.median_hours), f"{where}.hours.median", 1 / 60, 1e4)
        p90 = _number(hours.get("p90", m.p90_hours), f"{where}.hours.p90", 1 / 60, 1e4)
        if p90 < median:
            raise InvalidMarket(f"{where}.hours: p90 ({p90}) is below the median ({median})")
        m = replace(m, median_hours=median, p90_hours=p90)
    if "max_hours" in data:
        m = replace(m, max_hours=_number(data["max_hours"], f"{where}.max_hours", 1 / 60, 1e4))
    if "reserved_days" in data:
        days = _table(data["reserved_days"], f"{where}.reserved_days", {"min", "max"})
        low, high = (days.get(k, v) for k, v in zip(("min", "max"), m.reserved_days, strict=True))
        for name, value in (("min", low), ("max", high)):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 366:
                raise InvalidMarket(f"{where}.reserved_days.{name}: a whole number of days 1..366")
        if high < low:
            raise InvalidMarket(f"{where}.reserved_days: max ({high}) is below min ({low})")
        m = replace(m, reserved_days=(low, high))
    if "reserved_lead_hours" in data:
        lead = _table(data["reserved_lead_hours"], f"{where}.reserved_lead_hours", {"min", "max"})
        low_h = _number(lead.get("min", m.reserved_lead_hours[0]), f"{where}.lead.min", 0, 8784)
        high_h = _number(lead.get("max", m.reserved_lead_hours[1]), f"{where}.lead.max", 0, 8784)
        if high_h < low_h:
            raise InvalidMarket(f"{where}.reserved_lead_hours: max is below min")
        m = replace(m, reserved_lead_hours=(low_h, high_h))
    if "spot_bid" in data:
        bid = _table(data["spot_bid"], f"{where}.spot_bid", {"at_on_demand"})
        share = _number(
            bid.get("at_on_demand", m.bid_at_on_demand), f"{where}.spot_bid.at_on_demand", 0, 1
        )
        m = replace(m, bid_at_on_demand=share)
    if "spot_patience_hours" in data:
        patience = _number(data["spot_patience_hours"], f"{where}.spot_patience_hours", 0, 8784)
        m = replace(m, spot_patience_hours=patience)
    return m


def _table(value: object, where: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidMarket(f"{where}: must be a table ({', '.join(sorted(keys))})")
    unknown = set(value) - keys
    if unknown:
        raise InvalidMarket(f"{where}: unknown key {sorted(unknown)[0]!r}")
    return value


def _number(value: object, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidMarket(f"{where}: must be a number, not {value!r}")
    if not low <= value <= high:
        raise InvalidMarket(f"{where}: {value} is outside {low:g}..{high:g}")
    return float(value)


def _weights(value: object, where: str) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise InvalidMarket(f"{where}: must be a non-empty table of name = weight")
    out = {str(k): _number(v, f"{where}.{k}", 0, 1e9) for k, v in value.items()}
    if sum(out.values()) <= 0:
        raise InvalidMarket(f"{where}: the weights add up to 0")
    return out
