"""FGD: place where the cluster's GPU fragmentation grows least (Weng et al., USENIX ATC 2023).

The *typical pods* are the (cpu, gpu milli, GPUs, models) shapes that cover 95 % of the trace,
with their shares p_m (summing to 1). A node's fragmentation is

    F(n) = Σ_m p_m · f_m(n)

where f_m(n) is the node's free GPU milli that pod m could not use: all of it when m cannot fit
(too little CPU, too few GPUs with enough free milli, a model m may not use) or takes no GPU;
only its GPUs with less free milli than m needs when it can. A pod goes to the node where
int(100·σ((F(n) − F(n′))/1000)) is highest, n′ being the node after placing it; a sharing pod
tries every fitting GPU and takes the first best. Memory plays no part in the score.

Scores are cached per node and per pod shape, and only nodes that changed since that shape was
last scored are recomputed: one placement changes one node.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from backfill.placement.candidates import Candidates
from backfill.placement.cluster import Cluster, Pod, node_makes
from backfill.placement.openb import MILLI, Nodes, Pods
from backfill.placement.protocol import Arrival, Choice, Policy

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COVERAGE = 0.95


def best_node(candidates: IntArray, scores: IntArray, rank: IntArray) -> int:
    """The highest score; among equals, the smallest rank."""
    top = candidates[scores == scores.max()]
    return int(top[np.argmin(rank[top])])


@dataclass(frozen=True)
class TypicalPods:
    cpu: IntArray
    milli: IntArray
    num: IntArray
    allowed: BoolArray
    """(typical pod, model): may the pod use a GPU of that model."""
    share: FloatArray
    thresholds: IntArray
    """The distinct milli of the GPU-using typical pods."""
    threshold_of: IntArray
    """Per typical pod: index into ``thresholds`` (−1 for CPU-only ones)."""

    def __len__(self) -> int:
        return len(self.cpu)


def typical_pods(pods: Pods, models: tuple[str, ...], coverage: float = COVERAGE) -> TypicalPods:
    """The shapes that cover ``coverage`` of the (untuned) trace's pods, most frequent first."""
    keys = Counter(
        (int(pods.cpu[i]), int(pods.gpu_milli[i]), int(pods.num_gpu[i]), text)
        for i, text in enumerate(pods.spec_text)
    )
    ranked = sorted(keys.items(), key=lambda item: (item[1], item[0]), reverse=True)
    expected = coverage * len(pods)
    chosen: list[tuple[tuple[int, int, int, str], int]] = []
    covered = 0
    for key, count in ranked:
        if covered >= expected:
            break
        chosen.append((key, count))
        covered += count
    cpu = np.array([k[0] for k, _ in chosen], dtype=np.int64)
    milli = np.array([k[1] for k, _ in chosen], dtype=np.int64)
    num = np.array([k[2] for k, _ in chosen], dtype=np.int64)
    allowed = np.array(
        [[not k[3] or m in k[3].split("|") for m in models] for k, _ in chosen], dtype=np.bool_
    ).reshape(len(chosen), len(models))
    share = np.array([c / covered for _, c in chosen], dtype=np.float64)
    thresholds = np.unique(milli[milli > 0])
    threshold_of = np.array(
        [int(np.searchsorted(thresholds, v)) if v > 0 else -1 for v in milli], dtype=np.int64
    )
    return TypicalPods(cpu, milli, num, allowed, share, thresholds, threshold_of)


