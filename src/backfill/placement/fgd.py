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

from collections import Counter
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
    result: FloatArray = unusable @ typical.share
    return result


def _score(before: FloatArray, after: FloatArray) -> IntArray:
    sigmoid = 1.0 / (1.0 + np.exp(-(before - after) / 1000.0))
    return np.trunc(sigmoid * 100).astype(np.int64)


class FgdScorer:
    """Scores (and GPU choices) per node and pod shape, recomputed only for changed nodes."""

    def __init__(self, typical: TypicalPods, nodes: Nodes) -> None:
        self.typical = typical
        self.size = cluster_size = len(nodes)
        # Untouched nodes of the same make (CPU, memory, GPUs, model) score alike: score one
        # of each make and share it, until a placement makes a node differ.
        self.make, first = node_makes(nodes)
        pristine = Cluster(nodes)  # every make as it stands before any placement
        self.make_cpu = pristine.cpu[first]
        self.make_gpu = pristine.gpu[first]
        self.make_model = pristine.model[first]
        self.make_frag = fragmentation(typical, self.make_cpu, self.make_gpu, self.make_model)
        self.frag = np.zeros(cluster_size)
        self.frag_version = np.full(cluster_size, -1, dtype=np.int64)
        self.cache: dict[tuple[int, int, int], tuple[IntArray, IntArray, IntArray]] = {}

    def _current_frag(self, cluster: Cluster, nodes: IntArray) -> FloatArray:
        stale = nodes[self.frag_version[nodes] != cluster.version[nodes]]
        if len(stale):
            self.frag[stale] = fragmentation(
                self.typical, cluster.cpu[stale], cluster.gpu[stale], cluster.model[stale]
            )
            self.frag_version[stale] = cluster.version[stale]
        return self.frag[nodes]

    def scores(self, cluster: Cluster, pod: Pod, nodes: IntArray) -> tuple[IntArray, IntArray]:
        """(score, GPU for a sharing pod or −1) of each of ``nodes``."""
        shape = (pod.cpu, pod.gpu_milli, pod.num_gpu)
        if shape not in self.cache:
            self.cache[shape] = (
                np.zeros(self.size, dtype=np.int64),
                np.full(self.size, -1, dtype=np.int64),
                np.full(self.size, -1, dtype=np.int64),
            )
        score, gpu_choice, version = self.cache[shape]
        stale = nodes[version[nodes] != cluster.version[nodes]]
        if len(stale):
            untouched = cluster.version[stale] == 0
            if untouched.sum() > 1:
                makes = np.unique(self.make[stale[untouched]])
                s, g = self._compute(
                    pod,
                    self.make_cpu[makes],
                    self.make_gpu[makes],
                    self.make_model[makes],
                    self.make_frag[makes],
                )
                lookup_s = np.zeros(len(self.make_cpu), dtype=np.int64)
                lookup_g = np.zeros(len(self.make_cpu), dtype=np.int64)
                lookup_s[makes], lookup_g[makes] = s, g
                fresh = stale[untouched]
                score[fresh], gpu_choice[fresh] = (
                    lookup_s[self.make[fresh]],
                    lookup_g[self.make[fresh]],
                )
                version[fresh] = 0
                stale = stale[~untouched]
            if len(stale):
                s, g = self._compute(
                    pod,
                    cluster.cpu[stale],
                    cluster.gpu[stale],
                    cluster.model[stale],
                    self._current_frag(cluster, stale),
                )
                score[stale], gpu_choice[stale], version[stale] = s, g, cluster.version[stale]
        return score[nodes], gpu_choice[nodes]

    def _compute(
        self, pod: Pod, cpu: IntArray, gpu: IntArray, model: IntArray, before: FloatArray
    ) -> tuple[IntArray, IntArray]:
        """Scores (and sharing GPUs) of placing ``pod`` on nodes in these states."""
        cpu_after = cpu - pod.cpu
        count = len(cpu)
        if not pod.sharing:
            if pod.num_gpu:
                whole = gpu == MILLI
                take = whole & (np.cumsum(whole, axis=1) <= pod.num_gpu)
                gpu = np.where(take, gpu - MILLI, gpu)
            after = fragmentation(self.typical, cpu_after, gpu, model)
            return _score(before, after), np.full(count, -1, dtype=np.int64)
        width = gpu.shape[1]
        rows = np.repeat(np.arange(count), width)
        cols = np.tile(np.arange(width), count)
        fits = gpu[rows, cols] >= pod.gpu_milli
        rows, cols = rows[fits], cols[fits]
        trial = gpu[rows].copy()
        trial[np.arange(len(rows)), cols] -= pod.gpu_milli
        after = fragmentation(self.typical, cpu_after[rows], trial, model[rows])
        trial_scores = _score(before[rows], after)
        best = np.full(count, -1, dtype=np.int64)
        np.maximum.at(best, rows, trial_scores)
        # The first (lowest-index) GPU that reaches the node's best score.
        is_best = trial_scores == best[rows]
        choice = np.full(count, width, dtype=np.int64)
        np.minimum.at(choice, rows[is_best], cols[is_best])
        return best, choice


