"""The sim engine: tiers enforced on GPU slots, notice before preemption, events in time order."""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from decimal import Decimal

import pytest

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.base import (
    EngineEvent,
    EventKind,
    Outcome,
    PoolUsage,
    WorkloadSpec,
    WorkloadState,
    WorkloadView,
)
from backfill.engines.sim import ManualClock, OwnerWorkload, SimEngine
from backfill.errors import Conflict, InsufficientCapacity, NotFound, ShapeNotPlaceable

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a midnight
H100 = "us-east/H100"  # nodes ue-0, ue-1; notice 120 s
A100 = "eu-west/A100"  # nodes ew-0, ew-1; notice 60 s
ALL8 = tuple(range(8))

INT, RES, OD, SPOT = Tier.INTERNAL, Tier.RESERVED, Tier.ON_DEMAND, Tier.SPOT
K_START, K_NOTICE, K_END = EventKind.STARTED, EventKind.NOTICED, EventKind.ENDED


def prices() -> Prices:
    return Prices(on_demand=Decimal("2.49"), reserved=Decimal("1.99"), spot_floor=Decimal("0.90"))


def small_fleet() -> Fleet:
    return Fleet(
        name="small",
        pools=(
            Pool("us-east", "H100", (Node("ue-0", 8), Node("ue-1", 8)), prices()),
            Pool(
                "eu-west", "A100", (Node("ew-0", 8), Node("ew-1", 8)), prices(), notice_seconds=60
            ),
        ),
    )


def engine(owner: OwnerWorkload | None = None) -> tuple[SimEngine, ManualClock]:
    clock = ManualClock(START)
    return SimEngine(small_fleet(), clock, owner=owner), clock


def spec(workload: str, tier: Tier, gpus: int, pool: str = H100, **kwargs: object) -> WorkloadSpec:
    return WorkloadSpec(id=workload, tier=tier, pool=pool, gpus=gpus, owner="acme", **kwargs)  # type: ignore[arg-type]


def held(usage: PoolUsage) -> dict[Tier, int]:
    return {tier: gpus for tier, gpus in usage.by_tier.items() if gpus}


def pool_usage(sim: SimEngine, key: str = H100) -> PoolUsage:
    return next(u for u in sim.usage() if u.pool == key)


def brief(events: list[EngineEvent]) -> list[tuple[EventKind, str, float]]:
    """(kind, workload, seconds since START) of each event."""
    return [(event.kind, event.workload, event.at - START) for event in events]


def check(sim: SimEngine, down: Collection[str] = ()) -> None:
    """No GPU is held by two workloads or claimed by two, nor any of a node that is ``down``;
    usage() agrees with the allocations and counts the down nodes' GPUs down, not idle."""
    fleet = sim.fleet()
    size = {node.name: node.gpus for p in fleet.pools for node in p.nodes}
    pool_of = {node.name: p.key for p in fleet.pools for node in p.nodes}
    holding: dict[tuple[str, int], WorkloadView] = {}
    claiming: dict[tuple[str, int], WorkloadView] = {}
    for view in sim.workloads(active=True):
        assert view.state is not WorkloadState.ENDED
        slots = [(n, i) for n, idx in view.allocation.items() for i in idx]
        if view.state in (WorkloadState.QUEUED,):
            assert slots == []
            continue
        if view.state is WorkloadState.PENDING and not slots:
            assert view.spec.start_at is not None  # only a reserved period not yet claimed
            continue
        assert len(slots) == view.spec.gpus == len(set(slots))
        for node, idx in view.allocation.items():
            assert pool_of[node] == view.spec.pool
            assert list(idx) == sorted(idx)
            assert all(0 <= i < size[node] for i in idx)
        if view.state in (WorkloadState.RUNNING, WorkloadState.NOTICED):
            for slot in slots:
                assert slot not in holding, f"{slot} held by {holding[slot].spec.id} too"
                holding[slot] = view
        else:
            assert view.state is WorkloadState.PENDING
            for slot in slots:
                assert slot not in claiming, f"{slot} claimed by {claiming[slot].spec.id} too"
                claiming[slot] = view
    assert not any(node in down for node, _ in [*holding, *claiming])
    for slot, claimant in claiming.items():
        if slot in holding:
            # A claimant waits only for a noticed spot holder to go.
            holder = holding[slot]
            assert holder.spec.tier is Tier.SPOT, (claimant.spec.id, holder.spec.id)
            assert holder.state is WorkloadState.NOTICED, (claimant.spec.id, holder.spec.id)
    for usage in sim.usage():
        by_tier = dict.fromkeys(Tier, 0)
        for slot, view in holding.items():
            if pool_of[slot[0]] == usage.pool:
                by_tier[view.spec.tier] += 1
        claimed_only = sum(
            1 for slot in claiming if slot not in holding and pool_of[slot[0]] == usage.pool
        )
        out = sum(size[node] for node in down if pool_of[node] == usage.pool)
        idle = usage.total - sum(by_tier.values()) - claimed_only - out
        assert dict(usage.by_tier) == by_tier
        assert usage.claimed == claimed_only
        assert usage.down == out
        assert usage.idle == idle >= 0
        total = sum(usage.by_tier.values()) + usage.idle + usage.claimed + usage.down
        assert total == usage.total
        assert usage.total == fleet.pool(usage.pool).gpus
    # What the replay's headroom reads, kept as sets, agrees with every node counted afresh.
    for pool in fleet.pools:
        holds = sim.node_holds(pool.key)
        spot_only = [
            h
            for h in holds
            if not h.reserved and (h.spot or h.noticed) and h.free + h.spot + h.noticed == h.gpus
        ]
        assert sim.node_holds(pool.key, spot_only=True) == spot_only
        coming = [h for h in spot_only if not h.spot]
        assert sim.coming_nodes(pool.key) == len(coming)
        running_spot = {
            view.spec.id
            for view in holding.values()
            if view.spec.tier is Tier.SPOT
            and view.state is WorkloadState.RUNNING
            and pool_of[next(iter(view.allocation))] == pool.key
        }
        assert sim.spot_on([n.name for n in pool.nodes]) == sorted(running_spot)


