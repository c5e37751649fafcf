"""The engine contract: what every FleetEngine does, run unchanged against sim and real Slurm.

Inventory; a lease started and stopped; refusals; spot noticed and then preempted when the owner's
work needs its GPUs (the owner's job sent as its teams send it: on Slurm, plain ``sbatch``), never
before the notice has run out; on-demand never taken back by the owner's work; a Backfill notice
(spot or on-demand); a node that goes down (its GPUs counted down, not idle) and comes back; usage
per tier.
"""

from __future__ import annotations

import pytest

from backfill.domain.tiers import Tier
from backfill.engines.base import (
    AccountRecord,
    EventKind,
    Outcome,
    PoolUsage,
    WorkloadSpec,
    WorkloadState,
)
from backfill.errors import (
    Conflict,
    InsufficientCapacity,
    NotFound,
    QuotaExceeded,
    ShapeNotPlaceable,
)
from tests.engines.harness import NODES, NOTICE, POOL, TENANT, Harness

STARTED, NOTICED, ENDED = EventKind.STARTED, EventKind.NOTICED, EventKind.ENDED
SPOT, OD, INT = Tier.SPOT, Tier.ON_DEMAND, Tier.INTERNAL
WAIT = NOTICE + 60  # a notice, and Slurm's grace check (every ~30 s), and a margin


def usage(h: Harness) -> dict[Tier, int]:
    (pool,) = h.engine.usage()
    assert pool.pool == POOL and pool.total == 32
    return {tier: gpus for tier, gpus in pool.by_tier.items() if gpus}


def fill_with_spot(h: Harness, prefix: str) -> list[str]:
    ids = [h.lease(f"lse_{prefix}{i}", SPOT, 8) for i in range(4)]
    h.until("four spot leases running", lambda: all(h.has(i, STARTED) for i in ids), 30)
    return ids


def test_inventory(harness: Harness) -> None:
    (pool,) = harness.engine.fleet().pools
    assert pool.key == POOL
    assert [(n.name, n.gpus) for n in pool.nodes] == [(name, 8) for name in NODES]
    assert pool.notice_seconds == NOTICE
    assert usage(harness) == {}


def test_lease_starts_and_stops(harness: Harness) -> None:
    h = harness
    lease = h.lease("lse_one", SPOT, 2)
    h.until("the lease started", lambda: h.has(lease, STARTED), 30)
    started = h.one(lease, STARTED)
    ((node, gpus),) = started.allocation.items()
    assert node in NODES and len(set(gpus)) == 2 and set(gpus) <= set(range(8))
    view = h.engine.workload(lease)
    assert view.state is WorkloadState.RUNNING and dict(view.allocation) == {node: gpus}
    assert usage(h) == {SPOT: 2}
    assert [v.spec.id for v in h.engine.workloads(tier=SPOT)] == [lease]

    h.engine.stop(lease)
    h.until("the lease ended", lambda: h.has(lease, ENDED), 30)
    ended = h.one(lease, ENDED)
    assert ended.outcome is Outcome.STOPPED and ended.at >= started.at
    assert h.engine.workload(lease).state is WorkloadState.ENDED
    assert usage(h) == {}
    assert h.engine.workloads(tier=SPOT) == []
    h.engine.stop(lease)  # idempotent
    h.read()
    assert len(h.events(lease, ENDED)) == 1  # each event once

    with pytest.raises(NotFound):
        h.engine.stop("lse_never")
    with pytest.raises(NotFound):
        h.engine.workload("lse_never")
    with pytest.raises(Conflict):
        h.engine.submit(WorkloadSpec(id=lease, tier=SPOT, pool=POOL, gpus=1, owner="t"))


def test_refuses_what_cannot_be_had(harness: Harness) -> None:
    h = harness
    with pytest.raises(ShapeNotPlaceable):
        h.lease("lse_odd", SPOT, 12)  # more than a node and not whole nodes
    with pytest.raises(ShapeNotPlaceable):
        h.lease("lse_huge", SPOT, 40)  # more nodes than the pool has
    with pytest.raises(NotFound):
        h.engine.submit(
            WorkloadSpec(id="lse_nopool", tier=SPOT, pool="nowhere/X", gpus=1, owner="t")
        )
    fill_with_spot(h, "full")
    with pytest.raises(InsufficientCapacity):
        h.lease("lse_late", SPOT, 1)  # spot takes only idle GPUs
    assert usage(h) == {SPOT: 32}


