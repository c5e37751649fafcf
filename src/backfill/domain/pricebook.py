"""The price book: every price Backfill bills at, versioned by the moment it takes effect.

A price is a ``(product, item, dimension)`` — ``("gpu", "us-east/H100", "on_demand")``,
``("inference", "smollm2-135m", "output")`` — with a list of versions, each in force from its
``effective_from`` until the next one. The fleet file's list prices are each pool's first version
(in force since the beginning of time); the operator adds later ones. A version never takes effect
in the past: a price once in force is history, and invoices are made of it.

| product     | dimensions                          | per                 |
|-------------|-------------------------------------|---------------------|
| ``gpu``       | ``on_demand``, ``reserved``, ``spot_floor`` | GPU-hour            |
| ``inference`` | ``input``, ``output``                   | million tokens      |
| ``finetune``  | ``tokens``                            | million tokens      |
| ``tool``      | ``calls``                             | call                |

Spot is not in the book: it is the market price of each second (see ``pricing.spot_price``),
which the book's ``spot_floor`` bounds from below. A reservation is billed at the price of the day
it was signed, whatever the book says later.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

from backfill.domain.fleet import Fleet, Prices

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "gpu": ("on_demand", "reserved", "spot_floor"),
    "inference": ("input", "output"),
    "finetune": ("tokens",),
    "tool": ("calls",),
}
PRICE_UNITS = {"gpu": "gpu_hour", "inference": "1M_tokens", "finetune": "1M_tokens", "tool": "call"}
"""What one price is for, per product."""
BASE_UNITS = {"gpu": "gpu_second", "inference": "token", "finetune": "token", "tool": "call"}
"""What quantities are counted in, per product: whole units, so sums are exact."""
PER_PRICE_UNIT = {"gpu": 3600, "inference": 1_000_000, "finetune": 1_000_000, "tool": 1}
"""Base units in one price unit."""
EVENT_PRODUCT = {
    "backfill.inference.tokens": "inference",
    "backfill.finetune.tokens": "finetune",
    "backfill.tool.calls": "tool",
}
"""The product a usage event's type is priced as."""

Key = tuple[str, str, str]


@dataclass(frozen=True)
class PriceVersion:
    product: str
    item: str
    dimension: str
    price: Decimal
    effective_from: datetime | None
    """None: the fleet file's list price, in force since the beginning."""


@dataclass(frozen=True)
class PriceWindow:
    """A stretch of time ``[start, end)`` (None: unbounded) in which one price is in force."""

    start: datetime | None
    end: datetime | None
    price: Decimal | None
    """None: no price in force (usage then is rated at zero and flagged unpriced)."""


class PriceBook:
    """Every price's versions, looked up by time."""

    def __init__(self, versions: Iterable[PriceVersion]) -> None:
        timed: dict[Key, list[tuple[datetime, Decimal]]] = {}
        self._base: dict[Key, Decimal] = {}
        for version in versions:
            key = (version.product, version.item, version.dimension)
            if version.effective_from is None:
                self._base[key] = version.price
            else:
                timed.setdefault(key, []).append((version.effective_from, version.price))
        self._times: dict[Key, list[datetime]] = {}
        self._prices: dict[Key, list[Decimal]] = {}
        for key, entries in timed.items():
            entries.sort(key=lambda entry: entry[0])
            self._times[key] = [at for at, _ in entries]
            self._prices[key] = [price for _, price in entries]

    def price_at(self, product: str, item: str, dimension: str, at: datetime) -> Decimal | None:
        """The price in force at ``at`` (the latest version that took effect at or before it)."""
        key = (product, item, dimension)
        times = self._times.get(key, [])
        index = bisect.bisect_right(times, at)
        if index:
            return self._prices[key][index - 1]
        return self._base.get(key)

    def windows(
        self, product: str, item: str, dimension: str, since: datetime, until: datetime
    ) -> list[PriceWindow]:
        """``[since, until)`` cut where the price changes, each piece with its price."""
        key = (product, item, dimension)
        cuts = [at for at in self._times.get(key, []) if since < at < until]
        bounds = [since, *cuts, until]
        return [
            PriceWindow(start, end, self.price_at(product, item, dimension, start))
            for start, end in pairwise(bounds)
        ]

    def changes(self, product: str, item: str, since: datetime, until: datetime) -> list[datetime]:
        """The moments in ``(since, until)`` when any dimension of ``item``'s price changes."""
        moments = {
            at
            for (p, i, _), times in self._times.items()
            if p == product and i == item
            for at in times
            if since < at < until
        }
        return sorted(moments)

    def gpu_prices(self, pool: str, at: datetime) -> Prices | None:
        """A pool's list prices in force at ``at`` (None: the pool has none)."""
        found = [self.price_at("gpu", pool, d, at) for d in DIMENSIONS["gpu"]]
        if any(price is None for price in found):
            return None
        on_demand, reserved, spot_floor = found
        assert on_demand is not None and reserved is not None and spot_floor is not None
        return Prices(on_demand=on_demand, reserved=reserved, spot_floor=min(spot_floor, on_demand))


def list_prices(fleet: Fleet) -> list[PriceVersion]:
    """The fleet file's prices as each pool's first version."""
    out = []
    for pool in fleet.pools:
        for dimension in DIMENSIONS["gpu"]:
            price = getattr(pool.prices, dimension)
            out.append(PriceVersion("gpu", pool.key, dimension, price, None))
    return out


def check_dimension(product: str, dimension: str) -> str | None:
    """Why ``(product, dimension)`` is not a price of the book, or None when it is one."""
    if product not in DIMENSIONS:
        return f"product must be one of {', '.join(DIMENSIONS)}, not {product!r}"
    if dimension not in DIMENSIONS[product]:
        allowed = ", ".join(DIMENSIONS[product])
        return f"a {product} price's dimension is one of {allowed}, not {dimension!r}"
    return None