def at(clock: ManualClock, seconds: float) -> None:
    """Move the clock to START + seconds."""
    clock.advance(START + seconds - clock.now())


# --- spot, notice, preemption --------------------------------------------------------------------


def test_a_spot_lease_runs_at_once_on_idle_gpus() -> None:
    sim, _ = engine()

    view = sim.submit(spec("s1", SPOT, 8))

    assert view.state is WorkloadState.RUNNING
    assert view.started_at == START
    assert view.allocation == {"ue-0": ALL8}  # both nodes idle: tie → name
    assert brief(sim.poll()) == [(K_START, "s1", 0)]
    assert held(pool_usage(sim)) == {SPOT: 8}
    assert pool_usage(sim).idle == 8
    check(sim)


def test_internal_work_notices_spot_and_starts_on_its_gpus_exactly_when_the_notice_ends() -> None:
    sim, clock = engine()
    sim.submit(spec("o1", OD, 8))  # ue-0
    sim.submit(spec("s1", SPOT, 8))  # ue-1
    check(sim)
    at(clock, 100)

    claimant = sim.submit(spec("i1", INT, 8))

    # The internal job claims the spot lease's GPUs and waits for its notice to run out.
    assert claimant.state is WorkloadState.PENDING
    assert claimant.allocation == {"ue-1": ALL8}
    events = sim.poll()
    assert brief(events) == [(K_START, "o1", 0), (K_START, "s1", 0), (K_NOTICE, "s1", 100)]
    noticed = events[-1]
    assert noticed.tier is SPOT
    assert noticed.notice_at == START + 100
    assert noticed.stop_at == START + 100 + 120
    assert noticed.reason == "internal work needs the GPUs"
    assert noticed.allocation == {"ue-1": ALL8}
    assert held(pool_usage(sim)) == {OD: 8, SPOT: 8}
    check(sim)

    at(clock, 219)  # stop_at − 1: the spot lease still runs (and is billed)
    spot = sim.workload("s1")
    assert spot.state is WorkloadState.NOTICED
    assert (spot.notice_at, spot.stop_at) == (START + 100, START + 220)
    assert sim.workload("i1").state is WorkloadState.PENDING
    assert sim.poll() == []
    check(sim)

    at(clock, 220)
    events = sim.poll()
    assert brief(events) == [(K_END, "s1", 220), (K_START, "i1", 220)]
    ended, started = events
    assert ended.outcome is Outcome.PREEMPTED
    assert ended.exit_code is None
    assert ended.allocation == {"ue-1": ALL8}
    assert started.tier is INT
    assert started.allocation == {"ue-1": ALL8}
    spot = sim.workload("s1")
    assert (spot.state, spot.outcome, spot.ended_at) == (
        WorkloadState.ENDED,
        Outcome.PREEMPTED,
        START + 220,
    )
    internal = sim.workload("i1")
    assert (internal.state, internal.started_at) == (WorkloadState.RUNNING, START + 220)
    assert sim.workload("o1").state is WorkloadState.RUNNING
    assert sim.workload("o1").notice_at is None
    assert held(pool_usage(sim)) == {INT: 8, OD: 8}
    check(sim)


def test_the_notice_period_is_the_pools_and_a_multi_node_spot_lease_frees_all_its_nodes() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 16, pool=A100))  # both A100 nodes
    at(clock, 10)

    sim.submit(spec("i1", INT, 8, pool=A100))

    spot = sim.workload("s1")
    assert spot.allocation == {"ew-0": ALL8, "ew-1": ALL8}
    assert (spot.notice_at, spot.stop_at) == (START + 10, START + 10 + 60)
    assert sim.workload("i1").allocation == {"ew-0": ALL8}
    check(sim)

    at(clock, 70)
    assert brief(sim.poll()) == [
        (K_START, "s1", 0),
        (K_NOTICE, "s1", 10),
        (K_END, "s1", 70),
        (K_START, "i1", 70),
    ]
    assert held(pool_usage(sim, A100)) == {INT: 8}
    assert pool_usage(sim, A100).idle == 8
    assert held(pool_usage(sim, H100)) == {}
    check(sim)


def test_on_demand_and_reserved_are_never_noticed_internal_work_queues_until_gpus_free() -> None:
    sim, clock = engine()
    sim.submit(spec("o1", OD, 8))  # ue-0
    sim.submit(spec("r1", RES, 8))  # ue-1
    at(clock, 50)

    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("i0", INT, 8))  # not queued: refused at once
    queued = sim.submit(spec("i1", INT, 8, queue=True, duration=600))

    assert queued.state is WorkloadState.QUEUED
    assert queued.allocation == {}
    usage = pool_usage(sim)
    assert usage.queued_gpus == 8
    assert held(usage) == {OD: 8, RES: 8}
    assert usage.claimed == 0
    check(sim)

    at(clock, 3600)
    assert brief(sim.poll()) == [(K_START, "o1", 0), (K_START, "r1", 0)]
    assert sim.workload("o1").state is WorkloadState.RUNNING
    assert sim.workload("r1").state is WorkloadState.RUNNING
    assert sim.workload("i1").state is WorkloadState.QUEUED
    check(sim)

    sim.stop("o1")

    events = sim.poll()
    assert brief(events) == [(K_END, "o1", 3600), (K_START, "i1", 3600)]
    assert events[0].outcome is Outcome.STOPPED
    assert events[1].allocation == {"ue-0": ALL8}
    usage = pool_usage(sim)
    assert usage.queued_gpus == 0
    assert held(usage) == {INT: 8, RES: 8}
    check(sim)

    at(clock, 3600 + 600)
    assert brief(sim.poll()) == [(K_END, "i1", 4200)]
    assert sim.workload("r1").notice_at is None
    check(sim)


