"""The published placement policies on small hand-made clusters, scores worked out by hand.

Each rule is the FGD simulator's (``bench/notes/fgd_simulator_spec.md``): fixed normalisers
128000 CPU milli / 8000 GPU milli, integer truncation, ties to the smallest rank.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from backfill.placement import fgd
from backfill.placement.cluster import Cluster, Pod
from backfill.placement.fgd import (
    FgdScorer,
    TypicalPods,
    deficit_growth,
    fragmentation,
    model_bound_share,
    typical_pods,
)
from backfill.placement.openb import MILLI, Nodes, Pods, load_pods
from backfill.placement.policies import (
    POLICIES,
    best_fit_score,
    dot_product_score,
    gpu_clustering_score,
    gpu_packing_score,
)
from backfill.placement.protocol import Arrival, PolicyFactory
from tests.unit.test_placement_protocol import nodes, pods

M = 1 << 30  # memory plays no part in any score
TRACE = pods(*[(1000, 0, 1, 500, "")] * 3)  # for FGD / Backfill where the trace does not matter


def p(cpu: int = 0, num: int = 0, milli: int = 0) -> Pod:
    return Pod(cpu=cpu, memory=0, num_gpu=num, gpu_milli=milli, allowed=None)


def build(spec: Nodes, *placed: tuple[int, Pod, list[int]]) -> Cluster:
    cluster = Cluster(spec)
    for node, pod, gpus in placed:
        cluster.place(node, pod, gpus)
    return cluster


def choose(
    name: str, cluster: Cluster, pod: Pod, rank: list[int], trace: Pods = TRACE, seed: int = 0
) -> tuple[int, list[int]] | None:
    factory: PolicyFactory = POLICIES[name]
    arrival = Arrival(order=[], rank=np.array(rank, dtype=np.int64), rng=random.Random(seed))
    return factory(trace, cluster.nodes, arrival)(cluster, pod, cluster.fits(pod))


def at(*indexes: int) -> np.ndarray:
    return np.array(indexes, dtype=np.int64)


# n0: 48000 CPU, 2000 GPU milli free [0,0,1000,1000]; n1: 24000, 1500 [500,1000];
# n2: 16000, 4000 (4 of 8 GPUs taken); n3: 16000 CPU and no GPUs.
MIXED = nodes((64000, M, 4, "A"), (32000, M, 2, "A"), (96000, M, 8, "A"), (16000, M, 0, ""))
MIXED_PLACED = ((0, p(16000, 2, 1000), [0, 1]), (1, p(8000, 1, 500), [0]))
MIXED_PLACED += ((2, p(80000, 4, 1000), [0, 1, 2, 3]),)


def test_best_fit_takes_the_node_left_with_least_cpu_and_gpu() -> None:
    cluster = build(MIXED, *MIXED_PLACED)
    gpu_pod = p(8000, 1, 1000)
    # n0: 100·(1 − (0.5·(48000−8000)/128000 + 0.5·(2000−1000)/8000)) = 100·(1−0.21875) = 78.125 → 78
    # n1: 100·(1 − (0.5·(24000−8000)/128000 + 0.5·(1500−1000)/8000)) = 90.625 → 90 (not 91)
    # n2: 100·(1 − (0.5·(16000−8000)/128000 + 0.5·(4000−1000)/8000)) = 78.125 → 78
    assert best_fit_score(cluster, gpu_pod, at(0, 1, 2)).tolist() == [78, 90, 78]
    assert choose("bestfit", cluster, gpu_pod, [0, 1, 2, 3]) == (1, [1])
    cpu_pod = p(4000)
    # n0: 100·(1 − (0.5·44000/128000 + 0.5·2000/8000)) = 100·(1−0.296875) = 70.3125 → 70
    # n1: 100·(1 − (0.5·20000/128000 + 0.5·1500/8000)) = 100·(1−0.171875) = 82.8125 → 82
    # n2: 100·(1 − (0.5·12000/128000 + 0.5·4000/8000)) = 70.3125 → 70
    # n3: 100·(1 − (0.5·12000/128000 + 0)) = 95.3125 → 95: free GPUs count against a node
    assert best_fit_score(cluster, cpu_pod, at(0, 1, 2, 3)).tolist() == [70, 82, 70, 95]
    assert choose("bestfit", cluster, cpu_pod, [0, 1, 2, 3]) == (3, [])


def test_dot_product_uses_free_resources_before_placement() -> None:
    cluster = build(MIXED, *MIXED_PLACED)
    gpu_pod = p(8000, 1, 1000)  # request [8000/128000, 1000/8000] = [0.0625, 0.125]
    # n0: dot = 0.375·0.0625 + 0.25·0.125 = 0.0546875; 100·(1 − dot/2) = 97.265625 → 97
    # n1: dot = 0.1875·0.0625 + 0.1875·0.125 = 0.03515625 → 98.2421875 → 98
    # n2: dot = 0.125·0.0625 + 0.5·0.125 = 0.0703125 → 96.484375 → 96
    # (with free *after* placing, n1 would score 100·(1 − 0.015625/2) = 99.2 → 99)
    assert dot_product_score(cluster, gpu_pod, at(0, 1, 2)).tolist() == [97, 98, 96]
    assert choose("dotprod", cluster, gpu_pod, [0, 1, 2, 3]) == (1, [1])
    cpu_pod = p(16000)  # request [0.125, 0]: the GPU term vanishes
    # n0: 100·(1 − 0.375·0.125/2) = 97.65625 → 97; n1: 100·(1 − 0.1875·0.125/2) = 98.828 → 98
    # n2, n3 (16000 CPU each, n2 with 4000 GPU milli free): 100·(1 − 0.125·0.125/2) = 99.21875 → 99
    assert dot_product_score(cluster, cpu_pod, at(0, 1, 2, 3)).tolist() == [97, 98, 99, 99]
    assert choose("dotprod", cluster, cpu_pod, [0, 1, 2, 3]) == (2, [])
    assert choose("dotprod", cluster, cpu_pod, [3, 2, 1, 0]) == (3, [])


# n0 [750,1000,1000,1000]; n1 [200,1000]; n2 idle 2 GPUs (a CPU-only pod on it);
# n3 idle 1 GPU; n4 idle 16 GPUs.
PACKING = nodes(*[(64000, M, g, "A") for g in (4, 2, 2, 1, 16)])
PACKING_PLACED = ((0, p(1000, 1, 250), [0]), (1, p(1000, 1, 800), [0]), (2, p(4000), []))


def test_gpu_packing_tiers() -> None:
    cluster = build(PACKING, *PACKING_PLACED)
    share = p(1000, 1, 500)
    # n0: tightest fitting GPU has 750 free → 100 − ⌊750/100⌋ = 93 (floor, not 92)
    # n1: GPU0 (200) too small, the pod needs a fully free GPU on a used node → 50 − 1 = 49
    # idle nodes: 33 − n, i.e. max(33−2, 2) = 31, max(33−1, 1) = 32, max(33−16, 16) = 17
    assert gpu_packing_score(cluster, share, at(0, 1, 2, 3, 4)).tolist() == [93, 49, 31, 32, 17]
    assert choose("gpupacking", cluster, share, [4, 3, 2, 1, 0]) == (0, [0])
    small = p(1000, 1, 100)  # n1's GPU0 now fits: 100 − ⌊200/100⌋ = 98
    assert gpu_packing_score(cluster, small, at(0, 1, 2, 3, 4)).tolist() == [93, 98, 31, 32, 17]
    assert choose("gpupacking", cluster, small, [0, 1, 2, 3, 4]) == (1, [0])
    two = p(1000, 2, 1000)  # fits n0 (used: 50 − 2 = 48), n2 (idle: 31), n4 (idle: 17)
    assert cluster.fits(two).tolist() == [True, False, True, False, True]
    assert gpu_packing_score(cluster, two, at(0, 2, 4)).tolist() == [48, 31, 17]
    assert choose("gpupacking", cluster, two, [4, 3, 2, 1, 0]) == (0, [1, 2])
    cpu_pod = p(1000)  # 0 everywhere: the smallest rank wins
    assert gpu_packing_score(cluster, cpu_pod, at(0, 1, 2, 3, 4)).tolist() == [0] * 5
    assert choose("gpupacking", cluster, cpu_pod, [4, 3, 2, 1, 0]) == (4, [])
    assert choose("gpupacking", cluster, cpu_pod, [1, 0, 2, 3, 4]) == (1, [])


# n0: sharing only (G_left 1700); n1: sharing + 1-GPU (2500); n2: a CPU-only pod (4000);
# n3: 1-GPU only (1000); n4: idle 8 GPUs (8000).
CLUSTERING = nodes(*[(64000, M, g, "A") for g in (2, 4, 4, 2, 8)])
CLUSTERING_PLACED = ((0, p(0, 1, 300), [0]), (1, p(0, 1, 500), [0]), (1, p(0, 1, 1000), [1]))
CLUSTERING_PLACED += ((2, p(4000), []), (3, p(0, 1, 1000), [0]))


def test_gpu_clustering_tiers() -> None:
    cluster = build(CLUSTERING, *CLUSTERING_PLACED)
    # base = ⌊25·(8000 − G_left)/8000⌋: n0 ⌊19.6875⌋ = 19, n1 ⌊17.1875⌋ = 17, n2 ⌊12.5⌋ = 12,
    # n3 ⌊21.875⌋ = 21, n4 0.
    share = p(1000, 1, 200)
    # n0 only sharing 75+19; n1 mixed 50+17; n2 no GPU pods 25+12; n3 other kind 0+21; n4 25+0
    assert gpu_clustering_score(cluster, share, at(0, 1, 2, 3, 4)).tolist() == [94, 67, 37, 21, 25]
    assert choose("gpuclustering", cluster, share, [4, 3, 2, 1, 0]) == (0, [0])
    whole = p(1000, 1, 1000)
    # n0 other kind 0+19; n1 mixed 50+17; n2 25+12; n3 only 1-GPU 75+21; n4 25+0
    assert gpu_clustering_score(cluster, whole, at(0, 1, 2, 3, 4)).tolist() == [19, 67, 37, 96, 25]
    assert choose("gpuclustering", cluster, whole, [0, 1, 2, 3, 4]) == (3, [1])
    cpu_pod = p(1000)
    assert gpu_clustering_score(cluster, cpu_pod, at(0, 1, 2, 3, 4)).tolist() == [0] * 5
    assert choose("gpuclustering", cluster, cpu_pod, [2, 3, 1, 4, 0]) == (4, [])


def test_gpu_clustering_base_truncates_toward_zero_on_a_16_gpu_node() -> None:
    cluster = build(nodes((64000, M, 16, "A")), (0, p(0, 1, 500), [0]))
    # Go: 75 + 25·(8000 − 15500)/8000 = 75 + trunc(−23.4375) = 75 − 23 = 52
    assert gpu_clustering_score(cluster, p(0, 1, 200), at(0)).tolist() == [52]


# n0 [400,1000]; n1 [300,200] (no GPU fits 500); n2 lacks CPU; n3 [1000,700,100,1000]; n4 [1000].
RANDOM = nodes(
    *[(c, M, g, "A") for c, g in ((8000, 2), (8000, 2), (1000, 2), (8000, 4), (8000, 1))]
)
RANDOM_PLACED = ((0, p(0, 1, 600), [0]), (1, p(0, 1, 700), [0]), (1, p(0, 1, 800), [1]))
RANDOM_PLACED += ((3, p(0, 1, 300), [1]), (3, p(0, 1, 900), [2]))


def test_random_picks_only_and_every_fitting_node_and_gpu() -> None:
    cluster = build(RANDOM, *RANDOM_PLACED)
    pod = p(2000, 1, 500)
    fitting = cluster.fits(pod)
    assert fitting.tolist() == [True, False, False, True, True]

    def draws(seed: int) -> list[tuple[int, int]]:
        arrival = Arrival(order=[], rank=at(0, 1, 2, 3, 4), rng=random.Random(seed))
        policy = POLICIES["random"](TRACE, RANDOM, arrival)
        out = []
        for _ in range(300):
            choice = policy(cluster, pod, fitting)
            assert choice is not None
            out.append((choice[0], choice[1][0]))
        return out

    first = draws(0)
    assert first == draws(0) and first != draws(1)  # seeded, deterministic
    assert {node for node, _ in first} == {0, 3, 4}
    assert {gpu for node, gpu in first if node == 0} == {1}
    assert {gpu for node, gpu in first if node == 3} == {0, 1, 3}  # 2 (100 free) never
    assert {gpu for node, gpu in first if node == 4} == {0}
    # One fitting node and a whole-GPU pod: no random draw at all.
    rng = random.Random(0)
    state = rng.getstate()
    policy = POLICIES["random"](TRACE, RANDOM, Arrival(order=[], rank=at(0, 1, 2, 3, 4), rng=rng))
    only = np.array([False, False, False, False, True])
    assert policy(cluster, p(2000, 1, 1000), only) == (4, [0])
    assert rng.getstate() == state


def test_typical_pods_cut_shares_and_order() -> None:
    a, b, c = (1000, 0, 1, 500, ""), (4000, 0, 0, 0, ""), (2000, 0, 1, 1000, "V100")
    d, e = (8000, 0, 2, 1000, ""), (500, 0, 1, 250, "")
    trace = pods(e, *[d] * 2, *[a, b] * 10, *[c] * 7, *[a] * 10)  # 20 a, 10 b, 7 c, 2 d, 1 e
    typical = typical_pods(trace, ("V100", "T4"))
    # 95 % of 40 = 38: cumulative 20, 30, 37, 39 → d crosses the line and is kept; e is not.
    assert typical.cpu.tolist() == [1000, 4000, 2000, 8000]
    assert typical.milli.tolist() == [500, 0, 1000, 1000]
    assert typical.num.tolist() == [1, 0, 1, 2]
    assert typical.share.tolist() == pytest.approx([20 / 39, 10 / 39, 7 / 39, 2 / 39])
    assert float(typical.share.sum()) == pytest.approx(1.0)
    assert typical.allowed.tolist() == [[True, True], [True, True], [True, False], [True, True]]
    # Equal counts: the key descending (cpu first).
    tied = typical_pods(
        pods((1000, 0, 0, 0, ""), (3000, 0, 0, 0, ""), *[(2000, 0, 1, 500, "")] * 2), ("A",)
    )
    assert tied.cpu.tolist() == [2000, 3000, 1000]
    assert tied.share.tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_typical_pods_key_on_the_spec_string(tmp_path: Path) -> None:
    text = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
    text += "p1,1000,100,1,1000,V100M16|V100M32\np2,1000,100,1,1000,V100M16|V100M32|V100M32\n"
    (tmp_path / "pods.csv").write_text(text)
    typical = typical_pods(load_pods(tmp_path / "pods.csv"), ("V100M16", "V100M32"))
    assert typical.share.tolist() == [0.5, 0.5]


def test_fragmentation_by_hand() -> None:
    # Typical pods, shares 4/10, 3/10, 2/10, 1/10 (all 10 pods are within the 95 % cut):
    # m0 CPU-only 2000; m1 (1000 CPU, 500 milli); m2 (4000 CPU, 2 × 1000); m3 (1000, 300, model B)
    trace = pods(
        *[(2000, 0, 0, 0, "")] * 4,
        *[(1000, 0, 1, 500, "")] * 3,
        *[(4000, 0, 2, 1000, "")] * 2,
        (1000, 0, 1, 300, "B"),
    )
    typical = typical_pods(trace, ("A", "B"))
    assert typical.share.tolist() == pytest.approx([0.4, 0.3, 0.2, 0.1])
    cpu = at(3000, 8000, 500)
    gpu = np.array([[1000, 600, 400, 200], [1000, 1000, 300, 0], [1000, 700, -1, -1]])
    # a (model A, G_left 2200): m0 all 0.4·2200 = 880; m1 fits, GPUs < 500: 0.3·(400+200) = 180;
    #   m2 lacks CPU: 0.2·2200 = 440; m3 model not allowed: 0.1·2200 = 220 → 1720
    # b (model B, G_left 2300): m0 0.4·2300 = 920; m1 fits: 0.3·(300+0) = 90;
    #   m2 fits (2 fully free): 0.2·(300+0) = 60; m3 fits, no GPU < 300 with milli: 0 → 1070
    # c (model A, 2 GPUs, G_left 1700, 500 CPU): nothing fits → 1700
    frag = fragmentation(typical, cpu, gpu, at(0, 1, 0))
    assert frag.tolist() == pytest.approx([1720.0, 1070.0, 1700.0])


def test_fgd_places_a_sharing_pod_where_fragmentation_grows_least() -> None:
    # One typical pod: (1000 CPU, 500 milli), share 1. n0 [1000, 600]; n1 [600].
    spec = nodes((64000, M, 2, "A"), (64000, M, 1, "A"))
    cluster = build(spec, (0, p(1000, 1, 400), [1]), (1, p(1000, 1, 400), [0]))
    pod = p(1000, 1, 200)
    # n0 GPU0 → [800, 600]: still no GPU < 500, F 0 → 0: int(100·σ(0)) = 50
    # n0 GPU1 → [1000, 400]: F 0 → 400: int(100·σ(−0.4)) = int(40.13) = 40
    # n1 GPU0 → [400]: the typical pod no longer fits, F 0 → 400: 40
    typical = typical_pods(TRACE, spec.models)
    states = np.array([[1000, 600], [800, 600], [1000, 400], [600, -1], [400, -1]])
    frag = fragmentation(typical, at(*[64000] * 5), states, at(0, 0, 0, 0, 0))
    assert frag.tolist() == [0.0, 0.0, 400.0, 0.0, 400.0]
    assert choose("fgd", cluster, pod, [1, 0]) == (0, [0])  # 50 beats 40 whatever the rank
    assert choose("fgd", cluster, pod, [0, 1]) == (0, [0])
    # BestFit: n0 100·(1 − (0.5·62000/128000 + 0.5·1400/8000)) = 67.03 → 67,
    #          n1 100·(1 − (0.5·62000/128000 + 0.5·400/8000)) = 73.28 → 73
    assert best_fit_score(cluster, pod, at(0, 1)).tolist() == [67, 73]
    assert choose("bestfit", cluster, pod, [0, 1]) == (1, [0])
    assert cluster.tightest_gpu(0, 200) == 1  # best fit on n0 would take GPU1, FGD takes GPU0


def test_backfill_breaks_fgd_ties_by_cpu_deficit_growth() -> None:
    # Typical pods: (1000 CPU, 500 milli) share 0.75, CPU-only 8000 share 0.25.
    trace = pods(*[(1000, 0, 1, 500, "")] * 3, (8000, 0, 0, 0, ""))
    # CPU per GPU milli: 3000 CPU / 1500 GPU milli = 2 (CPU-only pods left out).
    spec = nodes((20000, M, 8, "A"), (20000, M, 1, "A"))
    cluster = build(spec, (1, p(0, 1, 1000), [0]))  # n1: its only GPU taken
    # FGD: the typical GPU pod still fits both nodes afterwards (≥ 1000 CPU left), so ΔF = 0 on
    # both: int(100·σ(0)) = 50 each, and FGD goes by rank.
    assert choose("fgd", cluster, p(4500), [0, 1], trace) == (0, [])
    assert choose("fgd", cluster, p(4500), [1, 0], trace) == (1, [])
    # deficit = max(0, 2·free GPU milli − CPU): n0 max(0, 16000 − 20000) = 0 → max(0, 16000 −
    # 15500) = 500; n1 (no free GPU) stays 0. n1 grows least, whatever its rank.
    assert deficit_growth(trace, spec)(cluster, p(4500), at(0, 1)).tolist() == [500, 0]
    assert choose("backfill", cluster, p(4500), [0, 1], trace) == (1, [])
    assert choose("backfill", cluster, p(4500), [1, 0], trace) == (1, [])


def test_backfill_keeps_fgds_gpu_model_when_typical_pods_are_model_bound() -> None:
    # 2 of 4 typical GPU pods may use only model B: half the mix is model-bound (≥ 5 %).
    trace = pods(*[(1000, 0, 1, 500, "")] * 2, *[(1000, 0, 1, 500, "B")] * 2)
    spec = nodes((20000, M, 8, "A"), (20000, M, 1, "B"))
    cluster = build(spec, (1, p(0, 1, 1000), [0]))  # n1 (model B): its only GPU taken
    assert model_bound_share(typical_pods(trace, spec.models)) == 0.5
    # FGD ties (ΔF = 0 on both) and picks by rank; n1 has the smaller deficit growth, but it is
    # of another model than FGD's choice n0, so Backfill stays on model A: n0.
    assert choose("fgd", cluster, p(4500), [0, 1], trace) == (0, [])
    assert choose("backfill", cluster, p(4500), [0, 1], trace) == (0, [])
    assert choose("backfill", cluster, p(4500), [1, 0], trace) == (1, [])


SCORED = ["dotprod", "gpuclustering", "gpupacking", "bestfit", "fgd", "backfill"]


@pytest.mark.parametrize("name", SCORED)
def test_equal_scores_go_to_the_smallest_rank(name: str) -> None:
    cluster = build(nodes(*[(64000, M, 4, "A")] * 3))
    pod = p(1000, 1, 500)
    assert choose(name, cluster, pod, [2, 0, 1]) == (1, [0])
    assert choose(name, cluster, pod, [1, 2, 0]) == (2, [0])


# One node: GPUs [700, 1000, 400, 1000, 400, 1000].
GPUS = nodes((64000, M, 6, "A"))
GPUS_PLACED = ((0, p(0, 1, 300), [0]), (0, p(0, 1, 600), [2]), (0, p(0, 1, 600), [4]))


@pytest.mark.parametrize("name", [*SCORED, "random"])
def test_whole_gpu_pods_take_the_lowest_index_fully_free_gpus(name: str) -> None:
    cluster = build(GPUS, *GPUS_PLACED)
    assert choose(name, cluster, p(1000, 1, 1000), [0]) == (0, [1])
    assert choose(name, cluster, p(1000, 2, 1000), [0]) == (0, [1, 3])
    assert choose(name, cluster, p(1000, 3, 1000), [0]) == (0, [1, 3, 5])


@pytest.mark.parametrize("name", SCORED[:4])
def test_sharing_pods_take_the_tightest_fitting_gpu(name: str) -> None:
    cluster = build(GPUS, *GPUS_PLACED)
    assert choose(name, cluster, p(1000, 1, 300), [0]) == (0, [2])  # 400 on 2 and 4: lowest
    assert choose(name, cluster, p(1000, 1, 500), [0]) == (0, [0])  # 700
    assert choose(name, cluster, p(1000, 1, 800), [0]) == (0, [1])  # 1000 on 1, 3, 5: lowest


def _reference_score(typical: TypicalPods, cluster: Cluster, node: int, pod: Pod) -> int:
    """FGD's score of one node from its own state alone, GPU by GPU for a sharing pod."""
    cpu, row, model = cluster.cpu[node], cluster.gpu[node], cluster.model[node]

    def frag(c: int, g: np.ndarray) -> float:
        return float(fragmentation(typical, at(c), g[None, :], at(model))[0])

    before = frag(cpu, row)
    trials = []
    if pod.sharing:
        for i in np.flatnonzero(row >= pod.gpu_milli):
            after = row.copy()
            after[i] -= pod.gpu_milli
            trials.append(after)
    else:
        after = row.copy()
        after[cluster.whole_gpus(node, pod.num_gpu)] -= MILLI
        trials.append(after)
    return max(int(100 / (1 + math.exp(-(before - frag(cpu - pod.cpu, t)) / 1000))) for t in trials)