def test_owner_job_preempts_spot_after_its_notice(harness: Harness) -> None:
    h = harness
    spot = fill_with_spot(h, "s")
    owner = h.owner_job(8, 5)
    h.until("a spot lease noticed", lambda: any(h.has(i, NOTICED) for i in spot), 30)
    (victim,) = [i for i in spot if h.has(i, NOTICED)]
    notice = h.one(victim, NOTICED)
    assert notice.notice_at is not None and notice.stop_at is not None
    assert notice.stop_at - notice.notice_at == pytest.approx(NOTICE, abs=1)
    assert h.engine.workload(victim).state is WorkloadState.NOTICED

    h.until("the owner's job started", lambda: h.has(owner, STARTED), WAIT)
    ended = h.one(victim, ENDED)
    assert ended.outcome is Outcome.PREEMPTED
    assert ended.at >= notice.stop_at  # the full notice, never less
    started = h.one(owner, STARTED)
    assert started.tier is INT and started.at >= ended.at
    assert set(started.allocation) == set(h.one(victim, STARTED).allocation)
    assert usage(h) == {SPOT: 24, INT: 8}
    for other in spot:
        if other != victim:
            assert not h.has(other, NOTICED) and not h.has(other, ENDED)

    h.until("the owner's job ended", lambda: h.has(owner, ENDED), 60)
    assert h.one(owner, ENDED).outcome is Outcome.COMPLETED


def test_on_demand_is_never_taken_back(harness: Harness) -> None:
    h = harness
    firm = h.lease("lse_od", OD, 8)
    spot = [h.lease(f"lse_sp{i}", SPOT, 8) for i in range(3)]
    h.until("all leases running", lambda: all(h.has(i, STARTED) for i in [firm, *spot]), 30)
    owner = h.owner_job(8, 10)
    h.until("the owner's job started", lambda: h.has(owner, STARTED), WAIT)
    assert not h.has(firm, NOTICED) and not h.has(firm, ENDED)
    assert sum(h.has(i, NOTICED) for i in spot) == 1
    assert h.engine.workload(firm).state is WorkloadState.RUNNING
    with pytest.raises(Conflict):
        h.engine.notice(owner, reason="internal work cannot be noticed")


def test_on_demand_takes_spot_gpus_with_notice(harness: Harness) -> None:
    h = harness
    spot = fill_with_spot(h, "t")
    firm = h.lease("lse_firm", OD, 8)  # no idle GPU: one spot lease is noticed for it
    h.until("a spot lease noticed", lambda: any(h.has(i, NOTICED) for i in spot), 30)
    h.until("the on-demand lease started", lambda: h.has(firm, STARTED), WAIT)
    (victim,) = [i for i in spot if h.has(i, NOTICED)]
    assert h.one(victim, ENDED).at >= h.one(victim, NOTICED).stop_at  # type: ignore[operator]
    assert h.one(firm, STARTED).at >= h.one(victim, ENDED).at
    assert usage(h) == {SPOT: 24, OD: 8}


def test_backfill_notice_ends_spot_at_the_notice_end(harness: Harness) -> None:
    h = harness
    lease = h.lease("lse_priced", SPOT, 4)
    h.until("the lease started", lambda: h.has(lease, STARTED), 30)
    h.engine.notice(lease, reason="spot price above max_price")
    h.engine.notice(lease, reason="again")  # idempotent: the first notice stands
    h.until("the notice", lambda: h.has(lease, NOTICED), 5)
    notice = h.one(lease, NOTICED)
    assert notice.reason == "spot price above max_price"
    assert notice.stop_at is not None and notice.stop_at - notice.at >= NOTICE - 1e-9
    assert h.engine.workload(lease).state is WorkloadState.NOTICED
    h.until("the lease ended", lambda: h.has(lease, ENDED), WAIT)
    ended = h.one(lease, ENDED)
    assert ended.outcome is Outcome.PREEMPTED and ended.at >= notice.stop_at
    assert usage(h) == {}