def test_a_spot_claimant_cannot_preempt_spot() -> None:
    sim, _ = engine()
    sim.submit(spec("s1", SPOT, 8))
    sim.submit(spec("s2", SPOT, 8))

    with pytest.raises(InsufficientCapacity) as caught:
        sim.submit(spec("s3", SPOT, 1))

    assert caught.value.field == "gpus"
    assert [e.kind for e in sim.poll()] == [K_START, K_START]  # nobody was noticed
    assert sim.workload("s1").state is WorkloadState.RUNNING
    assert sim.workload("s2").state is WorkloadState.RUNNING
    with pytest.raises(NotFound):
        sim.workload("s3")  # a refused workload is not recorded
    check(sim)


def test_on_demand_may_take_spot_gpus_with_notice() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 4))  # ue-0 0-3
    sim.submit(spec("s2", SPOT, 8))  # ue-1
    at(clock, 5)

    view = sim.submit(spec("o1", OD, 6))

    # ue-0 has 4 idle: s1 frees 4 more (8 − 6 = 2 over); ue-1 would free 8 (2 over) with more
    # lost work (8 GPUs × 5 s against 4 × 5 s) → ue-0, s1. Idle GPUs are taken first.
    assert view.state is WorkloadState.PENDING
    assert view.allocation == {"ue-0": (0, 1, 4, 5, 6, 7)}
    assert sim.workload("s1").state is WorkloadState.NOTICED
    assert sim.workload("s2").state is WorkloadState.RUNNING
    assert pool_usage(sim).claimed == 4
    check(sim)

    at(clock, 125)
    assert sim.workload("o1").state is WorkloadState.RUNNING
    assert sim.workload("s1").outcome is Outcome.PREEMPTED
    check(sim)


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("gpus", [0, -1, 9, 12, 24, 32])
def test_lease_shapes_that_can_never_fit_raise_shape_not_placeable(gpus: int) -> None:
    sim, _ = engine()

    with pytest.raises(ShapeNotPlaceable) as caught:
        sim.submit(spec("x", SPOT, gpus))

    assert caught.value.code == "shape_not_placeable"
    assert caught.value.field == "gpus"
    assert sim.workloads(active=False) == []


def test_an_unknown_pool_is_not_found() -> None:
    sim, _ = engine()

    with pytest.raises(NotFound) as caught:
        sim.submit(spec("x", SPOT, 1, pool="us-east/B200"))

    assert caught.value.field == "pool"


def test_a_duplicate_id_is_a_conflict_even_after_the_first_ended() -> None:
    sim, _ = engine()
    sim.submit(spec("dup", SPOT, 1))

    with pytest.raises(Conflict) as caught:
        sim.submit(spec("dup", OD, 1))
    assert type(caught.value) is Conflict
    assert caught.value.field == "id"

    sim.stop("dup")
    with pytest.raises(Conflict) as caught:
        sim.submit(spec("dup", SPOT, 1))
    assert type(caught.value) is Conflict
    assert held(pool_usage(sim)) == {}
    check(sim)


def test_unknown_workloads_are_not_found() -> None:
    sim, _ = engine()

    with pytest.raises(NotFound):
        sim.stop("ghost")
    with pytest.raises(NotFound):
        sim.notice("ghost", reason="x")
    with pytest.raises(NotFound):
        sim.workload("ghost")


# --- stop, notice, duration ----------------------------------------------------------------------


def test_stop_is_idempotent() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 4))
    at(clock, 30)

    sim.stop("s1")
    at(clock, 40)
    sim.stop("s1")

    assert brief(sim.poll()) == [(K_START, "s1", 0), (K_END, "s1", 30)]
    view = sim.workload("s1")
    assert (view.state, view.outcome, view.ended_at) == (
        WorkloadState.ENDED,
        Outcome.STOPPED,
        START + 30,
    )
    assert view.exit_code is None
    assert pool_usage(sim).idle == 16
    check(sim)


def test_stopping_queued_or_pending_work_releases_its_place() -> None:
    sim, clock = engine()
    sim.submit(spec("o1", OD, 8))
    sim.submit(spec("s1", SPOT, 8))
    sim.submit(spec("i1", INT, 8))  # claims ue-1, waits for s1
    sim.submit(spec("i2", INT, 8, queue=True))  # nothing left: queued
    assert pool_usage(sim).queued_gpus == 8
    check(sim)

    sim.stop("i2")
    sim.stop("i1")

    assert pool_usage(sim).queued_gpus == 0
    assert sim.workload("i1").outcome is Outcome.STOPPED
    check(sim)
    # The notice stands: s1 is still stopped at its end, and its GPUs are then idle.
    at(clock, 120)
    assert sim.workload("s1").outcome is Outcome.PREEMPTED
    assert held(pool_usage(sim)) == {OD: 8}
    check(sim)


