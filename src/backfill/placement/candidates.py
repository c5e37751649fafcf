"""The fitting nodes that can win: every node changed so far, and per make the best untouched one
that fits.

Untouched nodes of one make (CPU, memory, GPUs, GPU model) are identical in everything a policy
scores, so among them only the one with the smallest rank can ever be chosen. Scoring just that
one changes no decision and saves scoring thousands of idle twins in a large fleet.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from backfill.placement.cluster import Cluster, node_makes
from backfill.placement.openb import Nodes

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


class Candidates:
    def __init__(self, nodes: Nodes, rank: IntArray) -> None:
        make, _ = node_makes(nodes)
        self._by_make = [
            members[np.argsort(rank[members], kind="stable")]
            for members in (np.flatnonzero(make == m) for m in range(int(make.max()) + 1))
        ]
        self._head = [0] * len(self._by_make)

    def of(self, cluster: Cluster, fitting: BoolArray) -> IntArray:
        keep = cluster.version > 0
        for m, members in enumerate(self._by_make):
            head = self._head[m]
            while head < len(members) and cluster.version[members[head]] > 0:
                head += 1
            self._head[m] = head
            # The first untouched twin that fits: the caller may have ruled some out for what
            # the node's resources do not show (the sim engine's tags).
            rest = members[head:]
            usable = fitting[rest] & (cluster.version[rest] == 0)
            first = int(np.argmax(usable)) if len(rest) else 0
            if len(rest) and usable[first]:
                keep[rest[first]] = True
        chosen: IntArray = np.flatnonzero(fitting & keep)
        return chosen
