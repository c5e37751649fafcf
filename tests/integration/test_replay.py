"""Replays of an owner's trace with leasing: the books balance, promises hold, runs repeat.

The trace is synthetic (seeded; 10 days on 16 nodes × 8 GPUs, the ITP clusters' shape of job
sizes and a daily swing), small enough to replay in seconds, long enough that the forecast has its
week of history and the floor sells for the last days.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from functools import cache

import numpy as np
import pytest

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.surplus import FULL, NO_LEASING, SPOT_ONLY, SurplusPolicy
from backfill.domain.tiers import EXTERNAL_TIERS, Tier
from backfill.engines.base import Outcome
from backfill.replay.market import DEFAULT_MARKET, HOUR
from backfill.replay.report import compare, to_json
from backfill.replay.runner import TIERS, RunResult, replay
from backfill.traces import Job, Trace

START = 1_614_816_000
DAYS = 10
PRICES = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))


def synthetic_trace(seed: int = 3, nodes: int = 16) -> Trace:
    rng = np.random.default_rng(seed)
    jobs = []
    t = 0.0
    i = 0
    while t < DAYS * 24 * HOUR:
        hour = (t / HOUR) % 24
        rate = (0.9 + 0.6 * np.sin(2 * np.pi * (hour - 10) / 24)) * nodes / 16 / 800  # per s
        t += rng.exponential(1 / rate)
        gpus = int(rng.choice([1, 1, 1, 1, 2, 4, 8, 8, 16]))
        duration = float(max(60, round(rng.lognormal(np.log(2 * HOUR), 1.0))))
        jobs.append(Job(id=f"j{i}", submit=float(round(t)), duration=duration, gpus=gpus))
        i += 1
    return Trace(tuple(jobs), source="synthetic")


def fleet(nodes: int = 16, notice: int = 120) -> Fleet:
    pool = Pool(
        "replay",
        "GPU",
        tuple(Node(f"n{i:03d}", 8) for i in range(nodes)),
        PRICES,
        notice_seconds=notice,
    )
    return Fleet(name="test", pools=(pool,))


@cache
def full_run() -> RunResult:
    return replay(synthetic_trace(), fleet(), DEFAULT_MARKET, FULL, start=START)


def test_every_gpu_second_is_counted_once() -> None:
    run = full_run()
    capacity_seconds = run.capacity * (run.end - run.start)
    assert sum(run.gpu_seconds.values()) + run.idle_gpu_seconds == capacity_seconds
    assert run.idle_gpu_seconds >= 0
    # The ledger integrates the engine's events; the leases' own records are a second count.
    for tier in EXTERNAL_TIERS:
        billed = sum(
            lease.billed_seconds * lease.request.gpus
            for lease in run.leases.values()
            if lease.request.tier is tier
        )
        assert billed == run.gpu_seconds[tier], tier
    assert run.internal_job_gpu_seconds == run.gpu_seconds[Tier.INTERNAL]
    # The hourly series sums to the same totals.
    totals = run.hourly.sum(axis=0)
    for i, tier in enumerate(TIERS):
        assert totals[i] == pytest.approx(run.gpu_seconds[tier])
    assert totals[len(TIERS)] == pytest.approx(run.idle_gpu_seconds)
    assert all(run.gpu_seconds[t] > 0 for t in (Tier.INTERNAL, Tier.SPOT, Tier.ON_DEMAND))


def test_billed_seconds_are_the_engines_running_seconds() -> None:
    run = full_run()
    assert run.leases
    for lease_id, lease in run.leases.items():
        view = run.views[lease_id]
        if view.started_at is None:
            assert lease.billed_seconds == 0
            continue
        assert view.ended_at is not None
        running = min(view.ended_at, run.end) - max(view.started_at, run.start)
        assert lease.billed_seconds == max(0, round(running)), lease_id


def test_spot_stops_only_after_its_full_notice_and_nothing_else_is_taken_back() -> None:
    run = full_run()
    stops = [v for v in run.views.values() if v.outcome is Outcome.PREEMPTED]
    assert stops, "the trace should make the owner take spot back"
    assert len(stops) == run.spot_stops
    for view in stops:
        assert view.spec.tier is Tier.SPOT
        assert view.notice_at is not None and view.ended_at is not None
        assert view.ended_at - view.notice_at >= fleet().pools[0].notice_seconds
    assert run.notice_violations == 0
    assert run.sla_breaches == 0 and run.breaches == []
    for view in run.views.values():
        if view.spec.tier in (Tier.RESERVED, Tier.ON_DEMAND):
            assert view.outcome in (Outcome.COMPLETED, Outcome.STOPPED, None)


def test_reservations_start_on_time_because_their_gpus_are_set_aside_when_sold() -> None:
    """A market of day-long reservations sold up to a day ahead, and spot: the owner's work and
    on-demand keep off a reservation's nodes from its sale, spot on them leaves with its notice."""
    pool_market = replace(
        DEFAULT_MARKET.default,
        tiers={Tier.RESERVED: 0.3, Tier.SPOT: 0.7},
        reserved_days=(1, 1),
        reserved_lead_hours=(1.0, 24.0),
    )
    market = replace(DEFAULT_MARKET, default=pool_market)
    # The owner's 16-node load on 32 nodes: a day's peak leaves room to sell a day ahead.
    run = replay(synthetic_trace(), fleet(nodes=32), market, FULL, start=START)
    reserved = [v for v in run.views.values() if v.spec.tier is Tier.RESERVED]
    started = [v for v in reserved if v.started_at is not None]
    assert len(started) >= 5
    for view in started:
        assert view.started_at == view.spec.start_at
        assert view.outcome in (Outcome.COMPLETED, Outcome.STOPPED)
    assert run.sla_breaches == 0 and run.notice_violations == 0


