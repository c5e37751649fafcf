"""Placement policies, scored over all fitting nodes at once.

A policy turns (cluster, pod, fitting nodes) into a node and the GPUs it takes there, or None.
Whole-GPU pods take the lowest-index fully free GPUs of the chosen node; a sharing pod takes the
GPU its policy prefers (the baselines: the fitting GPU with the least free milli).
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from backfill.placement.cluster import Cluster, Pod
from backfill.placement.openb import Pods
from backfill.placement.protocol import Policy

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def gpus_for(cluster: Cluster, node: int, pod: Pod) -> list[int]:
    if pod.num_gpu == 0:
        return []
    if pod.sharing:
        return [cluster.tightest_gpu(node, pod.gpu_milli)]
    return cluster.whole_gpus(node, pod.num_gpu)


def random_policy(seed: int, pods: Pods, cluster_nodes: int) -> Policy:
    """Any fitting node, uniformly at random."""
    rng = random.Random(seed)

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> tuple[int, list[int]]:
        candidates = np.flatnonzero(fitting)
        node = int(candidates[rng.randrange(len(candidates))])
        return node, gpus_for(cluster, node, pod)

    return choose


PolicyFactory = Callable[[int, Pods, int], Policy]
"""(seed, the trace's pods, number of nodes) → a policy for one run."""

POLICIES: dict[str, PolicyFactory] = {
    "random": random_policy,
}