def test_backfill_notice_ends_on_demand_at_the_notice_end(harness: Harness) -> None:
    h = harness
    lease = h.lease("lse_credit", OD, 8)
    h.until("the lease started", lambda: h.has(lease, STARTED), 30)
    h.engine.notice(lease, reason="credit exhausted")
    h.engine.notice(lease, reason="again")  # idempotent: the first notice stands
    h.until("the notice", lambda: h.has(lease, NOTICED), 5)
    notice = h.one(lease, NOTICED)
    assert notice.reason == "credit exhausted" and notice.tier is OD
    assert notice.stop_at is not None and notice.stop_at - notice.at >= NOTICE - 1e-9
    assert h.engine.workload(lease).state is WorkloadState.NOTICED
    assert usage(h) == {OD: 8}  # it runs out its notice
    h.until("the lease ended", lambda: h.has(lease, ENDED), WAIT)
    ended = h.one(lease, ENDED)
    assert ended.outcome is Outcome.PREEMPTED and ended.at >= notice.stop_at
    assert usage(h) == {}
    with pytest.raises(Conflict):
        h.engine.notice(lease, reason="ended work cannot be noticed")


def test_a_node_down_fails_the_work_on_it_and_is_not_used_until_up(harness: Harness) -> None:
    h = harness
    firm = h.lease("lse_nd", OD, 8)
    h.until("the lease started", lambda: h.has(firm, STARTED), 30)
    (node,) = h.one(firm, STARTED).allocation
    h.engine.set_node_down(node, reason="disk failed")
    h.engine.set_node_down(node, reason="again")  # idempotent
    h.until("the lease ended", lambda: h.has(firm, ENDED), 30)
    ended = h.one(firm, ENDED)
    assert ended.outcome is Outcome.FAILED and ended.exit_code is None
    assert ended.reason == f"node {node} down: disk failed"
    assert h.engine.workload(firm).state is WorkloadState.ENDED
    with pytest.raises(NotFound):
        h.engine.set_node_down("gpu99", reason="no such node")
    with pytest.raises(NotFound):
        h.engine.set_node_up("gpu99")

    # Its GPUs go to no one: three whole nodes can be had, not a GPU more.
    others = [h.lease(f"lse_nd{i}", SPOT, 8) for i in range(3)]
    h.until("three leases running", lambda: all(h.has(i, STARTED) for i in others), 30)
    assert all(node not in h.one(i, STARTED).allocation for i in others)
    with pytest.raises(InsufficientCapacity):
        h.lease("lse_ndx", SPOT, 1)
    assert usage(h) == {SPOT: 24}

    h.engine.set_node_up(node)
    h.engine.set_node_up(node)  # idempotent
    admitted: list[str] = []

    def lease_on_it() -> bool:  # (a real cluster takes a moment to hear from the node again)
        try:
            admitted.append(h.lease(f"lse_ndback{len(admitted)}", SPOT, 8))
        except InsufficientCapacity:
            return False
        return True

    h.until("a lease admitted on the node again", lease_on_it, 30)
    (back,) = admitted
    h.until("the lease on it started", lambda: h.has(back, STARTED), 30)
    assert set(h.one(back, STARTED).allocation) == {node}
    assert usage(h) == {SPOT: 32}


def test_a_down_node_s_gpus_are_counted_down_not_idle_until_it_is_up(harness: Harness) -> None:
    h = harness

    def pool() -> PoolUsage:
        (use,) = h.engine.usage()
        assert use.busy + use.claimed + use.down + use.idle == use.total == 32
        return use

    lease = h.lease("lse_dn", SPOT, 2)
    h.until("the lease started", lambda: h.has(lease, STARTED), 30)
    (node,) = h.one(lease, STARTED).allocation
    assert (pool().down, pool().idle) == (0, 30)
    h.engine.set_node_down(node, reason="fan failed")
    h.until("the lease ended", lambda: h.has(lease, ENDED), 30)
    down = pool()
    assert (down.busy, down.claimed, down.down, down.idle) == (0, 0, 8, 24)

    h.engine.set_node_up(node)  # (a real cluster takes a moment to hear from the node again)
    h.until("its GPUs idle again", lambda: pool().down == 0, 30)
    up = pool()
    assert (up.busy, up.down, up.idle) == (0, 0, 32)


