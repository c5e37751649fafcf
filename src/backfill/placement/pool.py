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

Every GPU here is whole (idle or not), and the nodes have no CPU or memory to speak of and one GPU
model, so all a deterministic policy (``backfill``, ``fgd``, ``bestfit``) sees of a node is its
*state*: how many GPUs it has and how many of them are idle. The placer keeps the nodes bucketed
by state (a heap of node indices per state), scores each state once per request size, and takes
the lowest-index node of the best state: the policy's own choice (best score, ties to the node
order) at the cost of a few states per decision, not a scan of every node. ``random`` draws from
every fitting node, so it keeps the scan.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence

import numpy as np

from backfill.placement.cluster import Cluster, IntArray, Pod
from backfill.placement.fgd import FgdScorer, deficit_growth, typical_pods
from backfill.placement.openb import MILLI, Nodes, Pods
from backfill.placement.policies import POLICIES, best_fit_score
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


StateKeys = Callable[[Cluster, Pod, IntArray], IntArray]
"""A policy's ranking of nodes for a pod (higher is better; among equals the node order wins)."""

TAGS = 8
"""A node's tags are three bits (the sim engine's: firm work, spot work, a reservation's)."""

COMPACT_SLACK = 32
"""A state's heap is rebuilt once it holds more than twice its nodes plus this many entries."""


def state_keys(policy: str, pods: Pods, nodes: Nodes) -> StateKeys | None:
    """The key ``policy`` ranks the nodes of a pool placer by, exactly as its policy computes it,
    if that key depends on a node's state (GPU count, idle GPUs) alone; None for ``random``.

    The placer's nodes have no CPU, memory or GPU model to tell them apart: best fit's score is
    in free GPU milli (idle GPUs × 1,000); FGD's depends on the multiset of free milli (the idle
    count) and the CPU levels (all 0); Backfill's CPU-deficit tie-break is 0 with no CPU in the
    mix, and with one GPU model its keeping of FGD's model changes nothing.
    """
    if policy == "bestfit":
        return best_fit_score
    if policy == "fgd":
        return FgdScorer(typical_pods(pods, nodes.models), nodes).scores
    if policy == "backfill":
        typical = typical_pods(pods, nodes.models)
        return FgdScorer(typical, nodes, tiebreak=deficit_growth(pods, nodes)).scores
    return None