def fragmentation(
    typical: TypicalPods, cpu: IntArray, gpu: IntArray, model: IntArray
) -> FloatArray:
    """F of a batch of node states: free CPU (B), per-GPU free milli (B × W, −1 absent), model."""
    free = np.where(gpu > 0, gpu, 0)
    total = free.sum(axis=1)
    t = typical.thresholds
    if len(t) == 0:
        only_cpu: FloatArray = total * float(typical.share.sum())
        return only_cpu
    # Per threshold: how many GPUs have that much free, and the free milli of those that don't.
    at_least = gpu[:, None, :] >= t[None, :, None]  # (B, T, W)
    enough = at_least.sum(axis=2)
    small = np.where(at_least, 0, free[:, None, :]).sum(axis=2)  # absent GPUs hold 0
    uses_gpu = typical.threshold_of >= 0
    k = np.where(uses_gpu, typical.threshold_of, 0)
    fits = (
        uses_gpu[None, :]
        & typical.allowed[:, model].T
        & (cpu[:, None] >= typical.cpu[None, :])
        & (enough[:, k] >= typical.num[None, :])
    )  # (B, M)
    unusable = np.where(fits, small[:, k], total[:, None])
    # Summed in the typical pods' order, as the simulator does, and alike in every batch: a
    # node's F must not depend on which other nodes were scored with it (BLAS's matrix product
    # rounds differently per batch size, and the integer score turns that into other choices).
    result: FloatArray = np.cumsum(unusable * typical.share, axis=1)[:, -1]
    return result


def _score(before: FloatArray, after: FloatArray) -> IntArray:
    sigmoid = 1.0 / (1.0 + np.exp(-(before - after) / 1000.0))
    return np.trunc(sigmoid * 100).astype(np.int64)


TieBreak = Callable[[Cluster, Pod, IntArray], IntArray]
TIE_SHIFT = 50
TIE_BOUND = 1 << (TIE_SHIFT - 1)
"""A tie-break must stay within ±TIE_BOUND, so that it never outweighs one point of score."""

MEMO_LIMIT = 500_000
"""Scores remembered across all pod shapes before the memo starts afresh (~100 MB; one
batch may go past it before the next lookup clears it)."""


