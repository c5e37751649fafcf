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
from backfill.inference.gateway import Gateway
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


class GatewayCollector:
    """The inference gateway's answers and tokens per model, and its replicas, read at scrape."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway = self._gateway
        counts = gateway.counted()
        requests = CounterMetricFamily(
            "backfill_inference_requests",
            "Completions answered by the gateway since it started, per model and HTTP status "
            "(model empty: the request named no model the tenant may use)",
            labels=["model", "code"],
        )
        for (model, status), n in sorted(counts.answers.items()):
            requests.add_metric([model, str(status)], n)
        yield requests
        billed = CounterMetricFamily(
            "backfill_inference_tokens",
            "Tokens metered from the engines' own counts since the gateway started, per model "
            "and kind (input: the prompt; output: the completion)",
            labels=["model", "kind"],
        )
        for (model, kind), n in sorted(counts.tokens.items()):
            billed.add_metric([model, kind], n)
        yield billed
        replicas = GaugeMetricFamily(
            "backfill_inference_replicas",
            "Replicas per model now, by state (placed: waiting for its GPUs; starting; ready)",
            labels=["model", "state"],
        )
        in_flight = GaugeMetricFamily(
            "backfill_inference_in_flight",
            "Requests the gateway has in flight to each model's replicas now",
            labels=["model"],
        )
        states: dict[tuple[str, str], int] = {}
        flying: dict[str, int] = {}
        for replica in gateway.supervisor.replicas():
            key = (replica.model, replica.state)
            states[key] = states.get(key, 0) + 1
            flying[replica.model] = flying.get(replica.model, 0) + replica.in_flight
        for (model, state), n in sorted(states.items()):
            replicas.add_metric([model, state], n)
        for model, n in sorted(flying.items()):
            in_flight.add_metric([model], n)
        yield replicas
        yield in_flight


def registry(ctx: Context, gateway: Gateway | None = None) -> CollectorRegistry:
    """A registry of its own for one app, its collectors reading ``ctx`` and ``gateway``."""
    own = CollectorRegistry(auto_describe=False)
    own.register(FleetCollector(ctx))
    if gateway is not None:
        own.register(GatewayCollector(gateway))
    return own


def exposition(own: CollectorRegistry) -> bytes:
    """Every metric now, in Prometheus's text format (version 0.0.4)."""
    return generate_latest(own)
