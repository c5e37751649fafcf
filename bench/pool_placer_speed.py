"""Placement decisions per second of the sim engine's PoolPlacer on a large pool, one core.

    OMP_NUM_THREADS=1 python bench/pool_placer_speed.py [--nodes 10000] [--decisions 200000]

Drives a PoolPlacer as the sim engine does: a seeded stream of requests of 1 to 8 GPUs (sizes
drawn from --sizes), each placed with ``choose`` and told to the placer with ``update``; each
holds its GPUs for an exponential while (one request arrives per tick), then frees them with
another ``update``. The mean hold is set so the pool runs about --load full. The pool is warmed
up to that load first (not timed); then --decisions decisions are timed on the fast path, and
--slow-decisions from the same state on the scanning path (``fast=False``) for comparison. The
time includes every ``update`` call (placements and departures alike).
"""

from __future__ import annotations

import argparse
import heapq
import random
import time

from backfill.placement.pool import PoolPlacer

SIZES = (1, 1, 1, 1, 2, 4, 8, 8)


class Stream:
    """Requests arriving one per tick, holding their GPUs for a while, then leaving."""

    def __init__(self, nodes: int, gpus: int, sizes: tuple[int, ...], load: float, seed: int):
        self.rng = random.Random(seed)
        self.sizes = sizes
        self.names = [f"node-{i:05d}" for i in range(nodes)]
        self.idle = {name: [True] * gpus for name in self.names}
        self.hold = load * nodes * gpus / (sum(sizes) / len(sizes))  # mean ticks held
        self.ends: list[tuple[float, str, list[int]]] = []
        self.now = 0.0
        self.used = 0
        self.placed = self.unplaced = 0

    def run(self, placer: PoolPlacer, decisions: int) -> float:
        """Seconds taken by ``decisions`` arrivals (and the departures due meanwhile)."""
        rng, ends, idle = self.rng, self.ends, self.idle
        started = time.perf_counter()
        for _ in range(decisions):
            self.now += 1.0
            while ends and ends[0][0] <= self.now:
                _, name, taken = heapq.heappop(ends)
                flags = idle[name]
                for g in taken:
                    flags[g] = True
                self.used -= len(taken)
                placer.update(name, flags)
            size = rng.choice(self.sizes)
            chosen = placer.choose(size)
            if chosen is None:
                self.unplaced += 1
                continue
            name, taken = chosen
            flags = idle[name]
            for g in taken:
                flags[g] = False
            self.used += size
            self.placed += 1
            placer.update(name, flags)
            heapq.heappush(ends, (self.now + rng.expovariate(1 / self.hold), name, taken))
        return time.perf_counter() - started

    def sync(self, placer: PoolPlacer) -> None:
        """Tell a fresh placer every node's state."""
        for name, flags in self.idle.items():
            placer.update(name, flags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--slow-decisions", type=int, default=2_000)
    parser.add_argument("--policy", default="backfill", choices=("backfill", "fgd", "bestfit"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--load", type=float, default=0.6, help="target share of GPUs held")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sizes = tuple(args.sizes)
    total = args.nodes * args.gpus_per_node
    stream = Stream(args.nodes, args.gpus_per_node, sizes, args.load, args.seed)
    names, gpus = stream.names, [args.gpus_per_node] * args.nodes

    fast = PoolPlacer(names, gpus, mix=sizes, policy=args.policy)
    warm = int(3 * stream.hold)  # three mean holds: close to the steady load
    stream.run(fast, warm)
    print(
        f"{args.nodes:,} nodes × {args.gpus_per_node} GPUs, policy {args.policy}, sizes {sizes}; "
        f"warmed up over {warm:,} arrivals to {stream.used / total:.0%} of GPUs held, "
        f"{fast.idle_nodes:,} nodes fully idle"
    )

    placed, unplaced = stream.placed, stream.unplaced
    seconds = stream.run(fast, args.decisions)
    print(
        f"fast path: {args.decisions:,} decisions in {seconds:.2f} s = "
        f"{args.decisions / seconds:,.0f} decisions/s (with updates); "
        f"placed {stream.placed - placed:,}, unplaced {stream.unplaced - unplaced:,}; "
        f"{stream.used / total:.0%} of GPUs held at the end"
    )

    if args.slow_decisions:
        slow = PoolPlacer(names, gpus, mix=sizes, policy=args.policy, fast=False)
        stream.sync(slow)
        seconds = stream.run(slow, args.slow_decisions)
        print(
            f"scan (fast=False): {args.slow_decisions:,} decisions in {seconds:.2f} s = "
            f"{args.slow_decisions / seconds:,.0f} decisions/s (with updates)"
        )


if __name__ == "__main__":
    main()