def test_a_spot_ask_waits_for_gpus_up_to_its_patience_and_every_ask_is_accounted_for() -> None:
    trace, small = synthetic_trace(), fleet()
    patience = DEFAULT_MARKET.default.spot_patience_hours * HOUR
    assert patience > 0
    impatient = replace(
        DEFAULT_MARKET, default=replace(DEFAULT_MARKET.default, spot_patience_hours=0.0)
    )
    runs = {
        "patient": replay(trace, small, DEFAULT_MARKET, SPOT_ONLY, start=START),
        "impatient": replay(trace, small, impatient, SPOT_ONLY, start=START),
    }
    for run in runs.values():
        assert len(run.leases) + sum(run.refused.values()) == sum(run.asked.values())
    waited = [
        lease.started - lease.request.at
        for lease in runs["patient"].leases.values()
        if lease.started is not None
    ]
    assert max(waited) > 0 and max(waited) < patience
    assert runs["patient"].refused["expired"] > 0
    assert all(
        lease.started == lease.request.at
        for lease in runs["impatient"].leases.values()
        if lease.started is not None
    )
    assert runs["impatient"].refused["expired"] == 0
    assert runs["patient"].gpu_seconds[Tier.SPOT] > runs["impatient"].gpu_seconds[Tier.SPOT]


def test_every_owner_job_runs_and_waits_are_measured() -> None:
    run = full_run()
    assert len(run.waits) == len(synthetic_trace().jobs)
    assert (run.waits >= 0).all()


def test_reserved_and_on_demand_are_sold_only_once_the_forecast_has_a_week() -> None:
    run = full_run()
    floor_sales = [
        lease
        for lease in run.leases.values()
        if lease.request.tier in (Tier.RESERVED, Tier.ON_DEMAND)
    ]
    assert floor_sales
    assert min(lease.request.at for lease in floor_sales) >= START + 7 * 24 * HOUR
    assert run.refused["no_forecast"] > 0


def test_revenue_is_exact_and_matches_the_leases() -> None:
    run = full_run()
    on_demand = sum(
        (
            PRICES.on_demand * lease.request.gpus * lease.billed_seconds
            for lease in run.leases.values()
            if lease.request.tier is Tier.ON_DEMAND
        ),
        Decimal(0),
    ) / Decimal(HOUR)
    assert run.revenue[Tier.ON_DEMAND] == on_demand.quantize(Decimal("0.000001"))
    spot_hours = Decimal(run.gpu_seconds[Tier.SPOT]) / HOUR
    # Spot pays between its floor and the on-demand price, by the second.
    assert PRICES.spot_floor * spot_hours <= run.revenue[Tier.SPOT]
    assert run.revenue[Tier.SPOT] <= PRICES.on_demand * spot_hours
    assert all(isinstance(v, Decimal) for v in run.revenue.values())


def test_no_leasing_sells_nothing_and_leaves_the_idle_idle() -> None:
    run = replay(synthetic_trace(), fleet(), DEFAULT_MARKET, NO_LEASING, start=START)
    assert not run.leases and sum(run.asked.values()) == 0
    assert all(run.gpu_seconds[t] == 0 for t in EXTERNAL_TIERS)
    assert run.spot_notices == run.spot_stops == 0


def test_the_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    trace = synthetic_trace(nodes=8)
    small = fleet(nodes=8)

    def report(seed: int) -> dict[str, object]:
        market = DEFAULT_MARKET.with_seed(seed)
        data = to_json(compare(trace, small, market, start=START, sweep=False))
        return _without_timings(data)

    first = report(7)
    assert first == report(7)
    assert first != report(8)


def _without_timings(data: object) -> object:
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if "replay_seconds" not in k}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


def test_headroom_keeps_whole_nodes_idle_for_the_owner() -> None:
    """More headroom: the owner's jobs wait less often for spot to leave, and less is sold."""
    trace, small = synthetic_trace(), fleet()
    none = replay(trace, small, DEFAULT_MARKET, SurplusPolicy(headroom=0), start=START)
    kept = replay(trace, small, DEFAULT_MARKET, SurplusPolicy(headroom=0.2), start=START)
    assert (kept.waits > 0).sum() < (none.waits > 0).sum()
    assert kept.gpu_seconds[Tier.SPOT] < none.gpu_seconds[Tier.SPOT]
    assert kept.headroom_notices > 0