class FgdScorer:
    """FGD's score of placing a pod shape on nodes, remembered per node state.

    A node's score depends only on its GPU model, its per-GPU free milli as a multiset (F does
    not care which GPU is which), and which typical pods its CPU can hold before and after the
    placement. Nodes in one such state score alike, and a fleet passes through few states
    (1,174 over 20,000 placements on 10,000 nodes), so each (shape, state) is computed once.
    Per node and shape, the score is also kept until the node changes, so a decision only
    looks up the nodes changed since that shape was last scored.
    """

    def __init__(
        self, typical: TypicalPods, nodes: Nodes, tiebreak: TieBreak | None = None
    ) -> None:
        self.typical = typical
        self.tiebreak = tiebreak
        """If given: ``scores`` gives ``score · 2^TIE_SHIFT − tiebreak`` (cached alike), so the
        best key is the best score and, among those, the smallest tie-break."""
        self.levels = np.unique(typical.cpu)
        """The only CPU amounts F compares a node's free CPU with."""
        self.buckets = len(self.levels) + 1
        self._state_ids: dict[tuple[int, tuple[int, ...]], int] = {}
        size = len(nodes)
        # Untouched nodes of one make share their state: intern one of each.
        make, first = node_makes(nodes)
        pristine = Cluster(nodes)
        ids = np.array(
            [self._intern(int(pristine.model[f]), pristine.gpu[f]) for f in first], dtype=np.int64
        )
        self.state = ids[make]
        self.state_version = np.zeros(size, dtype=np.int64)
        self.size = size
        self.cache: dict[tuple[int, int, int], tuple[IntArray, IntArray]] = {}
        self.memo: dict[tuple[int, int, int], dict[int, tuple[int, frozenset[int]]]] = {}
        self.remembered = 0

    def _intern(self, model: int, gpu: IntArray) -> int:
        key = (model, tuple(sorted(gpu.tolist())))
        return self._state_ids.setdefault(key, len(self._state_ids))

    def _codes(self, cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
        """One integer per node for (state, CPU level before, CPU level after placing ``pod``)."""
        changed = nodes[self.state_version[nodes] != cluster.version[nodes]]
        for n in changed.tolist():
            self.state[n] = self._intern(int(cluster.model[n]), cluster.gpu[n])
        self.state_version[changed] = cluster.version[changed]
        cpu = cluster.cpu[nodes]
        before = np.searchsorted(self.levels, cpu, side="right")
        after = np.searchsorted(self.levels, cpu - pod.cpu, side="right")
        codes: IntArray = (self.state[nodes] * self.buckets + before) * self.buckets + after
        return codes

    def _lookup(
        self, cluster: Cluster, pod: Pod, nodes: IntArray
    ) -> list[tuple[int, frozenset[int]]]:
        """(score, free milli of the GPUs a sharing pod may take) per node, computed once."""
        shape = (pod.cpu, pod.gpu_milli, pod.num_gpu)
        codes = self._codes(cluster, pod, nodes).tolist()
        if self.remembered > MEMO_LIMIT:
            self.memo.clear()
            self.remembered = 0
        memo = self.memo.setdefault(shape, {})
        missing: dict[int, int] = {}
        for i, code in enumerate(codes):
            if code not in memo and code not in missing:
                missing[code] = i
        if missing:
            rows = nodes[list(missing.values())]
            computed = self._compute(pod, cluster.cpu[rows], cluster.gpu[rows], cluster.model[rows])
            memo.update(zip(missing, computed, strict=True))
            self.remembered += len(missing)
        return [memo[code] for code in codes]

    def scores(self, cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
        """FGD's integer score of placing ``pod`` on each of ``nodes`` (with the tie-break)."""
        shape = (pod.cpu, pod.gpu_milli, pod.num_gpu)
        if shape not in self.cache:
            self.cache[shape] = (
                np.zeros(self.size, dtype=np.int64),
                np.full(self.size, -1, dtype=np.int64),
            )
        score, version = self.cache[shape]
        stale = nodes[version[nodes] != cluster.version[nodes]]
        if len(stale):
            fresh = np.array([s for s, _ in self._lookup(cluster, pod, stale)], dtype=np.int64)
            if self.tiebreak is not None:
                fresh = (fresh << TIE_SHIFT) - self.tiebreak(cluster, pod, stale)
            score[stale] = fresh
            version[stale] = cluster.version[stale]
        return score[nodes]

    def gpus(self, cluster: Cluster, pod: Pod, node: int) -> list[int]:
        """The GPUs ``pod`` takes on ``node``: for a sharing pod the first GPU whose trial scored
        best; otherwise the lowest-index fully free GPUs."""
        if pod.num_gpu == 0:
            return []
        if not pod.sharing:
            return cluster.whole_gpus(node, pod.num_gpu)
        [(_, best)] = self._lookup(cluster, pod, np.array([node], dtype=np.int64))
        return [next(g for g, free in enumerate(cluster.gpu[node].tolist()) if free in best)]

    def _compute(
        self, pod: Pod, cpu: IntArray, gpu: IntArray, model: IntArray
    ) -> list[tuple[int, frozenset[int]]]:
        """(score, best GPUs' free milli for a sharing pod) of placing ``pod`` on these states."""
        count = len(cpu)
        if not pod.sharing:
            rows = np.arange(count)
            after = gpu
            if pod.num_gpu:
                whole = gpu == MILLI
                take = whole & (np.cumsum(whole, axis=1) <= pod.num_gpu)
                after = np.where(take, gpu - MILLI, gpu)
        else:
            # One trial per distinct free milli on a node: F does not care which GPU it is.
            width = gpu.shape[1]
            repeated = (gpu[:, :, None] == gpu[:, None, :]) & np.tri(width, k=-1, dtype=np.bool_)
            tried = (gpu >= pod.gpu_milli) & ~repeated.any(axis=2)
            rows, cols = np.nonzero(tried)
            after = gpu[rows].copy()
            after[np.arange(len(rows)), cols] -= pod.gpu_milli
        # Before and after in one batch (F of a row does not depend on its batch).
        frag = fragmentation(
            self.typical,
            np.concatenate([cpu, cpu[rows] - pod.cpu]),
            np.concatenate([gpu, after]),
            np.concatenate([model, model[rows]]),
        )
        trial_scores = _score(frag[:count][rows], frag[count:])
        if not pod.sharing:
            none: frozenset[int] = frozenset()
            return [(s, none) for s in trial_scores.tolist()]
        best = np.full(count, -1, dtype=np.int64)
        np.maximum.at(best, rows, trial_scores)
        is_best = trial_scores == best[rows]
        taken: list[set[int]] = [set() for _ in range(count)]
        chosen = rows[is_best].tolist()
        for row, free in zip(chosen, gpu[rows, cols][is_best].tolist(), strict=True):
            taken[row].add(free)
        return [(s, frozenset(t)) for s, t in zip(best.tolist(), taken, strict=True)]


def fgd_policy(pods: Pods, nodes: Nodes, arrival: Arrival) -> Policy:
    """FGD as published: the best integer score, ties to the smallest rank."""
    scorer = FgdScorer(typical_pods(pods, nodes.models), nodes)
    reachable = Candidates(nodes, arrival.rank)

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
        candidates = reachable.of(cluster, fitting)
        node = best_node(candidates, scorer.scores(cluster, pod, candidates), arrival.rank)
        return node, scorer.gpus(cluster, pod, node)

    return choose


def deficit_growth(pods: Pods, nodes: Nodes) -> TieBreak:
    """How much placing a pod grows a node's CPU deficit, exactly: in units of 1/D milli-CPU,
    the trace's CPU per GPU milli being C/D in lowest terms (so equal growths compare equal)."""
    gpu_pods = pods.num_gpu > 0
    c, d = int(pods.cpu[gpu_pods].sum()), int(pods.demand[gpu_pods].sum())
    if d == 0:
        c, d = 0, 1
    common = math.gcd(c, d) or 1
    c, d = c // common, d // common
    largest = c * int(nodes.gpus.max(initial=0)) * MILLI + d * int(nodes.cpu.max(initial=0))
    if 2 * largest >= TIE_BOUND:
        raise ValueError("node CPU and GPU amounts too large for the exact CPU-deficit tie-break")

    def growth(cluster: Cluster, pod: Pod, nodes: IntArray) -> IntArray:
        cpu, free = cluster.cpu[nodes], cluster.free[nodes]
        before = np.maximum(0, c * free - d * cpu)
        after = np.maximum(0, c * (free - pod.demand) - d * (cpu - pod.cpu))
        grown: IntArray = after - before
        return grown

    return growth


MODEL_BOUND_SHARE = 0.05
"""When typical pods restricted to some GPU models carry at least this share of the typical mix,
Backfill keeps the GPU model FGD would use. On the openb traces: 1.4 % (gpuspec05, where steering
across models places more) and 5.9 % / 14.7 % (gpuspec10 / 20, where it used up the models that
constrained pods needed); a knob, like FGD's 95 % coverage."""


def model_bound_share(typical: TypicalPods) -> float:
    """The share of the typical mix that may run on only some GPU models."""
    bound = ~typical.allowed.all(axis=1)
    return float(typical.share[bound].sum())


def backfill_policy(pods: Pods, nodes: Nodes, arrival: Arrival) -> Policy:
    """Backfill's default: FGD's score, then CPU stewardship among its best nodes.

    On the openb traces almost every pod FGD drops finds GPUs free, but only on nodes whose CPU
    is used up: those GPUs are stranded. Among the nodes FGD scores best (its integer score ties
    often), this policy takes the one whose CPU deficit — the CPU a node lacks to use its free
    GPUs at the trace's CPU per GPU — grows least, then the smallest rank. Where a material share
    of the typical pods may use only some GPU models (``MODEL_BOUND_SHARE``), it chooses only among
    nodes of the model FGD would use, so it never takes the models those pods need. Online: one
    pod at a time, decided on arrival, never retried.
    """
    typical = typical_pods(pods, nodes.models)
    # Keys: FGD's score first, then the least deficit growth (folded into one cached integer).
    scorer = FgdScorer(typical, nodes, tiebreak=deficit_growth(pods, nodes))
    reachable = Candidates(nodes, arrival.rank)
    keep_model = model_bound_share(typical) >= MODEL_BOUND_SHARE

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
        candidates = reachable.of(cluster, fitting)
        keys = scorer.scores(cluster, pod, candidates)
        if keep_model:
            scores = (keys + TIE_BOUND) >> TIE_SHIFT
            top = candidates[scores == scores.max()]
            fgd_choice = top[np.argmin(arrival.rank[top])]
            same = cluster.model[candidates] == cluster.model[fgd_choice]
            candidates, keys = candidates[same], keys[same]
        node = best_node(candidates, keys, arrival.rank)
        return node, scorer.gpus(cluster, pod, node)

    return choose