def test_work_waiting_for_gpus_keeps_waiting_through_a_node_failure(harness: Harness) -> None:
    h = harness
    firm = [h.lease(f"lse_w{i}", OD, 8) for i in range(4)]
    h.until("four leases running", lambda: all(h.has(i, STARTED) for i in firm), 30)
    owner = h.owner_job(8, 5)  # no GPU for it: it waits
    (node,) = h.one(firm[0], STARTED).allocation
    h.engine.set_node_down(node, reason="lost power")
    h.until("the lease on it ended", lambda: h.has(firm[0], ENDED), 30)
    h.sleep(3)
    h.read()
    assert not h.has(owner, STARTED) and not h.has(owner, ENDED)
    assert [i for i in firm if h.has(i, ENDED)] == [firm[0]]
    assert h.one(firm[0], ENDED).reason == f"node {node} down: lost power"
    h.engine.set_node_up(node)
    h.until("the owner's job started", lambda: h.has(owner, STARTED), 60)
    assert set(h.one(owner, STARTED).allocation) == {node}


def test_reserved_keeps_the_owners_work_off_its_nodes_for_its_period(harness: Harness) -> None:
    h = harness
    now = h.engine.now()
    start, end = float(int(now) + 20), float(int(now) + 80)
    reserved = h.reserve("lse_res", 8, start, end)
    assert h.engine.workload(reserved).state is WorkloadState.PENDING
    # The owner's job wants every node; the reserved node is not for it, from now to the end.
    owner = h.owner_job(32, 5)
    h.until("the reserved lease started", lambda: h.has(reserved, STARTED), 40)
    assert h.one(reserved, STARTED).at >= start
    assert not h.has(owner, STARTED)
    assert usage(h) == {Tier.RESERVED: 8}
    with pytest.raises(Conflict):
        h.engine.notice(reserved, reason="reserved cannot be noticed")
    h.until("the owner's job started", lambda: h.has(owner, STARTED), 100)
    ended = h.one(reserved, ENDED)
    assert not h.has(reserved, NOTICED)
    assert ended.outcome is Outcome.COMPLETED and ended.at >= end  # its whole period
    assert h.one(owner, STARTED).at >= ended.at


def test_quota_holds_a_tenant_to_its_gpus(harness: Harness) -> None:
    h = harness
    h.engine.set_quota(TENANT, 8)
    first = h.lease("lse_q1", SPOT, 6)
    with pytest.raises(QuotaExceeded):
        h.lease("lse_q2", OD, 4)  # 6 + 4 > 8, even before the first has started
    second = h.lease("lse_q3", OD, 2)
    h.until("both leases running", lambda: h.has(first, STARTED) and h.has(second, STARTED), 30)
    with pytest.raises(QuotaExceeded):
        h.lease("lse_q4", SPOT, 1)
    h.engine.stop(first)
    h.until("the first lease ended", lambda: h.has(first, ENDED), 30)
    third = h.lease("lse_q5", SPOT, 6)  # room again
    h.until("the third lease running", lambda: h.has(third, STARTED), 30)
    h.engine.set_quota(TENANT, None)
    fourth = h.lease("lse_q6", SPOT, 8)  # no limit any more
    h.until("the fourth lease running", lambda: h.has(fourth, STARTED), 30)
    assert usage(h) == {SPOT: 14, OD: 2}


def test_accounting_matches_the_events(harness: Harness) -> None:
    h = harness
    since = h.engine.now() - 1
    lease = h.lease("lse_acct", SPOT, 2)
    owner = h.owner_job(8, 3)
    h.until("both started", lambda: h.has(lease, STARTED) and h.has(owner, STARTED), 30)
    h.sleep(2)
    h.engine.stop(lease)
    h.until("both ended", lambda: h.has(lease, ENDED) and h.has(owner, ENDED), 30)

    def records() -> dict[str, AccountRecord]:
        found = h.engine.accounting(since, h.engine.now() + 1)
        return {r.workload: r for r in found if r.workload in (lease, owner)}

    h.until("the engine's accounting has both", lambda: len(records()) == 2, 30)
    books = records()
    for workload, tier, gpus in ((lease, SPOT, 2), (owner, INT, 8)):
        record = books[workload]
        assert record.tier is tier and record.gpus == gpus and record.pool == POOL
        assert record.started_at == h.one(workload, STARTED).at
        assert record.ended_at == h.one(workload, ENDED).at
    assert books[lease].owner.endswith("contract")
