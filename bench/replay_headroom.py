"""What the owner's p99 allowance costs: spot only, the headroom and surge knobs swept.

    python bench/replay_headroom.py [--clusters 02 06] [--headroom 0.03 0.1 0.2 0.3]
                                    [--surge 4 16] [--seed 7]

Each line is one replay of an ITP cluster (``../shared/traces/itp``, ElasticFlow sizes) with the
default market: the share of the baseline's idle GPU-hours sold, how many of the owner's jobs
waited more than a second, and the growth of its p99 wait over no leasing.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.surplus import NO_LEASING, SPOT_ONLY
from backfill.replay.market import DEFAULT_MARKET
from backfill.replay.report import p99_allowance, p99_growth, sold_share
from backfill.replay.runner import replay

ITP = Path(__file__).resolve().parents[2] / "shared/traces/itp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", nargs="+", default=["02", "06"])
    parser.add_argument("--headroom", type=float, nargs="+", default=[0.03, 0.1, 0.2, 0.3])
    parser.add_argument("--surge", type=float, nargs="+", default=[4.0, 16.0])
    parser.add_argument("--seed", type=int, default=DEFAULT_MARKET.seed)
    args = parser.parse_args()
    from backfill.traces import ITP_NODES, ITP_START, load_itp

    console = Console()
    table = Table(title=f"Spot only, headroom × surge, market seed {args.seed}")
    for column in ("cluster", "headroom", "surge", "sold % of idle", "waited > 1 s", "p99 growth"):
        table.add_column(column, justify="right")
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    market = DEFAULT_MARKET.with_seed(args.seed)
    points = [(h, s) for h in args.headroom for s in args.surge]
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("replays", total=len(args.clusters) * (len(points) + 1))
        for cluster in args.clusters:
            trace = load_itp(ITP / f"cluster{cluster}.csv")
            nodes = tuple(Node(f"n{i:05d}", 8) for i in range(ITP_NODES[f"cluster{cluster}"]))
            fleet = Fleet(name=f"itp{cluster}", pools=(Pool("itp", "GPU", nodes, prices),))
            base = replay(trace, fleet, market, NO_LEASING, start=ITP_START)
            bar.advance(task)
            for headroom, surge in points:
                policy = replace(SPOT_ONLY, headroom=headroom, surge=surge)
                run = replay(trace, fleet, market, policy, start=ITP_START)
                waited = int((run.waits > 1).sum())
                table.add_row(
                    cluster,
                    f"{headroom:.0%} ({policy.headroom_nodes(len(nodes))} nodes)",
                    f"{surge:g}",
                    f"{sold_share(run, base):.1%}",
                    f"{waited:,} of {len(run.waits):,} ({waited / len(run.waits):.2%})",
                    f"{p99_growth(run, base):+,.0f} s / {p99_allowance(base):,.0f} s",
                )
                bar.advance(task)
    console.print(table)


if __name__ == "__main__":
    main()