def test_notice_on_anything_but_a_running_spot_or_on_demand_lease_is_a_conflict() -> None:
    sim, _ = engine()
    sim.submit(spec("o1", OD, 4))
    sim.submit(spec("r1", RES, 4))
    sim.submit(spec("i1", INT, 4))
    sim.submit(spec("s1", SPOT, 4))
    sim.stop("s1")
    sim.stop("o1")

    for workload in ("o1", "r1", "i1", "s1"):
        with pytest.raises(Conflict) as caught:
            sim.notice(workload, reason="price above max")
        assert type(caught.value) is Conflict
    assert all(e.kind is not K_NOTICE for e in sim.poll())
    check(sim)


def test_notice_stops_a_spot_lease_after_the_notice_period_and_keeps_the_first_notice() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 2, pool=A100))
    at(clock, 10)

    sim.notice("s1", reason="spot price above max_price")
    at(clock, 30)
    sim.notice("s1", reason="again")

    view = sim.workload("s1")
    assert view.state is WorkloadState.NOTICED
    assert (view.notice_at, view.stop_at) == (START + 10, START + 70)
    assert view.reason == "spot price above max_price"
    at(clock, 69)
    assert sim.workload("s1").state is WorkloadState.NOTICED
    at(clock, 70)
    assert brief(sim.poll()) == [(K_START, "s1", 0), (K_NOTICE, "s1", 10), (K_END, "s1", 70)]
    assert sim.workload("s1").outcome is Outcome.PREEMPTED
    check(sim)


def test_a_noticed_on_demand_lease_runs_out_its_notice_and_is_no_one_s_victim() -> None:
    sim, clock = engine()
    sim.submit(spec("o1", OD, 8))  # ue-0
    sim.submit(spec("s1", SPOT, 8))  # ue-1
    at(clock, 10)

    sim.notice("o1", reason="credit exhausted")
    sim.notice("o1", reason="again")
    view = sim.workload("o1")
    assert view.state is WorkloadState.NOTICED and view.reason == "credit exhausted"
    assert (view.notice_at, view.stop_at) == (START + 10, START + 130)
    check(sim)
    # The owner's job takes spot's GPUs, never a noticed on-demand lease's: it waits for spot.
    sim.submit(spec("i1", INT, 8, queue=True, duration=60))
    assert sim.workload("s1").state is WorkloadState.NOTICED
    assert sim.workload("i1").allocation == {"ue-1": ALL8}
    check(sim)
    at(clock, 130)
    assert brief(sim.poll()) == [
        (K_START, "o1", 0),
        (K_START, "s1", 0),
        (K_NOTICE, "o1", 10),
        (K_NOTICE, "s1", 10),
        (K_END, "o1", 130),
        (K_END, "s1", 130),
        (K_START, "i1", 130),
    ]
    assert sim.workload("o1").outcome is Outcome.PREEMPTED
    check(sim)


def test_a_duration_ends_the_workload_completed_with_exit_code_0() -> None:
    sim, clock = engine()
    at(clock, 7)
    sim.submit(spec("s1", SPOT, 2, duration=300.0))
    sim.submit(spec("o1", OD, 4, duration=45.0))

    at(clock, 7 + 44)
    assert sim.workload("o1").state is WorkloadState.RUNNING
    at(clock, 7 + 299)
    assert sim.workload("s1").state is WorkloadState.RUNNING
    assert sim.workload("o1").state is WorkloadState.ENDED
    at(clock, 7 + 300)

    events = sim.poll()
    assert brief(events) == [
        (K_START, "s1", 7),
        (K_START, "o1", 7),
        (K_END, "o1", 52),
        (K_END, "s1", 307),
    ]
    assert [(e.outcome, e.exit_code) for e in events[2:]] == [(Outcome.COMPLETED, 0)] * 2
    view = sim.workload("s1")
    assert (view.outcome, view.exit_code, view.ended_at) == (Outcome.COMPLETED, 0, START + 307)
    check(sim)


# --- reserved periods ----------------------------------------------------------------------------


# --- nodes down and up --------------------------------------------------------------------------


def test_a_node_down_fails_its_holders_requeues_its_claimants_and_is_used_again_once_up() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 8))  # ue-0
    sim.submit(spec("o1", OD, 4))  # ue-1 (firm work keeps off spot's node)
    at(clock, 10)
    sim.submit(spec("o2", OD, 8))  # claims ue-0: s1 is noticed
    assert sim.workload("o2").allocation == {"ue-0": ALL8}
    sim.poll()

    sim.set_node_down("ue-0", reason="PSU failed")
    sim.set_node_down("ue-0", reason="again")  # idempotent
    (ended,) = sim.poll()
    assert (ended.kind, ended.workload, ended.at) == (K_END, "s1", START + 10)
    assert (ended.outcome, ended.exit_code) == (Outcome.FAILED, None)
    assert ended.reason == "node ue-0 down: PSU failed"
    claimant = sim.workload("o2")
    assert claimant.state is WorkloadState.QUEUED and claimant.allocation == {}
    usage = pool_usage(sim)
    assert held(usage) == {OD: 4} and usage.claimed == 0 and usage.queued_gpus == 8
    assert (usage.down, usage.idle) == (8, 4)
    assert sim.idle_nodes(H100) == 0
    check(sim, down={"ue-0"})
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("s2", SPOT, 8))  # ue-0's GPUs go to no one
    sim.submit(spec("s3", SPOT, 4))  # ue-1's idle ones still do
    check(sim, down={"ue-0"})
    with pytest.raises(NotFound):
        sim.set_node_down("ue-9", reason="no such node")
    with pytest.raises(NotFound):
        sim.set_node_up("ue-9")

    at(clock, 20)
    sim.set_node_up("ue-0")
    sim.set_node_up("ue-0")  # idempotent
    assert brief(sim.poll()) == [(K_START, "s3", 10), (K_START, "o2", 20)]
    assert sim.workload("o2").allocation == {"ue-0": ALL8}
    check(sim)


