"""What the placement policy does to the owner when spot rents its idle GPUs.

    python bench/sim_placement.py [--fleet FILE] [--days 14] [--seed 7] [--spot-load 0.4]
                                  [--policy backfill ...]

The sim engine runs the owner's seeded daily pattern (jobs of 1, 2, 4, 8, 8 and 16 GPUs, 45 % of
the GPUs busy on average) and a spot market: leases of 1, 1, 2, 2, 4 or 8 GPUs (drawn seeded), an
hour on average, arriving as a Poisson stream that asks for --spot-load of each pool's GPUs
(0 to fill every idle GPU, greedily, every five minutes); a lease that does not fit is refused.
An owner job that finds no idle GPUs takes spot GPUs back after the pool's notice. Per placement
policy: spot leases placed and refused, how many were preempted, how long the owner's jobs
waited, and the spot GPU-hours sold. Same seed, same owner jobs and same lease stream for every
policy.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backfill.domain.tiers import Tier
from backfill.engines.base import EventKind, WorkloadSpec
from backfill.engines.sim import ManualClock, OwnerWorkload, SimEngine
from backfill.errors import InsufficientCapacity
from backfill.inventory import demo_fleet_path, load_fleet

STEP = 300.0
SIZES = (1, 1, 2, 2, 4, 8)


MEAN_DURATION = 3600.0


def run(
    fleet_file: Path, days: int, seed: int, spot_load: float, policy: str, progress: Progress
) -> dict[str, float]:
    fleet = load_fleet(fleet_file)
    clock = ManualClock(1_795_000_000)
    engine = SimEngine(fleet, clock, owner=OwnerWorkload(seed=seed), placement=policy)
    rng = random.Random(seed)
    leases = noticed = refused = 0
    spot_gpu_seconds = 0.0
    task = progress.add_task(policy, total=days * 86_400 / STEP)
    for _ in range(int(days * 86_400 / STEP)):
        clock.advance(STEP)
        for event in engine.poll():
            if event.kind is EventKind.NOTICED and event.tier is Tier.SPOT:
                noticed += 1
        for pool in fleet.pools:
            sizes = [min(size, pool.max_node_gpus) for size in SIZES]
            rate = spot_load * pool.gpus / (statistics.fmean(sizes) * MEAN_DURATION)
            arrivals = _poisson(rng, rate * STEP) if spot_load else -1
            while arrivals:
                arrivals -= 1
                gpus = rng.choice(sizes)
                duration = round(max(60.0, rng.expovariate(1 / MEAN_DURATION)))
                spec = WorkloadSpec(
                    id=f"spot-{leases}",
                    tier=Tier.SPOT,
                    pool=pool.key,
                    gpus=gpus,
                    owner="market",
                    duration=duration,
                )
                try:
                    engine.submit(spec)
                except InsufficientCapacity:
                    if arrivals < 0:
                        break  # greedy fill: the pool is full
                    refused += 1
                    continue
                leases += 1
        progress.advance(task)
    waits = []
    for work in engine.workloads(tier=Tier.INTERNAL, active=False):
        if work.started_at is not None:
            waits.append(work.started_at - work.submitted_at)
    for work in engine.workloads(tier=Tier.SPOT, active=False):
        if work.started_at is not None:
            end = work.ended_at if work.ended_at is not None else engine.now()
            spot_gpu_seconds += (end - work.started_at) * work.spec.gpus
    waits.sort()
    return {
        "leases": leases,
        "refused": refused,
        "preempted": noticed,
        "preempted_share": noticed / leases if leases else 0.0,
        "owner_jobs": len(waits),
        "owner_waited": sum(1 for w in waits if w > 0),
        "owner_mean_wait": statistics.fmean(waits) if waits else 0.0,
        "owner_p99_wait": waits[int(0.99 * (len(waits) - 1))] if waits else 0.0,
        "spot_gpu_hours": spot_gpu_seconds / 3600,
    }


def _poisson(rng: random.Random, mean: float) -> int:
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fleet", type=Path, default=demo_fleet_path())
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spot-load", type=float, default=0.4)
    parser.add_argument("--policy", action="append")
    args = parser.parse_args()
    console = Console(width=140)
    policies = args.policy or ["backfill", "fgd", "bestfit", "random"]
    load = f"spot asks {args.spot_load:.0%} of the GPUs" if args.spot_load else "spot fills all"
    table = Table(title=f"{args.fleet.name}, {args.days} days, seed {args.seed}, {load}")
    for column in (
        "policy",
        "spot leases",
        "refused",
        "preempted",
        "owner jobs",
        "waited",
        "mean wait s",
        "p99 wait s",
        "spot GPU-h",
    ):
        table.add_column(column, justify="right")
    with Progress(console=console, transient=True) as progress:
        for policy in policies:
            r = run(args.fleet, args.days, args.seed, args.spot_load, policy, progress)
            table.add_row(
                policy,
                f"{r['leases']:,.0f}",
                f"{r['refused']:,.0f}",
                f"{r['preempted']:,.0f} ({100 * r['preempted_share']:.1f} %)",
                f"{r['owner_jobs']:,.0f}",
                f"{r['owner_waited']:,.0f}",
                f"{r['owner_mean_wait']:.1f}",
                f"{r['owner_p99_wait']:.0f}",
                f"{r['spot_gpu_hours']:,.0f}",
            )
    console.print(table)


if __name__ == "__main__":
    main()
