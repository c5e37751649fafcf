"""A pool's idle GPUs seen by a placement policy: how the sim engine places every workload.

The engine works in whole GPUs on one pool (one accelerator) at a time. It keeps one
``PoolPlacer`` per pool, tells it which GPUs are idle after every change, and asks it where a
request of up to one node's GPUs should go. The policy is the one benchmarked on the openb trace
(``backfill`` by default: FGD's score, then its tie-breaks), judged against a *typical mix*: the
request sizes the pool's owner usually submits. So a lease lands where it leaves the owner's next
jobs the most room — on GPUs that are already fragments for the owner's shapes, not on the whole
free node the owner's next 8-GPU job needs.

Requests larger than a node, and preemption, are the domain's rules
(``backfill.domain.placement``): whole idle nodes, then the fewest, least-advanced victims.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from backfill.placement.cluster import Cluster, Pod
from backfill.placement.openb import MILLI, Nodes, Pods
from backfill.placement.policies import POLICIES
from backfill.placement.protocol import Arrival, Policy

ENGINE_POLICIES = ("backfill", "fgd", "bestfit", "random")
"""The policies that need nothing but free GPUs (GpuClustering also counts pod kinds, and
DotProd/GpuPacking are kept for the benchmark)."""

DEFAULT_MIX = (1, 2, 4, 8)
"""Request sizes assumed when the owner's are not known: one of each."""


def mix_pods(sizes: Sequence[int], node_gpus: int) -> Pods:
    """The typical mix as pods: a request larger than a node counts as that many whole nodes."""
    counts: list[int] = []
    for size in sizes:
        if size < 1:
            raise ValueError(f"a request size must be at least 1 GPU, not {size}")
        if size <= node_gpus:
            counts.append(size)
        else:
            counts.extend([node_gpus] * -(-size // node_gpus))
    count = len(counts)
    zeros = np.zeros(count, dtype=np.int64)
    return Pods(
        names=tuple(f"mix-{i}" for i in range(count)),
        cpu=zeros,
        memory=zeros.copy(),
        num_gpu=np.array(counts, dtype=np.int64),
        gpu_milli=np.full(count, MILLI, dtype=np.int64),
        spec=(frozenset(),) * count,
        spec_text=("",) * count,
    )


class PoolPlacer:
    """One pool's GPUs as a ``Cluster`` (idle: 1,000 milli; held or claimed: 0) and a policy."""

    def __init__(
        self,
        names: Sequence[str],
        gpus: Sequence[int],
        *,
        mix: Sequence[int] = DEFAULT_MIX,
        policy: str = "backfill",
        seed: int = 0,
    ) -> None:
        if policy not in ENGINE_POLICIES:
            raise ValueError(
                f"unknown placement policy {policy!r}: choose one of {', '.join(ENGINE_POLICIES)}"
            )
        count = len(names)
        self.nodes = Nodes(
            names=tuple(names),
            cpu=np.zeros(count, dtype=np.int64),
            memory=np.zeros(count, dtype=np.int64),
            gpus=np.array(gpus, dtype=np.int64),
            models=("gpu",),
            model=np.zeros(count, dtype=np.int64),
        )
        self.cluster = Cluster(self.nodes)
        self._index = {name: i for i, name in enumerate(names)}
        # Ties go to the fleet file's node order: deterministic, and what an operator expects.
        arrival = Arrival(order=[], rank=np.arange(count, dtype=np.int64), rng=random.Random(seed))
        pods = mix_pods(mix, int(self.nodes.gpus.max()))
        self._choose: Policy = POLICIES[policy](pods, self.nodes, arrival)

    def update(self, node: str, idle: Sequence[bool]) -> None:
        """Node ``node``'s GPUs now idle (True) or not, in index order."""
        i = self._index[node]
        count = int(self.nodes.gpus[i])
        if len(idle) != count:
            raise ValueError(f"node {node!r} has {count} GPUs, not {len(idle)}")
        free = np.array([MILLI if free else 0 for free in idle], dtype=np.int64)
        if not np.array_equal(free, self.cluster.gpu[i, :count]):
            self.cluster.set_gpus(i, free)

    def choose(self, gpus: int) -> tuple[str, list[int]] | None:
        """The node (and its GPUs) for a request of ``gpus`` idle GPUs on one node, if any."""
        pod = Pod(cpu=0, memory=0, num_gpu=gpus, gpu_milli=MILLI, allowed=None)
        fitting = self.cluster.fits(pod)
        if not fitting.any():
            return None
        choice = self._choose(self.cluster, pod, fitting)
        if choice is None:
            return None
        return self.nodes.names[choice[0]], choice[1]
