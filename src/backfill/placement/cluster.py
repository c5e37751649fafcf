"""A cluster's free resources as arrays, and the fit rule, checked over every node at once.

Each GPU holds 1,000 milli. A node with fewer GPUs than the widest node has its missing GPUs
marked ``ABSENT`` (-1), so they never fit anything and never count as free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from backfill.placement.openb import MILLI, Nodes, Pods

ABSENT = -1
KINDS = 17  # sharing, and 1 … 16 whole GPUs

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Pod:
    cpu: int
    memory: int
    num_gpu: int
    gpu_milli: int
    allowed: BoolArray | None
    """Per GPU model: may this pod use it (None: any model)."""

    @property
    def demand(self) -> int:
        return self.num_gpu * self.gpu_milli

    @property
    def kind(self) -> int:
        """Sharing pods are kind 0; whole-GPU pods of k GPUs are kind k (CPU-only: 0, unused)."""
        return 0 if self.sharing else self.num_gpu

    @property
    def sharing(self) -> bool:
        """One GPU, less than all of it: the GPU is chosen, not just the node."""
        return self.num_gpu == 1 and self.gpu_milli < MILLI

    @staticmethod
    def of(pods: Pods, index: int, models: tuple[str, ...]) -> Pod:
        spec = pods.spec[index]
        allowed = None
        if spec:
            allowed = np.array([m in spec for m in models], dtype=np.bool_)
        return Pod(
            cpu=int(pods.cpu[index]),
            memory=int(pods.memory[index]),
            num_gpu=int(pods.num_gpu[index]),
            gpu_milli=int(pods.gpu_milli[index]),
            allowed=allowed,
        )


def node_makes(nodes: Nodes) -> tuple[IntArray, IntArray]:
    """Each node's make (same CPU, memory, GPUs and model), and the first node of each make."""
    makes = np.stack([nodes.cpu, nodes.memory, nodes.gpus, nodes.model], axis=1)
    _, first, make = np.unique(makes, axis=0, return_index=True, return_inverse=True)
    return make.reshape(-1).astype(np.int64), first.astype(np.int64)


class Cluster:
    """Free CPU, memory and per-GPU milli of every node; changed only by ``place``."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.cpu = nodes.cpu.copy()
        self.memory = nodes.memory.copy()
        width = max(1, int(nodes.gpus.max()))
        self.gpu = np.full((len(nodes), width), ABSENT, dtype=np.int64)
        for i, count in enumerate(nodes.gpus):
            self.gpu[i, :count] = MILLI
        self.model = nodes.model
        self.gpu_count = nodes.gpus
        self.kinds = np.zeros((len(nodes), KINDS), dtype=np.int64)
        """Per node: how many GPU pods of each kind it holds (column 0 sharing, k: k GPUs)."""
        self.version = np.zeros(len(nodes), dtype=np.int64)
        """Per node: bumped on every change, so scores cached per node know when they are stale."""
        # Kept current by place(), so a decision never rescans every GPU of the fleet:
        self.free = nodes.gpus * MILLI
        """Per node: free GPU milli."""
        self.fully_free = nodes.gpus.copy()
        """Per node: GPUs with all 1,000 milli free."""
        self.largest = np.where(nodes.gpus > 0, MILLI, 0).astype(np.int64)
        """Per node: the most free milli on any one GPU."""

    def fits(self, pod: Pod) -> BoolArray:
        """Which nodes can take ``pod`` now."""
        ok: BoolArray = (self.cpu >= pod.cpu) & (self.memory >= pod.memory)
        if pod.num_gpu:
            if pod.allowed is not None:
                ok &= pod.allowed[self.model]
            if pod.gpu_milli >= MILLI:  # whole GPUs
                ok &= self.fully_free >= pod.num_gpu
            else:  # one GPU, shared (the loader refuses fractions of several GPUs)
                ok &= self.largest >= pod.gpu_milli
        return ok

    def whole_gpus(self, node: int, count: int) -> list[int]:
        """The ``count`` lowest-index fully free GPUs of ``node``."""
        free = np.flatnonzero(self.gpu[node] == MILLI)
        return [int(i) for i in free[:count]]

    def tightest_gpu(self, node: int, milli: int) -> int:
        """For a sharing pod: the fitting GPU with the least free milli (lowest index on ties)."""
        row = self.gpu[node]
        candidates = np.flatnonzero(row >= milli)
        return int(candidates[np.argmin(row[candidates])])

    def place(self, node: int, pod: Pod, gpus: list[int]) -> None:
        self.cpu[node] -= pod.cpu
        self.memory[node] -= pod.memory
        for g in gpus:
            self.gpu[node, g] -= pod.gpu_milli
        if pod.num_gpu:
            self.kinds[node, pod.kind] += 1
            row = self.gpu[node]
            self.free[node] = row[row > 0].sum()
            self.fully_free[node] = int((row == MILLI).sum())
            self.largest[node] = max(0, int(row.max()))
        self.version[node] += 1
        if self.cpu[node] < 0 or self.memory[node] < 0 or (gpus and self.gpu[node, gpus].min() < 0):
            raise ValueError(f"node {node} cannot hold this pod: the placement broke the fit rule")

    def set_gpus(self, node: int, free: IntArray) -> None:
        """Set ``node``'s per-GPU free milli outright (an engine whose work also ends does this
        instead of ``place``). Pod kinds are not tracked this way."""
        row = self.gpu[node]
        count = int(self.gpu_count[node])
        if len(free) != count or int(free.min(initial=0)) < 0 or int(free.max(initial=0)) > MILLI:
            raise ValueError(f"node {node} has {count} GPUs of 0…{MILLI} milli each")
        row[:count] = free
        self.free[node] = int(free.sum())
        self.fully_free[node] = int((free == MILLI).sum())
        self.largest[node] = int(free.max(initial=0))
        self.version[node] += 1

    def free_gpu_milli(self, rows: IntArray | slice = slice(None)) -> IntArray:
        """Per node: free milli over its GPUs (absent GPUs count nothing)."""
        free: IntArray = self.free[rows]
        return free

    @property
    def used_gpu_milli(self) -> int:
        return int(self.nodes.total_gpu_milli - self.free.sum())
