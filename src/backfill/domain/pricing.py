"""Prices per GPU-hour, exact to the cent.

Spot price rises with the pool's utilization and never falls below the pool's floor:

    spot = floor + (on_demand − floor) × u²        (u = busy GPUs / all GPUs, in [0, 1])

The square keeps spot cheap while a pool is mostly idle and brings it near on-demand as the pool
fills, so the last idle GPUs go to whoever values them most.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from backfill.domain.fleet import Prices
from backfill.domain.tiers import Tier

CENT = Decimal("0.01")


def utilization(busy_gpus: int, total_gpus: int) -> Decimal:
    if total_gpus <= 0:
        return Decimal(0)
    return min(Decimal(1), max(Decimal(0), Decimal(busy_gpus) / Decimal(total_gpus)))


def spot_price(prices: Prices, util: Decimal) -> Decimal:
    u = min(Decimal(1), max(Decimal(0), util))
    price = prices.spot_floor + (prices.on_demand - prices.spot_floor) * u * u
    return max(prices.spot_floor, price.quantize(CENT, rounding=ROUND_HALF_EVEN))


def list_price(prices: Prices, tier: Tier, current_spot: Decimal) -> Decimal:
    """The price per GPU-hour of ``tier`` in a pool right now."""
    if tier is Tier.ON_DEMAND:
        return prices.on_demand
    if tier is Tier.RESERVED:
        return prices.reserved
    if tier is Tier.SPOT:
        return current_spot
    return Decimal(0)  # internal work is not billed (its showback is priced at list elsewhere)
