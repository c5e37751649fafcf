"""Usage arithmetic: a lease segment is GPUs × whole seconds at one price per GPU-hour."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

MICRO = Decimal("0.000001")
SECONDS_PER_HOUR = 3600


def segment_cost(gpus: int, seconds: int, price_per_gpu_hour: Decimal) -> Decimal:
    """Cost of ``gpus`` GPUs for ``seconds`` seconds, exact to the micro-unit."""
    if gpus < 0 or seconds < 0:
        raise ValueError("gpus and seconds must not be negative")
    raw = price_per_gpu_hour * gpus * seconds / SECONDS_PER_HOUR
    return raw.quantize(MICRO, rounding=ROUND_HALF_EVEN)