def _choose_gpus(cluster: Cluster, pod: Pod, node: int, gpu: int) -> list[int]:
    if pod.num_gpu == 0:
        return []
    if pod.sharing:
        return [gpu]
    return cluster.whole_gpus(node, pod.num_gpu)


def fgd_policy(pods: Pods, nodes: Nodes, arrival: Arrival) -> Policy:
    """FGD as published: the best integer score, ties to the smallest rank."""
    scorer = FgdScorer(typical_pods(pods, nodes.models), nodes)
    reachable = Candidates(nodes, arrival.rank)

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
        candidates = reachable.of(cluster, fitting)
        scores, gpus = scorer.scores(cluster, pod, candidates)
        node = best_node(candidates, scores, arrival.rank)
        return node, _choose_gpus(cluster, pod, node, int(gpus[candidates == node][0]))

    return choose


def cpu_per_gpu_milli(pods: Pods) -> float:
    """The trace's CPU milli per GPU milli, over its GPU pods."""
    gpu_pods = pods.num_gpu > 0
    demand = int(pods.demand[gpu_pods].sum())
    return float(pods.cpu[gpu_pods].sum()) / demand if demand else 0.0


def cpu_deficit(cpu: IntArray, free_gpu: IntArray, need: float) -> FloatArray:
    """CPU milli a node lacks to use its free GPUs at the trace's CPU per GPU."""
    deficit: FloatArray = np.maximum(0.0, need * free_gpu - cpu)
    return deficit


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
    scorer = FgdScorer(typical, nodes)
    reachable = Candidates(nodes, arrival.rank)
    need = cpu_per_gpu_milli(pods)
    keep_model = model_bound_share(typical) >= MODEL_BOUND_SHARE

    def choose(cluster: Cluster, pod: Pod, fitting: BoolArray) -> Choice:
        candidates = reachable.of(cluster, fitting)
        scores, gpus = scorer.scores(cluster, pod, candidates)
        top = candidates[scores == scores.max()]
        if len(top) > 1:
            if keep_model:
                fgd_choice = top[np.argmin(arrival.rank[top])]
                top = top[cluster.model[top] == cluster.model[fgd_choice]]
            free = cluster.free_gpu_milli(top)
            before = cpu_deficit(cluster.cpu[top], free, need)
            after = cpu_deficit(cluster.cpu[top] - pod.cpu, free - pod.demand, need)
            growth = after - before
            top = top[growth == growth.min()]
        node = int(top[np.argmin(arrival.rank[top])])
        return node, _choose_gpus(cluster, pod, node, int(gpus[candidates == node][0]))

    return choose
