"""The sim engine replays an owner's recorded jobs as its internal work, queueing what waits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.sim import ManualClock, SimEngine, TraceOwner
from backfill.traces import Job, Trace

START = 1_767_225_600.0


def _fleet() -> Fleet:
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    return Fleet(name="lab", pools=(Pool("lab", "H100", (Node("a", 8), Node("b", 8)), prices),))


def _trace(*jobs: tuple[str, float, float, int]) -> Trace:
    return Trace(
        jobs=tuple(Job(id=i, submit=s, duration=d, gpus=g) for i, s, d, g in jobs), source="t"
    )


def test_jobs_start_on_submission_or_queue_until_gpus_free() -> None:
    fleet = _fleet()
    trace = _trace(("j1", 0, 100, 8), ("j2", 10, 50, 8), ("j3", 20, 30, 4), ("j4", 500, 10, 16))
    clock = ManualClock(START)
    owner = TraceOwner(trace, start=START, pools=fleet.pools, default_pool="lab/H100")
    sim = SimEngine(fleet, clock, owner=owner)
    clock.advance(2_000)
    runs = {
        (w.spec.gpus, w.spec.duration): (w.submitted_at - START, w.started_at, w.ended_at)
        for w in sim.workloads(tier=Tier.INTERNAL, active=False)
    }
    assert len(runs) == 4  # and no more arrivals once the trace has run out
    # j3 (4 GPUs at t=20) waits for j2's node, free at t=60; j4 takes both nodes at t=500.
    assert runs[(8, 100)] == (0, START, START + 100)
    assert runs[(8, 50)] == (10, START + 10, START + 60)
    assert runs[(4, 30)] == (20, START + 60, START + 90)
    assert runs[(16, 10)] == (500, START + 500, START + 510)
    assert sim.usage()[0].by_tier[Tier.INTERNAL] == 0


def test_a_job_that_can_never_fit_is_refused_by_name() -> None:
    fleet = _fleet()
    with pytest.raises(ValueError, match=r"job 'odd' cannot run in lab/H100: .*multiple of 8"):
        TraceOwner(
            _trace(("ok", 0, 10, 8), ("odd", 5, 10, 12)),
            start=START,
            pools=fleet.pools,
            default_pool="lab/H100",
        )
    with pytest.raises(ValueError, match="default pool 'x/Y' is not in the fleet"):
        TraceOwner(_trace(("ok", 0, 10, 8)), start=START, pools=fleet.pools, default_pool="x/Y")


def test_the_owners_mix_follows_the_traces_frequencies() -> None:
    fleet = _fleet()
    jobs = [(f"s{i}", float(i), 10.0, 1) for i in range(3)] + [("big", 9.0, 10.0, 8)]
    owner = TraceOwner(_trace(*jobs), start=START, pools=fleet.pools, default_pool="lab/H100")
    assert owner.sizes.count(1) == 750 and owner.sizes.count(8) == 250