def test_a_node_down_ends_a_multi_node_lease_whole_and_frees_its_other_nodes() -> None:
    sim, _ = engine()
    sim.submit(spec("s1", SPOT, 16))
    sim.submit(spec("i1", INT, 8, queue=True, duration=60))  # claims a node of s1
    sim.set_node_down("ue-1", reason="network")

    assert sim.workload("s1").outcome is Outcome.FAILED
    assert sim.workload("i1").state is WorkloadState.RUNNING  # ue-0, free again
    assert sim.workload("i1").allocation == {"ue-0": ALL8}
    assert held(pool_usage(sim)) == {INT: 8}
    check(sim, down={"ue-1"})


def test_a_reservation_whose_set_aside_node_is_down_claims_another_and_starts_on_time() -> None:
    sim, clock = engine()
    sim.submit(spec("r1", RES, 8, start_at=START + 600, end_at=START + 3600))
    (node,) = (hold.name for hold in sim.node_holds(H100) if hold.reserved)
    other = "ue-1" if node == "ue-0" else "ue-0"
    sim.set_node_down(node, reason="maintenance")
    check(sim, down={node})
    at(clock, 600)
    view = sim.workload("r1")
    assert view.state is WorkloadState.RUNNING and view.allocation == {other: ALL8}
    sim.set_node_up(node)
    check(sim)


def test_invariants_hold_while_nodes_go_down_and_up_under_the_owners_work() -> None:
    sim, clock = engine(OwnerWorkload(seed=5))
    nodes = ("ue-0", "ue-1", "ew-0", "ew-1")
    failed = 0
    down: set[str] = set()
    for step in range(400):
        clock.advance(STEP)
        node = nodes[step % 4]
        if step % 7 == 0:
            sim.set_node_down(node, reason="flaky")
            down.add(node)
        elif step % 5 == 0:
            sim.set_node_up(node)
            down.discard(node)
        for usage in sim.usage():
            if usage.idle >= 2:
                with contextlib.suppress(InsufficientCapacity):  # idle, but a down node's
                    sim.submit(spec(f"s-{step}-{usage.pool}", SPOT, 2, pool=usage.pool))
        failed += sum(1 for e in sim.poll() if e.outcome is Outcome.FAILED)
        check(sim, down)
    assert failed >= 1


def test_a_down_node_s_gpus_are_counted_down_not_idle_until_it_is_up() -> None:
    sim, _ = engine()
    sim.submit(spec("s1", SPOT, 4))  # ue-0
    sim.submit(spec("a1", SPOT, 8, pool=A100))
    sim.set_node_down("ue-0", reason="ECC errors")
    usage = pool_usage(sim)
    assert held(usage) == {} and (usage.down, usage.idle, usage.claimed) == (8, 8, 0)
    assert held(pool_usage(sim, A100)) == {SPOT: 8} and pool_usage(sim, A100).down == 0
    check(sim, down={"ue-0"})
    sim.submit(spec("s2", SPOT, 8))  # the idle the usage offers is there to be had
    usage = pool_usage(sim)
    assert held(usage) == {SPOT: 8} and (usage.down, usage.idle) == (8, 0)
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("s3", SPOT, 1))
    check(sim, down={"ue-0"})
    sim.set_node_down("ue-0", reason="again")  # idempotent: counted once
    assert pool_usage(sim).down == 8

    sim.set_node_up("ue-0")
    usage = pool_usage(sim)
    assert (usage.down, usage.idle) == (0, 8)
    check(sim)


def test_reserved_claims_at_start_minus_notice_starts_at_start_and_completes_at_end() -> None:
    sim, clock = engine()
    reserved = sim.submit(spec("r1", RES, 8, start_at=START + 1000, end_at=START + 5000))
    assert reserved.state is WorkloadState.PENDING  # ue-0 is set aside for it from now on
    assert reserved.allocation == {}
    sim.submit(spec("s1", SPOT, 8))  # ue-0: spot may use a reservation's node until its claim
    at(clock, 10)
    sim.submit(spec("s2", SPOT, 8))  # ue-1
    check(sim)

    at(clock, 879)  # start − notice − 1: nothing claimed yet
    assert sim.workload("r1").allocation == {}
    assert sim.workload("s1").state is WorkloadState.RUNNING
    check(sim)

    at(clock, 880)  # start − notice: s1, on the node set aside, is noticed to end at the start
    spot = sim.workload("s1")
    assert (spot.state, spot.notice_at, spot.stop_at) == (
        WorkloadState.NOTICED,
        START + 880,
        START + 1000,
    )
    assert spot.reason == "reserved work needs the GPUs"
    assert sim.workload("s2").state is WorkloadState.RUNNING
    assert sim.workload("r1").state is WorkloadState.PENDING
    assert sim.workload("r1").allocation == {"ue-0": ALL8}
    check(sim)

    at(clock, 999)
    assert sim.workload("r1").state is WorkloadState.PENDING
    at(clock, 1000)
    view = sim.workload("r1")
    assert (view.state, view.started_at) == (WorkloadState.RUNNING, START + 1000)
    check(sim)

    at(clock, 4999)
    assert sim.workload("r1").state is WorkloadState.RUNNING
    at(clock, 5000)
    assert brief(sim.poll()) == [
        (K_START, "s1", 0),
        (K_START, "s2", 10),
        (K_NOTICE, "s1", 880),
        (K_END, "s1", 1000),
        (K_START, "r1", 1000),
        (K_END, "r1", 5000),
    ]
    view = sim.workload("r1")
    assert (view.outcome, view.exit_code, view.ended_at) == (Outcome.COMPLETED, 0, START + 5000)
    assert held(pool_usage(sim)) == {SPOT: 8}
    check(sim)


