"""The sim engine places every workload with the benchmarked placement policy, judged against the
owner's usual request sizes: leases land where the owner's next jobs still find room."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec, WorkloadState
from backfill.engines.sim import ManualClock, SimEngine
from backfill.placement.openb import MILLI
from backfill.placement.pool import PoolPlacer, mix_pods

START = 1_767_225_600.0
POOL = "lab/L40S"


def placer(policy: str, idle: dict[str, int], mix: tuple[int, ...] = (1, 2, 4)) -> PoolPlacer:
    """Nodes of 4 GPUs with the given number of idle GPUs (the first ones held)."""
    p = PoolPlacer(list(idle), [4] * len(idle), mix=mix, policy=policy)
    for name, free in idle.items():
        p.update(name, [i >= 4 - free for i in range(4)])
    return p


def test_best_fit_breaks_the_owners_pair_where_backfill_keeps_it() -> None:
    # Owner's jobs are 2 GPUs. Node a has 2 idle, node b 3. One GPU to place:
    # best fit takes a (leaves 1: no pair anywhere but b's 3 → one pair);
    # by fragmentation against the owner's mix it takes b (a keeps its pair, b keeps one).
    idle = {"a": 2, "b": 3}
    assert placer("bestfit", idle, mix=(2,)).choose(1) == ("a", [2])
    assert placer("backfill", idle, mix=(2,)).choose(1) == ("b", [1])
    assert placer("fgd", idle, mix=(2,)).choose(1) == ("b", [1])


def test_whole_free_node_is_kept_for_a_whole_node_mix() -> None:
    # Owner's jobs take whole 4-GPU nodes: a 2-GPU request goes on the node that is already broken.
    idle = {"a": 4, "b": 3, "c": 4}
    assert placer("backfill", idle, mix=(4,)).choose(2) == ("b", [1, 2])


def test_no_fit_and_updates() -> None:
    p = placer("backfill", {"a": 1, "b": 0})
    assert p.choose(2) is None
    assert p.choose(1) == ("a", [3])
    p.update("b", [True, True, False, False])
    assert p.choose(2) == ("b", [0, 1])
    with pytest.raises(ValueError, match="4 GPUs"):
        p.update("b", [True])
    with pytest.raises(ValueError, match="unknown placement policy 'gpuclustering'"):
        PoolPlacer(["a"], [4], policy="gpuclustering")


def test_mix_counts_requests_larger_than_a_node_as_whole_nodes() -> None:
    pods = mix_pods((1, 8, 16), node_gpus=8)
    assert pods.num_gpu.tolist() == [1, 8, 8, 8]
    assert set(pods.gpu_milli.tolist()) == {MILLI}
    with pytest.raises(ValueError, match="at least 1 GPU"):
        mix_pods((0,), node_gpus=8)


def _engine(placement: str) -> SimEngine:
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    fleet = Fleet(name="lab", pools=(Pool("lab", "L40S", (Node("a", 4), Node("b", 4)), prices),))
    return SimEngine(fleet, ManualClock(START), placement=placement)


def _spec(workload: str, tier: Tier, gpus: int) -> WorkloadSpec:
    return WorkloadSpec(id=workload, tier=tier, pool=POOL, gpus=gpus, owner="lab")


@pytest.mark.parametrize(
    ("placement", "spot_node", "spot_noticed"),
    [("backfill", "b", False), ("fgd", "b", False), ("bestfit", "a", True)],
)
def test_spot_lease_leaves_room_for_the_owners_next_jobs(
    placement: str, spot_node: str, spot_noticed: bool
) -> None:
    sim = _engine(placement)
    # The owner's work leaves node a with 2 idle GPUs and node b with 3.
    for workload, gpus in (("j1", 2), ("j2", 2), ("j3", 1)):
        sim.submit(_spec(workload, Tier.INTERNAL, gpus))
    assert {n for n in sim.workload("j1").allocation} == {"a"}
    assert {n for n in sim.workload("j3").allocation} == {"b"}
    sim.stop("j1")
    spot = sim.submit(_spec("spot", Tier.SPOT, 1))
    assert list(spot.allocation) == [spot_node]
    # Then two of the owner's 2-GPU jobs: with the spot lease on b, both fit on idle GPUs.
    for workload in ("j4", "j5"):
        assert sim.submit(_spec(workload, Tier.INTERNAL, 2)).state is not WorkloadState.QUEUED
    assert (sim.workload("spot").state is WorkloadState.NOTICED) is spot_noticed