@pytest.mark.parametrize("limit", [fgd.MEMO_LIMIT, 5])
def test_fgd_scores_remembered_per_node_state_equal_each_nodes_own_score(
    limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nodes that share a state share a remembered score; a run through many states must give
    # every node exactly the score its own state gives, whatever was scored before or with it
    # (also when the memo keeps starting afresh).
    monkeypatch.setattr(fgd, "MEMO_LIMIT", limit)
    spec = nodes(*[(32000, M, 4, "A")] * 6, *[(64000, M, 8, "B")] * 4, (16000, M, 2, "A"))
    trace = pods(
        *[(4000, 0, 1, 500, "")] * 5,
        *[(2000, 0, 1, 250, "")] * 3,
        *[(8000, 0, 2, 1000, "")] * 3,
        *[(12000, 0, 1, 1000, "B")] * 2,
        (1000, 0, 0, 0, ""),
    )
    typical = typical_pods(trace, spec.models)
    scorer = FgdScorer(typical, spec)
    cluster = Cluster(spec)
    rng = random.Random(3)
    checked = 0
    for _ in range(120):
        i = rng.randrange(len(trace))
        pod = Pod.of(trace, i, spec.models)
        fitting = np.flatnonzero(cluster.fits(pod))
        if not len(fitting):
            continue
        scores = scorer.scores(cluster, pod, fitting)
        for node, score in zip(fitting.tolist(), scores.tolist(), strict=True):
            assert score == _reference_score(typical, cluster, node, pod)
            checked += 1
        node = int(fitting[rng.randrange(len(fitting))])
        cluster.place(node, pod, scorer.gpus(cluster, pod, node))
    assert checked > 300


def test_deficit_growth_is_exact_in_lowest_terms_and_bounded() -> None:
    # 3 pods of (1000 CPU, 300 milli): 3000 / 900 = 10/3 CPU per GPU milli, in units of 1/3.
    trace = pods(*[(1000, 0, 1, 300, "")] * 3)
    spec = nodes((4000, M, 1, "A"))
    growth = deficit_growth(trace, spec)
    # before max(0, 10·1000 − 3·4000) = 0; a sharing pod: after max(0, 10·700 − 3·3000) = 0;
    # a CPU-only pod of 2000 leaves 2000 CPU for 1000 free milli: max(0, 10000 − 6000) = 4000.
    assert growth(Cluster(spec), p(1000, 1, 300), at(0)).tolist() == [0]
    assert growth(Cluster(spec), p(2000), at(0)).tolist() == [4000]
    with pytest.raises(ValueError, match="too large"):
        deficit_growth(trace, nodes((1 << 50, M, 1, "A")))