def test_a_reservation_s_node_is_set_aside_at_sale_so_the_owner_cannot_make_it_start_late() -> None:
    sim, clock = engine()
    sim.submit(spec("r1", RES, 8, start_at=START + 1000, end_at=START + 2000))  # ue-0
    assert sim.idle_nodes(H100) == 1  # the node set aside is not the owner's to count
    sim.submit(spec("o1", INT, 8, duration=5000.0, queue=True))  # ue-1
    sim.submit(spec("o2", INT, 4, duration=5000.0, queue=True))  # ue-0 is idle, yet not its
    assert sim.workload("o2").state is WorkloadState.QUEUED
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("d1", OD, 1))  # on-demand keeps off it too
    sim.submit(spec("s1", SPOT, 8))  # spot may use it until the claim
    assert sim.workload("s1").allocation == {"ue-0": ALL8}
    check(sim)

    at(clock, 1000)
    assert sim.workload("r1").started_at == START + 1000  # on time: spot had its notice
    assert sim.workload("o2").state is WorkloadState.QUEUED
    at(clock, 2000)  # the reservation ends: the node is the owner's again
    assert sim.workload("o2").state is WorkloadState.RUNNING
    assert [n.reserved for n in sim.node_holds(H100)] == [False, False]
    check(sim)


def test_reservations_share_a_node_set_aside_and_take_whole_nodes_beyond_one() -> None:
    sim, clock = engine()
    sim.submit(spec("r1", RES, 4, start_at=START + 1000, end_at=START + 2000))
    sim.submit(spec("r2", RES, 4, start_at=START + 1500, end_at=START + 3000))
    assert [n.reserved for n in sim.node_holds(H100)] == [True, False]  # both on ue-0
    with pytest.raises(InsufficientCapacity):  # ue-1 alone cannot hold 16
        sim.submit(spec("r3", RES, 16, start_at=START + 1000, end_at=START + 2000))
    sim.submit(spec("r4", RES, 8, start_at=START + 1000, end_at=START + 2000))  # ue-1
    at(clock, 1500)
    assert {sim.workload(w).started_at for w in ("r1", "r2", "r4")} == {
        START + 1000,
        START + 1500,
    }
    check(sim)


def test_a_reservation_that_cannot_be_set_aside_is_refused_and_changes_nothing() -> None:
    sim, _ = engine()
    sim.submit(spec("d1", OD, 8))  # ue-0
    sim.submit(spec("o1", INT, 4, duration=100.0))  # ue-1
    with pytest.raises(InsufficientCapacity, match="set aside"):
        sim.submit(spec("r1", RES, 8, start_at=START + 1000, end_at=START + 2000))
    assert [w.spec.id for w in sim.workloads()] == ["d1", "o1"]
    assert [n.reserved for n in sim.node_holds(H100)] == [False, False]
    check(sim)


def test_freed_gpus_go_to_queued_internal_work_before_a_reserved_lease_that_queued_first() -> None:
    sim, clock = engine()
    sim.submit(spec("o1", OD, 8))  # ue-0
    sim.submit(spec("o2", OD, 8))  # ue-1
    # Nothing can be set aside now; a reservation that may queue waits for its claim instead.
    sim.submit(spec("r1", RES, 8, start_at=START + 200, queue=True))
    at(clock, 80)  # start − notice: nothing to claim, so the reserved lease waits in the queue
    assert sim.workload("r1").state is WorkloadState.QUEUED
    at(clock, 100)
    sim.submit(spec("i1", INT, 8, queue=True))
    check(sim)

    at(clock, 150)
    sim.stop("o1")

    assert sim.workload("i1").allocation == {"ue-0": ALL8}
    assert sim.workload("i1").state is WorkloadState.RUNNING
    assert sim.workload("r1").state is WorkloadState.QUEUED
    check(sim)
    at(clock, 300)
    sim.stop("o2")
    view = sim.workload("r1")
    assert (view.state, view.started_at, view.allocation) == (
        WorkloadState.RUNNING,
        START + 300,
        {"ue-1": ALL8},
    )
    check(sim)


def test_reserved_on_an_idle_pool_claims_early_but_starts_at_its_start() -> None:
    sim, clock = engine()
    sim.submit(spec("r1", RES, 8, start_at=START + 1000, end_at=START + 5000))

    at(clock, 880)  # start − notice: the GPUs are claimed, but the period has not begun
    view = sim.workload("r1")
    assert (view.state, view.allocation) == (WorkloadState.PENDING, {"ue-0": ALL8})
    assert pool_usage(sim).claimed == 8
    check(sim)
    # Claimed GPUs are not idle: spot gets the other node, and nothing more.
    at(clock, 900)
    assert sim.submit(spec("s1", SPOT, 8)).allocation == {"ue-1": ALL8}
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("s2", SPOT, 1))
    check(sim)

    at(clock, 999)
    assert sim.workload("r1").state is WorkloadState.PENDING
    at(clock, 1000)
    view = sim.workload("r1")
    assert (view.state, view.started_at) == (WorkloadState.RUNNING, START + 1000)
    assert brief(sim.poll()) == [(K_START, "s1", 900), (K_START, "r1", 1000)]
    assert sim.workload("s1").state is WorkloadState.RUNNING  # it was never in the way
    check(sim)


