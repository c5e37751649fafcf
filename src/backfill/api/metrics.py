"""Prometheus metrics, read from the control plane at each scrape (one service call).

Each app has its own ``CollectorRegistry`` holding one collector: no process-wide metric state,
so several apps (tests) in one process never see each other's figures. Money is exposed as a
float, as Prometheus keeps every sample: the books (``GET /v1/admin/revenue``) stay exact.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from backfill.domain.tiers import Tier
from backfill.services import owner_books
from backfill.services.context import Context

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MONTH = "since the start of the current UTC month (resets to zero when a month begins)"


class FleetCollector:
    """Every metric of one control plane, read when Prometheus scrapes."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Metric]:
        snap = owner_books.snapshot(self._ctx)
        gpus = GaugeMetricFamily(
            "backfill_gpus",
            "GPUs per pool now, by state: the tier holding them, idle, claimed (idle but "
            "promised to work waiting for a noticed spot holder to stop), or down (on nodes out "
            "of service); the states add up to the pool's GPUs",
            labels=["pool", "state"],
        )
        for use in snap.usage:
            for tier in Tier:
                gpus.add_metric([use.pool, tier.value], use.by_tier.get(tier, 0))
            gpus.add_metric([use.pool, "idle"], use.idle)
            gpus.add_metric([use.pool, "claimed"], use.claimed)
            gpus.add_metric([use.pool, "down"], use.down)
        yield gpus
        spot = GaugeMetricFamily(
            "backfill_spot_price", "The pool's spot price per GPU-hour now", labels=["pool"]
        )
        for pool, price in snap.spot_prices.items():
            spot.add_metric([pool], float(price))
        yield spot
        revenue = CounterMetricFamily(
            "backfill_revenue",
            f"Revenue as rated for invoices, {MONTH}, per pool and tier (non-GPU products: "
            "empty pool, the product as tier)",
            labels=["pool", "tier"],
        )
        sums: dict[tuple[str, str], float] = {}
        for row in snap.month.revenue:
            key = (row.pool or "", row.tier or row.product)
            sums[key] = sums.get(key, 0.0) + float(row.amount)
        for labels, amount in sorted(sums.items()):
            revenue.add_metric(list(labels), amount)
        yield revenue
        held = CounterMetricFamily(
            "backfill_gpu_seconds",
            f"GPU-seconds held per pool and tier in the engine's own accounting, {MONTH}",
            labels=["pool", "tier"],
        )
        for books in snap.month.pools:
            for tier in Tier:
                held.add_metric([books.pool, tier.value], books.by_tier.get(tier, 0))
        yield held
        yield GaugeMetricFamily("backfill_tenants", "Tenants", value=snap.tenants)
        leases = GaugeMetricFamily(
            "backfill_leases", "Leases by tier and state (ended ones too)", labels=["tier", "state"]
        )
        for labels, count in sorted(snap.leases.items()):
            leases.add_metric(list(labels), count)
        yield leases


def registry(ctx: Context) -> CollectorRegistry:
    """A registry of its own for one app, its collector reading ``ctx``."""
    own = CollectorRegistry(auto_describe=False)
    own.register(FleetCollector(ctx))
    return own


def exposition(own: CollectorRegistry) -> bytes:
    """Every metric now, in Prometheus's text format (version 0.0.4)."""
    return generate_latest(own)
