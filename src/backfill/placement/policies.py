"""The published placement policies, re-implemented from the FGD simulator's definitions.

Each is scored over all fitting nodes at once and gives an integer score in 0…100 (as the
simulator truncates before comparing); among equal scores the node with the smallest rank wins
(the simulator's shuffled node names). Whole-GPU pods take the lowest-index fully free GPUs; a
sharing pod takes the fitting GPU with the least free milli, except under Random (a random fitting
GPU) and FGD (the GPU that grows fragmentation least). Rule by rule, with the simulator's code:
``bench/notes/fgd_simulator_spec.md``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from backfill.placement.candidates import Candidates
from backfill.placement.cluster import ABSENT, Cluster, Pod
from backfill.placement.fgd import backfill_policy, best_node, fgd_policy
from backfill.placement.openb import MILLI, Nodes, Pods
from backfill.placement.protocol import Arrival, Choice, Policy, PolicyFactory

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
ScoreFunction = Callable[[Cluster, Pod, IntArray], IntArray]

MAX_SPEC_CPU = 128_000.0
MAX_SPEC_GPU = 8_000.0


def gpus_for(cluster: Cluster, node: int, pod: Pod) -> list[int]:
    """Best fit: lowest-index fully free GPUs, or the tightest fitting GPU for a sharing pod."""
    if pod.num_gpu == 0:
        return []
    if pod.sharing:
        return [cluster.tightest_gpu(node, pod.gpu_milli)]
    return cluster.whole_gpus(node, pod.num_gpu)


def scored(score: ScoreFunction) -> PolicyFactory:
    """A policy from a vectorized score over the fitting nodes, with best-fit GPU choice."""

    def factory(pods: Pods, nodes: Nodes, arrival: Arrival) -> Policy:
        reachable = Candidates(nodes, arrival.rank)

        def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
            candidates = reachable.of(cluster, fitting)
            node = best_node(candidates, score(cluster, pod, candidates), arrival.rank)
            return node, gpus_for(cluster, node, pod)

        return choose

    return factory


def random_policy(pods: Pods, nodes: Nodes, arrival: Arrival) -> Policy:
    """A uniformly random fitting node, and for a sharing pod a uniformly random fitting GPU."""
    rng = arrival.rng

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
        candidates = np.flatnonzero(fitting)
        node = (
            int(candidates[rng.randrange(len(candidates))])
            if len(candidates) > 1
            else int(candidates[0])
        )
        if pod.sharing:
            fits = np.flatnonzero(cluster.gpu[node] >= pod.gpu_milli)
            return node, [int(fits[rng.randrange(len(fits))])]
        return node, gpus_for(cluster, node, pod)

    return choose


def best_fit_score(cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
    """Least CPU and GPU left after placing: 100·(1 − ½·cpu_after/128000 − ½·gpu_after/8000)."""
    cpu_after = (cluster.cpu[nodes] - pod.cpu) / MAX_SPEC_CPU * 0.5
    gpu_after = (cluster.free_gpu_milli(nodes) - pod.demand) / MAX_SPEC_GPU * 0.5
    return np.trunc((1.0 - (cpu_after + gpu_after)) * 100).astype(np.int64)


def dot_product_score(cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
    """Least aligned free resources: 100·(1 − (free·request)/2), both scaled by 128000 / 8000."""
    dot = (cluster.cpu[nodes] / MAX_SPEC_CPU) * (pod.cpu / MAX_SPEC_CPU) + (
        cluster.free_gpu_milli(nodes) / MAX_SPEC_GPU
    ) * (pod.demand / MAX_SPEC_GPU)
    return np.trunc(100 * (1.0 - dot / 2)).astype(np.int64)


def gpu_packing_score(cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
    """Partly used GPUs first (100 − ⌊free/100⌋ of the GPU used, at least 50), then nodes already
    in use (50 − fully free GPUs taken, at least 33), then idle nodes (33 − their GPUs)."""
    if pod.gpu_milli <= 0:
        return np.zeros(len(nodes), dtype=np.int64)
    gpu = cluster.gpu[nodes]
    present = gpu != ABSENT
    fully_free = (gpu == MILLI).sum(axis=1)
    gpu_count = present.sum(axis=1)
    idle = fully_free == gpu_count
    scores = np.maximum(33 - fully_free, fully_free)  # the simulator's floor, as it is
    if pod.sharing:
        tight = np.where(gpu >= pod.gpu_milli, gpu, MILLI + 1).min(axis=1)
        on_shared = tight < MILLI
        used = np.where(on_shared, np.maximum(100 - (tight * 100 // MILLI) // 10, 50), 49)
    else:
        used = np.full(len(nodes), max(50 - pod.num_gpu, 33), dtype=np.int64)
    return np.where(idle, scores, used).astype(np.int64)


def gpu_clustering_score(cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
    """Nodes that hold only pods of this kind (sharing, or k whole GPUs) 75, mixed with this kind
    50, no GPU pods 25, other kinds 0; plus ⌊25·(8000 − free GPU milli)/8000⌋."""
    if pod.num_gpu == 0:
        return np.zeros(len(nodes), dtype=np.int64)
    spare = 25 * (8000 - cluster.free_gpu_milli(nodes))
    base = np.sign(spare) * (np.abs(spare) // 8000)  # Go's int64 division truncates toward 0
    kinds = cluster.kinds[nodes]
    present = (kinds > 0).sum(axis=1)
    same = kinds[:, pod.kind] > 0
    tier = np.where(same, np.where(present == 1, 75, 50), np.where(present == 0, 25, 0))
    scores: IntArray = (base + tier).astype(np.int64)
    return scores


POLICIES: dict[str, PolicyFactory] = {
    "random": random_policy,
    "dotprod": scored(dot_product_score),
    "gpuclustering": scored(gpu_clustering_score),
    "gpupacking": scored(gpu_packing_score),
    "bestfit": scored(best_fit_score),
    "fgd": fgd_policy,
    "backfill": backfill_policy,
}
"""Name → factory: the published baselines in their table's order, then Backfill's own."""
