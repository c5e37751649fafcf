"""The owner's own trace replayed by the sim engine with no leasing: the baseline of issue 4.

    python bench/replay_itp.py [--cluster 04] [--nodes 128] [--gpus-per-node 8]

Loads ``../shared/traces/itp/clusterNN.csv``, replays every job as internal work (FIFO with the
engine's greedy backfill; multi-node jobs on whole nodes) until the last one ends, and prints the
replay's wall time and the owner's wait percentiles.
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from pathlib import Path

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.sim import ManualClock, SimEngine, TraceOwner
from backfill.traces import load_itp

ITP = Path(__file__).resolve().parents[2] / "shared/traces/itp"
START = 1_614_816_000.0  # 2021-03-04T00:00:00Z, the traces' first day


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cluster", default="04")
    parser.add_argument("--nodes", type=int, default=128)
    parser.add_argument("--gpus-per-node", type=int, default=8)
    args = parser.parse_args()
    trace = load_itp(ITP / f"cluster{args.cluster}.csv")
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    nodes = tuple(Node(f"n{i:04d}", args.gpus_per_node) for i in range(args.nodes))
    fleet = Fleet(name=f"itp{args.cluster}", pools=(Pool("itp", "GPU", nodes, prices),))
    clock = ManualClock(START)
    owner = TraceOwner(trace, start=START, pools=fleet.pools, default_pool="itp/GPU")
    started = time.perf_counter()
    engine = SimEngine(fleet, clock, owner=owner)
    while len(engine.workloads(tier=Tier.INTERNAL)) or clock.now() < START + trace.span:
        clock.advance(3600)
        engine.poll()
    elapsed = time.perf_counter() - started
    waits = sorted(
        w.started_at - w.submitted_at
        for w in engine.workloads(tier=Tier.INTERNAL, active=False)
        if w.started_at is not None
    )

    def pct(q: float) -> float:
        return waits[min(len(waits) - 1, int(q * len(waits)))]

    print(
        f"cluster {args.cluster}: {len(trace):,} jobs on {args.nodes}×{args.gpus_per_node} GPUs, "
        f"replayed in {elapsed:.1f} s; owner wait p50 {pct(0.5):.0f} s, p90 {pct(0.9):.0f} s, "
        f"p99 {pct(0.99):.0f} s; {sum(w > 0 for w in waits):,} jobs waited"
    )


if __name__ == "__main__":
    main()