class PoolPlacer:
    """One pool's GPUs as a ``Cluster`` (idle: 1,000 milli; held or claimed: 0) and a policy.

    For the deterministic policies a decision costs a few steps per node *state* (GPU count, idle
    GPUs), not per node; ``fast=False`` makes every decision scan the cluster as the policy does
    on its own (the reference the fast path is tested against, and what ``random`` always does).
    """

    def __init__(
        self,
        names: Sequence[str],
        gpus: Sequence[int],
        *,
        mix: Sequence[int] = DEFAULT_MIX,
        policy: str = "backfill",
        seed: int = 0,
        fast: bool = True,
        promised: int = 0,
    ) -> None:
        """``promised``: tag bits of nodes promised to someone (a reservation): such a node is
        never counted idle, so ``idle_nodes`` and ``keep_idle`` leave it out."""
        if policy not in ENGINE_POLICIES:
            raise ValueError(
                f"unknown placement policy {policy!r}: choose one of {', '.join(ENGINE_POLICIES)}"
            )
        count = len(names)
        self._promised = promised
        self.nodes = Nodes(
            names=tuple(names),
            cpu=np.zeros(count, dtype=np.int64),
            memory=np.zeros(count, dtype=np.int64),
            gpus=np.array(gpus, dtype=np.int64),
            models=("gpu",),
            model=np.zeros(count, dtype=np.int64),
        )
        self._cluster = Cluster(self.nodes)
        self._index = {name: i for i, name in enumerate(names)}
        # Ties go to the fleet file's node order: deterministic, and what an operator expects.
        arrival = Arrival(order=[], rank=np.arange(count, dtype=np.int64), rng=random.Random(seed))
        pods = mix_pods(mix, int(self.nodes.gpus.max()))
        self._choose: Policy = POLICIES[policy](pods, self.nodes, arrival)

        # Per node: its GPU count and idle flags (the truth; the cluster catches up when read).
        self._names = self.nodes.names
        self._gpus = [int(g) for g in self.nodes.gpus.tolist()]
        self._flags = [(True,) * g for g in self._gpus]
        self._idle_gpus: dict[tuple[bool, ...], list[int]] = {}
        """Per idle flags seen: the idle GPUs' indices, in order."""
        self._stale: set[int] = set()
        """Nodes whose flags changed since the cluster was last brought up to date."""
        self._has_gpus = self.nodes.gpus > 0
        # States: per distinct GPU count g, ids base[g] + 0 … g (the idle GPUs).
        base: dict[int, int] = {}
        state_gpus: list[int] = []
        for g in sorted(set(self._gpus)):
            base[g] = len(state_gpus)
            state_gpus.extend([g] * (g + 1))
        idle = [s - base[g] for s, g in enumerate(state_gpus)]
        # A node's *tags* (bits the engine sets: the owner's work or spot is on it) shift its
        # state by tags × ``_tag_offset``: nodes rank alike whatever their tags, and a request
        # may skip the nodes with some tags.
        self._tag_offset = len(state_gpus)
        self._offsets = [
            [t * self._tag_offset for t in range(TAGS) if not t & avoid] for avoid in range(TAGS)
        ]
        """Per tags to avoid: the state offsets of the tags a request may take."""
        largest = max(self._gpus)
        self._largest_idle = base[largest] + largest
        """The state of a fully idle, untagged node of the pool's largest size."""
        self._tags = [0] * count
        self._base = [base[g] for g in self._gpus]
        self._state = [base[g] + g for g in self._gpus]
        self._whole = [
            int(0 < k == g and not t & promised)
            for t in range(TAGS)
            for k, g in zip(idle, state_gpus, strict=True)
        ]
        """Per state: 1 if its nodes are fully idle."""
        self._count = [0] * (TAGS * len(state_gpus))
        self._heaps: list[list[int]] = [[] for _ in range(TAGS * len(state_gpus))]
        """Per state: a min-heap of node indices holding every node in it (and maybe some that
        have left it since: skipped, and dropped when they reach the top)."""
        for i, s in enumerate(self._state):
            self._count[s] += 1
            self._heaps[s].append(i)  # in increasing order: already a heap
        self._idle_nodes = sum(c for c, w in zip(self._count, self._whole, strict=True) if w)
        # One node per state, to score each state once per request size.
        states = Nodes(
            names=tuple(f"{g}-gpus-{k}-idle" for g, k in zip(state_gpus, idle, strict=True)),
            cpu=np.zeros(len(state_gpus), dtype=np.int64),
            memory=np.zeros(len(state_gpus), dtype=np.int64),
            gpus=np.array(state_gpus, dtype=np.int64),
            models=self.nodes.models,
            model=np.zeros(len(state_gpus), dtype=np.int64),
        )
        self._states = Cluster(states)
        for s, (g, k) in enumerate(zip(state_gpus, idle, strict=True)):
            if k < g:
                self._states.set_gpus(s, np.array([MILLI] * k + [0] * (g - k), dtype=np.int64))
        self._keys = state_keys(policy, pods, states) if fast else None
        self._ranked: dict[tuple[int, int], list[list[int]]] = {}
        """Per request size and tags to avoid: the fitting states (with the tags a request may
        take), grouped by equal key, best group first."""

    @property
    def cluster(self) -> Cluster:
        """The pool's GPUs as the policies see them, brought up to date on reading."""
        if self._stale:
            cluster = self._cluster
            for i in self._stale:
                free = np.array([MILLI if f else 0 for f in self._flags[i]], dtype=np.int64)
                if not np.array_equal(free, cluster.gpu[i, : len(free)]):
                    cluster.set_gpus(i, free)
            self._stale.clear()
        return self._cluster

    @property
    def idle_nodes(self) -> int:
        """How many nodes have all their GPUs idle (and are not promised)."""
        return self._idle_nodes

    def update(self, node: str, idle: Sequence[bool], *, tags: int | None = None) -> None:
        """Node ``node``'s GPUs now idle (True) or not, in index order (a tuple is taken as it
        is: it must hold bools), and its tags if given: bits below ``TAGS``, which
        ``choose(..., avoid=bits)`` and ``whole_nodes`` use to skip nodes."""
        i = self._index[node]
        flags = idle if type(idle) is tuple else tuple(map(bool, idle))
        moved = False
        if flags != self._flags[i]:
            if len(flags) != self._gpus[i]:
                raise ValueError(f"node {node!r} has {self._gpus[i]} GPUs, not {len(flags)}")
            self._flags[i] = flags
            self._stale.add(i)
            moved = True
        if tags is not None and tags != self._tags[i]:
            if not 0 <= tags < TAGS:
                raise ValueError(f"tags are bits below {TAGS}, not {tags}")
            self._tags[i] = tags
            moved = True
        if moved:
            self._move(i)

    def _move(self, i: int) -> None:
        """Put node ``i`` in the state its flags and tags say."""
        state = self._base[i] + self._flags[i].count(True) + self._tags[i] * self._tag_offset
        old = self._state[i]
        if state == old:
            return
        self._state[i] = state
        count = self._count
        count[old] -= 1
        if not count[old]:
            self._heaps[old].clear()
        count[state] += 1
        self._idle_nodes += self._whole[state] - self._whole[old]
        heap = self._heaps[state]
        heapq.heappush(heap, i)
        if len(heap) > 2 * count[state] + COMPACT_SLACK:
            current = self._state
            heap[:] = sorted({n for n in heap if current[n] == state})

    def choose(
        self, gpus: int, *, keep_idle: int = 0, avoid: int = 0
    ) -> tuple[str, list[int]] | None:
        """The node (and its GPUs) for a request of ``gpus`` idle GPUs on one node, if any.

        A fully idle node is taken only if at least ``keep_idle`` others stay fully idle; a node
        with any of the tags ``avoid`` is not taken at all."""
        spare_idle = self._idle_nodes > keep_idle
        if self._keys is None or gpus < 1:
            return self._scan(gpus, spare_idle, avoid)
        ranked = self._ranked.get((gpus, avoid))
        if ranked is None:
            offsets = self._offsets[avoid]
            ranked = self._ranked[gpus, avoid] = [
                [base + offset for base in group for offset in offsets]
                for group in self._rank(gpus)
            ]
        count, whole, heaps, state = self._count, self._whole, self._heaps, self._state
        for group in ranked:
            best = -1
            for s in group:
                if not count[s] or (whole[s] and not spare_idle):
                    continue
                heap = heaps[s]
                top = heap[0]
                while state[top] != s:
                    heapq.heappop(heap)
                    top = heap[0]
                if best < 0 or top < best:
                    best = top
            if best >= 0:
                flags = self._flags[best]
                free = self._idle_gpus.get(flags)
                if free is None:
                    free = self._idle_gpus[flags] = [g for g, f in enumerate(flags) if f]
                return self._names[best], free[:gpus]
        return None

    def whole_nodes(self, count: int, *, avoid: int = 0) -> list[str] | None:
        """The first ``count`` fully idle nodes of the pool's largest size, in node order, none
        tagged with any of ``avoid``; None when fewer are idle.

        A multi-node request takes whole nodes; this finds them in a few heap steps per node
        taken rather than a scan of the pool: each state's heap is popped down to its ``count``
        smallest valid nodes, which are then pushed back (the nodes stay where they are until
        the caller takes them)."""
        if count < 1:
            return []
        whole = self._largest_idle
        states = [whole + offset for offset in self._offsets[avoid] if self._count[whole + offset]]
        if sum(self._count[s] for s in states) < count:
            return None
        state = self._state
        popped: list[tuple[int, int]] = []  # (node, state) taken off the heaps, to push back
        tops: list[tuple[int, int]] = []  # (valid top node, state), the merge's frontier
        taken: list[int] = []

        def next_valid(s: int) -> None:
            heap = self._heaps[s]
            while heap:
                top = heapq.heappop(heap)
                if state[top] == s:
                    popped.append((top, s))
                    heapq.heappush(tops, (top, s))
                    return

        for s in states:
            next_valid(s)
        while len(taken) < count:
            node, s = heapq.heappop(tops)
            if not taken or taken[-1] != node:  # a node may sit in its heap twice
                taken.append(node)
            next_valid(s)
        for node, s in dict.fromkeys(popped):
            heapq.heappush(self._heaps[s], node)
        return [self._names[i] for i in taken]

    def _rank(self, gpus: int) -> list[list[int]]:
        """The states that fit ``gpus``, grouped by the policy's key, best first."""
        assert self._keys is not None
        pod = Pod(cpu=0, memory=0, num_gpu=gpus, gpu_milli=MILLI, allowed=None)
        fitting = np.flatnonzero(self._states.fits(pod))
        if not len(fitting):
            return []
        groups: dict[int, list[int]] = {}
        keys = self._keys(self._states, pod, fitting).tolist()
        for s, key in zip(fitting.tolist(), keys, strict=True):
            groups.setdefault(key, []).append(s)
        return [groups[key] for key in sorted(groups, reverse=True)]

    def _scan(self, gpus: int, spare_idle: bool, avoid: int = 0) -> tuple[str, list[int]] | None:
        """The policy's own choice over every node (with fully idle ones left out unless
        ``spare_idle``, and those tagged with any of ``avoid``)."""
        cluster = self.cluster
        pod = Pod(cpu=0, memory=0, num_gpu=gpus, gpu_milli=MILLI, allowed=None)
        fitting = cluster.fits(pod)
        tags = np.array(self._tags)
        if not spare_idle:
            idle = (cluster.fully_free == self.nodes.gpus) & self._has_gpus
            fitting &= ~(idle & ((tags & self._promised) == 0))
        if avoid:
            fitting &= (tags & avoid) == 0
        if not fitting.any():
            return None
        choice = self._choose(cluster, pod, fitting)
        if choice is None:
            return None
        return self._names[choice[0]], choice[1]
