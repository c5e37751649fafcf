"""The sim engine places every workload with the benchmarked placement policy, judged against the
owner's usual request sizes: leases land where the owner's next jobs still find room."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec, WorkloadState
from backfill.engines.sim import ManualClock, SimEngine
from backfill.placement.openb import MILLI
from backfill.placement.pool import TAGS, PoolPlacer, mix_pods

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


def _random_flags(rng: random.Random, count: int) -> list[bool]:
    """Mostly the shapes a pool passes through: all idle, all held, or a random mix."""
    roll = rng.random()
    if roll < 0.25:
        return [True] * count
    if roll < 0.4:
        return [False] * count
    return [rng.random() < 0.5 for _ in range(count)]


def _replay(seed: int, policy: str) -> int:
    """One seeded sequence of updates and requests on a fast and a scanning placer alike;
    every choice (and the idle-node count) must agree. Returns how many choices were made."""
    rng = random.Random(seed)
    sizes = rng.choice([(8, 4), (8, 4), (4, 8, 2), (8,), (4,), (6, 8, 1)])
    count = rng.randint(20, 60)
    names = [f"n{i:02d}" for i in range(count)]
    gpus = [rng.choice(sizes) for _ in names]
    mix = tuple(rng.choice((1, 1, 2, 3, 4, 8, 16)) for _ in range(rng.randint(1, 5)))
    fast = PoolPlacer(names, gpus, mix=mix, policy=policy)
    slow = PoolPlacer(names, gpus, mix=mix, policy=policy, fast=False)
    idle = {name: [True] * g for name, g in zip(names, gpus, strict=True)}
    tags = dict.fromkeys(names, 0)
    largest = max(gpus)
    chosen = 0
    for _ in range(300):
        roll = rng.random()
        if roll < 0.3:  # some node changes (or is told its state again), maybe its tags too
            name = rng.choice(names)
            idle[name] = _random_flags(rng, len(idle[name]))
            if rng.random() < 0.3:
                tags[name] = rng.randrange(TAGS)
            fast.update(name, idle[name], tags=tags[name])
            slow.update(name, idle[name], tags=tags[name])
        elif roll < 0.4:  # work ends on a node
            name = rng.choice(names)
            idle[name] = [True] * len(idle[name])
            fast.update(name, idle[name])
            slow.update(name, idle[name])
        elif roll < 0.5:  # a multi-node request: the first whole idle nodes, in node order
            count, avoid = rng.randint(1, 6), rng.choice((0, 0, 1, 2, 4, 6))
            whole = [
                name
                for name, g in zip(names, gpus, strict=True)
                if g == largest and all(idle[name]) and not tags[name] & avoid
            ]
            expected = whole[:count] if len(whole) >= count else None
            assert fast.whole_nodes(count, avoid=avoid) == expected, (seed, count, avoid)
            assert fast.whole_nodes(count, avoid=avoid) == expected  # nothing was taken
        else:  # a request: place it as the engine does
            size = rng.randint(1, 8)
            keep = rng.choice((0, 0, 0, 1, 2, 5, 20))
            avoid = rng.choice((0, 0, 0, 1, 2, 6))
            got = fast.choose(size, keep_idle=keep, avoid=avoid)
            assert got == slow.choose(size, keep_idle=keep, avoid=avoid), (seed, size, keep)
            assert got is None or not tags[got[0]] & avoid
            if got is not None:
                chosen += 1
                name, taken = got
                assert len(taken) == size and all(idle[name][g] for g in taken)
                # A fully idle node only while more than ``keep`` of them are left.
                assert not all(idle[name]) or sum(map(all, idle.values())) > keep
                for g in taken:
                    idle[name][g] = False
                fast.update(name, idle[name])
                slow.update(name, idle[name])
        fully = sum(all(flags) for flags in idle.values())
        assert fast.idle_nodes == slow.idle_nodes == fully
    return chosen


@pytest.mark.parametrize("policy", ["backfill", "fgd", "bestfit"])
def test_fast_path_chooses_what_the_scan_chooses(policy: str) -> None:
    chosen = sum(_replay(seed, policy) for seed in range(40))
    assert chosen > 3000  # the sequences do place work (and leave some requests unplaced)


def test_churn_keeps_the_lowest_node_of_each_state() -> None:
    # Nodes leaving and re-entering a state leave stale entries behind: they must be dropped
    # (bounded memory) without losing the nodes still in the state.
    names = [f"n{i}" for i in range(6)]
    fast = PoolPlacer(names, [4] * 6, mix=(4,))
    slow = PoolPlacer(names, [4] * 6, mix=(4,), fast=False)
    for p in (fast, slow):
        p.update("n1", [False, False, True, True])  # stays with 2 idle throughout
    for step in range(500):
        node = names[2 + step % 4]
        flags = [False, True, True, step % 3 == 0] if step % 2 else [False] * 4
        for p in (fast, slow):
            p.update(node, flags)
        assert fast.choose(2) == slow.choose(2)
        assert fast.choose(2, keep_idle=1) == slow.choose(2, keep_idle=1) == ("n1", [2, 3])
    assert max(len(heap) for heap in fast._heaps) <= 2 * len(names) + 32


def test_cluster_is_current_when_read() -> None:
    p = PoolPlacer(["a", "b"], [4, 2])
    p.update("a", [True, False, True, False])
    p.update("b", [False, False])
    p.update("b", [True, False])
    assert p.cluster.gpu.tolist() == [[MILLI, 0, MILLI, 0], [MILLI, 0, -1, -1]]
    assert p.cluster.fully_free.tolist() == [2, 1]
    p.update("a", [True] * 4)
    assert p.cluster.fully_free.tolist() == [4, 1]


def test_idle_nodes_counts_fully_idle_nodes() -> None:
    p = PoolPlacer(["a", "b", "c"], [4, 4, 2])
    assert p.idle_nodes == 3
    p.update("a", [True, True, True, False])
    assert p.idle_nodes == 2
    p.update("a", [False, True, True, True])  # another GPU held: still not idle
    assert p.idle_nodes == 2
    p.update("c", [False, False])
    p.update("c", [False, False])  # told again: no change
    assert p.idle_nodes == 1
    p.update("a", [True] * 4)
    p.update("c", [True, True])
    assert p.idle_nodes == 3
    with pytest.raises(AttributeError):
        p.idle_nodes = 0  # type: ignore[misc]


@pytest.mark.parametrize("policy", ["backfill", "fgd", "bestfit", "random"])
def test_keep_idle_spares_whole_idle_nodes(policy: str) -> None:
    # a: 1 idle GPU, b: 3 idle, c and d fully idle.
    p = placer(policy, {"a": 1, "b": 3, "c": 4, "d": 4}, mix=(4,))
    assert p.idle_nodes == 2
    # Two idle nodes, keep two: only the partly used nodes may take work.
    for _ in range(20):
        got = p.choose(2, keep_idle=2)
        assert got is not None and got[0] == "b"
    assert p.choose(1, keep_idle=2) in [("a", [3]), ("b", [1])]
    assert p.choose(4, keep_idle=2) is None  # only an idle node could hold it
    assert p.choose(4, keep_idle=5) is None
    # Keep one: one of the two idle nodes may go.
    got = p.choose(4, keep_idle=1)
    assert got is not None and got[0] in {"c", "d"} and got[1] == [0, 1, 2, 3]
    p.update(got[0], [False] * 4)
    assert p.idle_nodes == 1
    assert p.choose(4, keep_idle=1) is None
    assert p.choose(4) == (("c", [0, 1, 2, 3]) if got[0] == "d" else ("d", [0, 1, 2, 3]))
    # Partly used nodes still take work when no idle node may.
    assert p.choose(3, keep_idle=1) == ("b", [1, 2, 3])


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