def test_reserved_does_not_start_early_when_its_noticed_victim_is_stopped_early() -> None:
    sim, clock = engine()
    sim.submit(spec("s1", SPOT, 8))  # ue-0
    at(clock, 10)
    sim.submit(spec("s2", SPOT, 8))  # ue-1
    sim.submit(spec("r1", RES, 8, start_at=START + 1000))  # sets aside spot's first node, ue-0
    at(clock, 880)
    assert sim.workload("s1").state is WorkloadState.NOTICED

    at(clock, 900)
    sim.stop("s1")  # its tenant stops it before the notice runs out

    view = sim.workload("r1")
    assert (view.state, view.allocation) == (WorkloadState.PENDING, {"ue-0": ALL8})
    assert pool_usage(sim).claimed == 8
    check(sim)
    at(clock, 999)
    assert sim.workload("r1").state is WorkloadState.PENDING
    at(clock, 1000)
    assert sim.workload("r1").started_at == START + 1000
    assert brief(sim.poll())[-2:] == [(K_END, "s1", 900), (K_START, "r1", 1000)]
    check(sim)


# --- events and allocations ----------------------------------------------------------------------


def test_poll_returns_each_event_once_in_time_order() -> None:
    sim, clock = engine()
    sim.submit(spec("a", SPOT, 2, duration=50.0))
    sim.submit(spec("b", SPOT, 2, duration=30.0))
    sim.submit(spec("c", OD, 4, duration=40.0, pool=A100))
    at(clock, 35)

    first = sim.poll()
    assert brief(first) == [
        (K_START, "a", 0),
        (K_START, "b", 0),
        (K_START, "c", 0),
        (K_END, "b", 30),
    ]
    assert sim.poll() == []

    at(clock, 100)
    second = sim.poll()
    assert brief(second) == [(K_END, "c", 40), (K_END, "a", 50)]
    assert sim.poll() == []
    times = [e.at for e in first + second]
    assert times == sorted(times)


def test_allocations_name_gpu_indices_and_fill_the_lowest_free_ones() -> None:
    sim, _ = engine()

    assert sim.submit(spec("a", SPOT, 3)).allocation == {"ue-0": (0, 1, 2)}
    # ue-0 has 5 idle (leaves 3), ue-1 has 8 (leaves 6): best fit → ue-0.
    assert sim.submit(spec("b", SPOT, 2)).allocation == {"ue-0": (3, 4)}
    check(sim)
    sim.stop("a")
    # Spot lower-index GPUs are free again. ue-0 (6 idle, leaves 2) would fit best, but work
    # that is never taken back keeps off spot's nodes while it can: ue-1.
    assert sim.submit(spec("c", OD, 4)).allocation == {"ue-1": (0, 1, 2, 3)}
    # Spot may go anywhere: ue-0 idle 0, 1, 2, 5, 6, 7 is the only fit for 6.
    assert sim.submit(spec("d", SPOT, 6)).allocation == {"ue-0": (0, 1, 2, 5, 6, 7)}
    assert sim.submit(spec("e", INT, 2)).allocation == {"ue-1": (4, 5)}
    check(sim)
    started = {e.workload: dict(e.allocation) for e in sim.poll() if e.kind is K_START}
    assert started["c"] == {"ue-1": (0, 1, 2, 3)}
    usage = pool_usage(sim)
    assert held(usage) == {SPOT: 8, OD: 4, INT: 2}
    assert usage.idle == 2


def test_workloads_filter_by_tier_and_activity() -> None:
    sim, _ = engine()
    sim.submit(spec("s1", SPOT, 1))
    sim.submit(spec("s2", SPOT, 1))
    sim.submit(spec("o1", OD, 1))
    sim.stop("s1")

    assert sorted(v.spec.id for v in sim.workloads()) == ["o1", "s2"]
    assert sorted(v.spec.id for v in sim.workloads(tier=SPOT)) == ["s2"]
    assert sorted(v.spec.id for v in sim.workloads(tier=SPOT, active=False)) == ["s1", "s2"]
    assert sorted(v.spec.id for v in sim.workloads(active=False)) == ["o1", "s1", "s2"]
    assert sim.workloads(tier=INT) == []


# --- the owner's work ----------------------------------------------------------------------------

TWO_DAYS = 2 * 86_400
STEP = 300


