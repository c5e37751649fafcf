"""Where a workload's GPUs go, and whose GPUs are taken to make room.

Rules (the same for internal work and leases):

- A request of up to one node's GPUs sits on one node. Which node, among those with enough idle
  GPUs, is the placement policy's choice (``backfill.placement.pool``, what the sim engine uses);
  ``place`` alone takes the tightest fit (best fit), so whole nodes stay free.
- A larger request takes whole nodes of the pool's largest node size, and must be a whole
  number of them.
- When idle GPUs are not enough and the claimant may preempt, the GPUs of preemptible holders
  (spot leases) count too; the node chosen is the one whose victims are fewest, then lose the
  least work (GPU-seconds already run), then leave the fewest GPUs over.

Ties break on the node name, so a placement is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations


@dataclass(frozen=True)
class Holding:
    """GPUs on one node held by a workload that the claimant may preempt."""

    workload: str
    gpus: int
    lost_work: float
    """GPU-seconds the holder has run: what stopping it throws away if it never checkpointed."""


@dataclass(frozen=True)
class NodeState:
    name: str
    gpus: int
    free: int
    """GPUs neither in use nor promised to a waiting workload."""
    preemptible: tuple[Holding, ...] = ()


@dataclass(frozen=True, slots=True)
class Placement:
    nodes: tuple[tuple[str, int], ...]
    """(node name, GPUs taken there), in node-name order."""
    victims: frozenset[str]
    """Workloads to stop (after their notice) before the GPUs are free."""

    @property
    def immediate(self) -> bool:
        return not self.victims


class ShapeError(ValueError):
    """The request can never fit the pool's shape, whatever is running."""


def check_shape(gpus: int, node_sizes: Sequence[int]) -> None:
    """Raise ShapeError unless ``gpus`` can be placed on nodes of these sizes when all are idle."""
    if gpus < 1:
        raise ShapeError("gpus must be at least 1")
    size = max(node_sizes)
    if gpus <= size:
        return
    if gpus % size:
        raise ShapeError(
            f"requests larger than one node ({size} GPUs) must be a whole number of nodes: "
            f"{gpus} is not a multiple of {size}"
        )
    whole = sum(1 for s in node_sizes if s == size)
    if gpus // size > whole:
        raise ShapeError(f"{gpus} GPUs need {gpus // size} nodes of {size}; the pool has {whole}")


def place(
    gpus: int, nodes: Sequence[NodeState], *, may_preempt: bool, node_size: int | None = None
) -> Placement | None:
    """Where ``gpus`` GPUs go on ``nodes``, or None when they cannot be had (even by preemption).

    ``node_size`` is the pool's largest node (what "whole nodes" means); by default the largest
    of ``nodes``, which a caller that passes a subset of the pool's nodes must give.
    """
    if not nodes or gpus < 1:
        return None
    size = node_size if node_size is not None else max(node.gpus for node in nodes)
    if gpus <= size:
        return _place_on_one_node(gpus, nodes, may_preempt)
    if gpus % size:
        return None
    return _place_on_whole_nodes(gpus // size, size, nodes, may_preempt)


def _place_on_one_node(
    gpus: int, nodes: Sequence[NodeState], may_preempt: bool
) -> Placement | None:
    fitting = [node for node in nodes if node.free >= gpus]
    if fitting:
        best = min(fitting, key=lambda node: (node.free - gpus, node.name))
        return Placement(nodes=((best.name, gpus),), victims=frozenset())
    if not may_preempt:
        return None
    best_cost: tuple[int, float, int, str] | None = None
    best_choice: tuple[NodeState, frozenset[str]] | None = None
    for node in nodes:
        if node.gpus < gpus:
            continue
        chosen = choose_victims(gpus - node.free, node.preemptible)
        if chosen is None:
            continue
        freed = node.free + sum(h.gpus for h in node.preemptible if h.workload in chosen)
        lost = sum(h.lost_work for h in node.preemptible if h.workload in chosen)
        cost = (len(chosen), lost, freed - gpus, node.name)
        if best_cost is None or cost < best_cost:
            best_cost, best_choice = cost, (node, chosen)
    if best_choice is None:
        return None
    node, victims = best_choice
    return Placement(nodes=((node.name, gpus),), victims=victims)


def _place_on_whole_nodes(
    count: int, size: int, nodes: Sequence[NodeState], may_preempt: bool
) -> Placement | None:
    whole = [node for node in nodes if node.gpus == size]
    idle = sorted((node for node in whole if node.free == size), key=lambda node: node.name)
    if len(idle) >= count:
        taken = idle[:count]
        return Placement(nodes=tuple((n.name, size) for n in taken), victims=frozenset())
    if not may_preempt:
        return None
    candidates: list[tuple[tuple[int, float, str], NodeState]] = []
    for node in whole:
        if node.free == size:
            continue
        if node.free + sum(h.gpus for h in node.preemptible) < size:
            continue
        lost = sum(h.lost_work for h in node.preemptible)
        candidates.append(((len(node.preemptible), lost, node.name), node))
    candidates.sort(key=lambda item: item[0])
    needed = count - len(idle)
    if len(candidates) < needed:
        return None
    taken = idle + [node for _, node in candidates[:needed]]
    victims = frozenset(h.workload for node in taken for h in node.preemptible)
    ordered = sorted(taken, key=lambda node: node.name)
    return Placement(nodes=tuple((n.name, size) for n in ordered), victims=victims)


def choose_victims(needed: int, holdings: Sequence[Holding]) -> frozenset[str] | None:
    """The fewest holders whose GPUs add up to ``needed``, losing the least work among those.

    Returns the empty set when nothing is needed, None when all of them together are not enough.
    A node holds at most a few workloads, so trying every combination of the smallest size that
    works is both exact and cheap.
    """
    if needed <= 0:
        return frozenset()
    if sum(h.gpus for h in holdings) < needed:
        return None
    for size in range(1, len(holdings) + 1):
        best: tuple[float, int, tuple[str, ...]] | None = None
        for combo in combinations(holdings, size):
            total = sum(h.gpus for h in combo)
            if total < needed:
                continue
            names = tuple(sorted(h.workload for h in combo))
            key = (sum(h.lost_work for h in combo), total, names)
            if best is None or key < best:
                best = key
        if best is not None:
            return frozenset(best[2])
    return None  # pragma: no cover - the sum check above makes this unreachable
