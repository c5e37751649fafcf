"""How fast the sim engine runs the owner's work on a real fleet's shape.

    python bench/sim_day.py [--fleet ../shared/fleets/alibaba_v2026_spot_nodes.csv] [--days 2]

Prints seconds of wall time per simulated day (one core), with the work done.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from backfill.domain.tiers import Tier
from backfill.engines.sim import ManualClock, OwnerWorkload, SimEngine
from backfill.inventory import load_fleet

DEFAULT = Path(__file__).resolve().parents[2] / "shared/fleets/alibaba_v2026_spot_nodes.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fleet", default=str(DEFAULT))
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    console = Console()
    fleet = load_fleet(args.fleet)
    started = time.perf_counter()
    clock = ManualClock(1_795_000_000)
    engine = SimEngine(fleet, clock, owner=OwnerWorkload(seed=args.seed))
    warm = time.perf_counter() - started
    events = 0
    started = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=args.days * 24)
        for _ in range(args.days * 24):
            clock.advance(3600)
            events += len(engine.poll())
            progress.advance(task)
    elapsed = time.perf_counter() - started
    busy = sum(u.by_tier[Tier.INTERNAL] for u in engine.usage())
    console.print(
        f"fleet {fleet.name}: {fleet.node_count} nodes, {fleet.gpus} GPUs; seed {args.seed}\n"
        f"warm start {warm:.2f} s; {args.days} simulated days in {elapsed:.2f} s "
        f"= [bold]{elapsed / args.days:.2f} s per simulated day[/] ({events} engine events, "
        f"{events / elapsed:,.0f} events/s); internal GPUs busy at the end: {busy}\n"
        f"python {platform.python_version()} on {platform.machine()}"
    )


if __name__ == "__main__":
    main()
