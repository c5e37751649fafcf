"""Placement decisions per second on a large fleet, one core.

    python bench/placement_speed.py [--nodes 10000] [--decisions 20000] [--policy backfill ...]

A fleet of --nodes nodes of 8 GPUs (96 cores, 1 TiB each: 80,000 GPUs at the default), and a
mixed request stream drawn (seeded) from the openb default trace's pods: CPU-only, GPU-sharing,
and 1- to 8-GPU pods. Each decision is a full fit check over every node plus the policy's choice.
Timed from an empty fleet until --decisions pods have arrived (the fleet fills up as it goes).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from backfill.placement.cluster import Cluster, Pod
from backfill.placement.openb import Nodes, load_pods
from backfill.placement.policies import POLICIES
from backfill.placement.protocol import Arrival

TRACE = Path(__file__).resolve().parents[2] / "shared/traces/openb/openb_pod_list_default.csv"


def fleet(count: int) -> Nodes:
    return Nodes(
        names=tuple(f"node-{i:05d}" for i in range(count)),
        cpu=np.full(count, 96_000, dtype=np.int64),
        memory=np.full(count, 1_048_576, dtype=np.int64),
        gpus=np.full(count, 8, dtype=np.int64),
        models=("H100",),
        model=np.zeros(count, dtype=np.int64),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--policy", action="append")
    args = parser.parse_args()
    pods = load_pods(TRACE)
    # The stream may use any model: drop the trace's model constraints.
    pods = replace(pods, spec=tuple(frozenset() for _ in pods.spec), spec_text=("",) * len(pods))
    nodes = fleet(args.nodes)
    for name in args.policy or ["backfill", "fgd", "bestfit", "random"]:
        rng = random.Random(7)
        stream = [rng.randrange(len(pods)) for _ in range(args.decisions)]
        arrival = Arrival(
            order=stream, rank=np.array(rng.sample(range(len(nodes)), len(nodes))), rng=rng
        )
        cluster = Cluster(nodes)
        choose = POLICIES[name](pods, nodes, arrival)
        placed = 0
        started = time.perf_counter()
        for index in stream:
            pod = Pod.of(pods, index, nodes.models)
            fitting = cluster.fits(pod)
            choice = choose(cluster, pod, fitting) if fitting.any() else None
            if choice is not None:
                cluster.place(choice[0], pod, choice[1])
                placed += 1
        elapsed = time.perf_counter() - started
        used = 100 * cluster.used_gpu_milli / nodes.total_gpu_milli
        print(
            f"{name:>9}: {args.decisions / elapsed:8,.0f} decisions/s "
            f"({args.decisions} pods in {elapsed:.1f} s; {placed} placed; "
            f"{used:.1f} % of {int(nodes.gpus.sum()):,} GPUs allocated; {len(nodes):,} nodes)"
        )


if __name__ == "__main__":
    main()
