"""The FGD paper's experiment (``../shared/traces/FGD_PROTOCOL.md``), as its simulator runs it.

Pods arrive one at a time in a seeded random order, inflated (or trimmed) until their GPU demand
is 130 % of the cluster's GPUs; each is placed at once or dropped for good. After each pod,
``arrived`` and ``used`` are the GPU milli asked for so far and placed so far. The curve's point
x (0…130) is the mean allocation % over the pods whose arrived % rounds to x; the headline is the
point at 100.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from backfill.placement.cluster import Cluster, Pod
from backfill.placement.openb import Nodes, Pods

TUNE = 1.3
CURVE_POINTS = 131  # 0 … 130 %

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Arrival:
    """One seed's setup: the pods' arrival order, the nodes' tie-break ranks, and the RNG."""

    order: list[int]
    """Indexes of the pods (sorted by name) in arrival order, copies included."""
    rank: IntArray
    """Per node (in the nodes' order): its rank; among equal scores the smallest rank wins."""
    rng: random.Random
    """The run's one random stream, as left after the set-up (Random policy draws from it)."""


def arrive(
    pods: Pods, node_count: int, cluster_milli: int, seed: int, tune: float = TUNE
) -> Arrival:
    """The simulator's set-up, draw for draw in its order (with Python's RNG, not Go's).

    Shuffle the name-sorted pods. If their demand T is below target = tune × cluster milli,
    draw pods from the name-sorted trace and append copies until a draw's *per-GPU* milli would
    pass the target (that draw is discarded); if above, remove random pods until T ≤ target.
    Then draw the nodes' ranks (a permutation), used to break ties.
    """
    rng = random.Random(seed)
    order = list(range(len(pods)))
    rng.shuffle(order)
    demand = pods.demand
    total = int(demand.sum())
    target = tune * cluster_milli
    if total < target:
        while True:
            pick = rng.randrange(len(pods))
            if total + int(pods.gpu_milli[pick]) > target:
                break
            order.append(pick)
            total += int(demand[pick])
    else:
        while total > target:
            removed = order.pop(rng.randrange(len(order)))
            total -= int(demand[removed])
    permutation = list(range(node_count))
    rng.shuffle(permutation)
    return Arrival(order=order, rank=np.array(permutation, dtype=np.int64), rng=rng)


def arrival_order(pods: Pods, cluster_milli: int, seed: int, tune: float = TUNE) -> list[int]:
    """Just the order of :func:`arrive` (for counting and tests)."""
    return arrive(pods, 0, cluster_milli, seed, tune).order


Choice = tuple[int, list[int]] | None
Policy = Callable[[Cluster, Pod, npt.NDArray[np.bool_]], Choice]
"""Given the cluster, a pod and the fitting nodes: the chosen node and its GPUs (None: drop)."""

PolicyFactory = Callable[[Pods, Nodes, Arrival], Policy]
"""A policy for one run: it may look at the whole (untuned) trace, the nodes and the set-up."""


@dataclass
class RunResult:
    policy: str
    seed: int
    arrived: IntArray
    used: IntArray
    cluster_milli: int
    placed: int = 0
    dropped: int = 0
    curve: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.curve = allocation_curve(self.arrived, self.used, self.cluster_milli)

    @property
    def alloc_at_100(self) -> float:
        """The curve at 100 % arrived; on a trace too coarse to have pods there, the allocation
        after the last pod by which at most 100 % had arrived."""
        if not np.isnan(self.curve[100]):
            return float(self.curve[100])
        reached = np.flatnonzero(self.arrived <= self.cluster_milli)
        if len(reached) == 0:
            return 0.0
        return float(100 * self.used[reached[-1]] / self.cluster_milli)


def allocation_curve(arrived: IntArray, used: IntArray, cluster_milli: int) -> FloatArray:
    """Mean allocation % over the pods whose arrived % rounds to each of 0 … 130."""
    unit = cluster_milli / 100
    arrived_pct = np.rint(arrived / unit).astype(np.int64)
    alloc_pct = used / unit
    curve = np.full(CURVE_POINTS, np.nan)
    for x in range(CURVE_POINTS):
        mask = arrived_pct == x
        if mask.any():
            curve[x] = float(alloc_pct[mask].mean())
    return curve


def run(
    name: str,
    factory: PolicyFactory,
    nodes: Nodes,
    pods: Pods,
    seed: int,
    *,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """One seed of the protocol with one policy."""
    cluster = Cluster(nodes)
    arrival = arrive(pods, len(nodes), nodes.total_gpu_milli, seed)
    choose = factory(pods, nodes, arrival)
    order = arrival.order
    arrived = np.zeros(len(order), dtype=np.int64)
    used = np.zeros(len(order), dtype=np.int64)
    total_arrived = total_used = placed = 0
    for step, index in enumerate(order):
        pod = Pod.of(pods, index, nodes.models)
        total_arrived += pod.demand
        fitting = cluster.fits(pod)
        choice = choose(cluster, pod, fitting) if fitting.any() else None
        if choice is not None:
            node, gpus = choice
            cluster.place(node, pod, gpus)
            total_used += pod.demand
            placed += 1
        arrived[step] = total_arrived
        used[step] = total_used
        if progress is not None and step % 256 == 255:
            progress(256)
    if progress is not None:
        progress(len(order) % 256)
    return RunResult(
        policy=name,
        seed=seed,
        arrived=arrived,
        used=used,
        cluster_milli=nodes.total_gpu_milli,
        placed=placed,
        dropped=len(order) - placed,
    )