def owner_trace(seed: int) -> list[tuple[object, ...]]:
    """Every event of two simulated days with the owner's work only, checking as it goes."""
    sim, clock = engine(OwnerWorkload(seed=seed))
    trace: list[tuple[object, ...]] = []
    for _ in range(TWO_DAYS // STEP):
        clock.advance(STEP)
        for event in sim.poll():
            trace.append(
                (
                    event.kind,
                    event.workload,
                    event.at,
                    tuple(sorted(event.allocation.items())),
                    event.outcome,
                )
            )
        check(sim)
    return trace


def test_the_same_owner_seed_gives_the_same_internal_jobs() -> None:
    first = owner_trace(seed=7)
    second = owner_trace(seed=7)

    assert first == second
    starts = [t for t in first if t[0] is K_START]
    assert len(starts) >= 20  # ~19 jobs a day per pool at the default load
    assert all(str(t[1]).startswith("internal-") for t in first)
    times = [t[2] for t in first]
    assert times == sorted(times)


def test_a_different_owner_seed_gives_different_internal_jobs() -> None:
    assert owner_trace(seed=7) != owner_trace(seed=8)


def test_owner_jobs_are_a_pure_function_of_seed_and_pool() -> None:
    pool = small_fleet().pool(H100)
    a, b = OwnerWorkload(seed=3), OwnerWorkload(seed=3)

    jobs_a, jobs_b, t_a, t_b = [], [], START, START
    for _ in range(20):
        job_a, job_b = a.next_job(pool, t_a), b.next_job(pool, t_b)
        jobs_a.append(job_a)
        jobs_b.append(job_b)
        t_a, t_b = job_a.at, job_b.at
    assert jobs_a == jobs_b
    assert all(job.at > START for job in jobs_a)
    assert all(job.gpus in (1, 2, 4, 8) for job in jobs_a)  # 16 needs 4 whole nodes here
    assert all(job.duration >= 60 for job in jobs_a)


def test_invariants_hold_with_spot_backfilling_the_owners_work() -> None:
    sim, clock = engine(OwnerWorkload(seed=11))
    counter = refused = 0
    outcomes: list[Outcome | None] = []
    for step in range(TWO_DAYS // STEP):
        clock.advance(STEP)
        for usage in sim.usage():
            if usage.idle >= 2:
                counter += 1
                gpus = min(usage.idle, (1, 2, 4, 8)[step % 4])
                try:
                    sim.submit(
                        spec(f"spot-{counter}", SPOT, gpus, pool=usage.pool, duration=5400.0)
                    )
                except InsufficientCapacity:
                    refused += 1  # idle GPUs split across nodes
        outcomes += [e.outcome for e in sim.poll() if e.kind is K_END and e.tier is SPOT]
        check(sim)
    assert outcomes.count(Outcome.PREEMPTED) >= 1
    assert outcomes.count(Outcome.COMPLETED) >= 1


def test_owner_load_stays_within_mean_plus_minus_amplitude_and_peaks_mid_afternoon() -> None:
    owner = OwnerWorkload(mean=0.45, amplitude=0.2)
    samples = {minute: owner.load(START + minute * 60) for minute in range(0, 24 * 60, 10)}

    assert all(0.25 - 1e-12 <= load <= 0.65 + 1e-12 for load in samples.values())
    peak = max(samples, key=samples.__getitem__)
    trough = min(samples, key=samples.__getitem__)
    assert peak == 15 * 60  # 15:00 UTC
    assert trough == 3 * 60  # 03:00 UTC
    assert owner.load(START + 15 * 3600) == pytest.approx(0.65)
    assert owner.load(START + 3 * 3600) == pytest.approx(0.25)
    assert owner.load(START + 9 * 3600) == pytest.approx(0.45)
    # The pattern repeats daily.
    assert owner.load(START + 86_400 + 15 * 3600) == pytest.approx(0.65)


def test_owner_workload_refuses_a_load_outside_zero_and_one() -> None:
    with pytest.raises(ValueError, match="mean ± amplitude"):
        OwnerWorkload(mean=0.9, amplitude=0.2)
    with pytest.raises(ValueError, match="mean ± amplitude"):
        OwnerWorkload(mean=0.1, amplitude=0.2)


def test_spot_keeps_the_headroom_of_whole_idle_nodes() -> None:
    sim, _ = engine()
    # Two idle nodes, one kept: a 2-GPU spot lease may break one of them, not both.
    assert sim.submit(spec("a", SPOT, 2, keep_idle_nodes=1)).allocation == {"ue-0": (0, 1)}
    assert sim.idle_nodes(H100) == 1
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("b", SPOT, 7, keep_idle_nodes=1))  # only ue-1 fits it
    assert sim.submit(spec("c", SPOT, 6, keep_idle_nodes=1)).allocation == {
        "ue-0": (2, 3, 4, 5, 6, 7)
    }
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("d", SPOT, 8, keep_idle_nodes=1))
    # Larger than a node: whole nodes, counted against the headroom the same way.
    sim.stop("a")
    sim.stop("c")
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("e", SPOT, 16, keep_idle_nodes=1))
    assert set(sim.submit(spec("f", SPOT, 16)).allocation) == {"ue-0", "ue-1"}
    # The owner's work is not held to the headroom.
    sim.stop("f")
    sim.submit(spec("g", SPOT, 8))
    assert sim.submit(spec("h", INT, 8)).allocation == {"ue-1": ALL8}
    check(sim)


def test_spot_kept_apart_from_the_owner_and_the_owner_off_spot_nodes() -> None:
    sim, _ = engine()
    assert sim.submit(spec("own", INT, 2)).allocation == {"ue-0": (0, 1)}
    # Spot apart from the owner skips ue-0's six idle GPUs, best fit though they are.
    assert sim.submit(spec("s1", SPOT, 2, apart_from_owner=True)).allocation == {"ue-1": (0, 1)}
    with pytest.raises(InsufficientCapacity):
        sim.submit(spec("s2", SPOT, 7, apart_from_owner=True))
    assert sim.submit(spec("s3", SPOT, 6, apart_from_owner=True)).allocation == {
        "ue-1": (2, 3, 4, 5, 6, 7)
    }
    sim.stop("s3")
    # The owner's next job stays off the spot node while its own node has room ...
    assert sim.submit(spec("own2", INT, 1)).allocation == {"ue-0": (2,)}
    # ... and lands beside spot only when nothing else fits.
    assert sim.submit(spec("own3", INT, 6)).allocation == {"ue-1": (2, 3, 4, 5, 6, 7)}
    holds = {h.name: h for h in sim.node_holds(H100)}
    assert (holds["ue-0"].free, holds["ue-0"].spot) == (5, 0)
    assert (holds["ue-1"].free, holds["ue-1"].spot) == (0, 2)
    sim.notice("s1", reason="headroom")
    holds = {h.name: h for h in sim.node_holds(H100)}
    assert (holds["ue-1"].spot, holds["ue-1"].noticed) == (0, 2)
    check(sim)
