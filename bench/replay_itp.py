"""Issue 4's goal, measured: leasing an ITP cluster's idle GPUs with the default policy.

    python bench/replay_itp.py [--clusters 04 02 06 07] [--seed 7] [--sweep]

For each cluster (``../shared/traces/itp/clusterNN.csv`` on the ElasticFlow sizes: 04 and 07 on
128 × 8 GPUs, 02 and 06 on 64 × 8) it replays (a) no leasing, (b) spot only and (c) the full
policy with the default market, and prints what share of the baseline's idle GPU-hours was sold,
the owner's p99 wait against its allowance (1 % of the baseline's or 1 s), spot stops, notice
violations, SLA breaches and the replay's wall time. ``--sweep`` adds the headroom and confidence
sweep (the frontier). ``--json DIR`` writes each cluster's report there.
"""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.replay.market import DEFAULT_MARKET
from backfill.replay.report import compare, p99_allowance, p99_growth, sold_share, to_json

ITP = Path(__file__).resolve().parents[2] / "shared/traces/itp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clusters", nargs="+", default=["04", "02", "06", "07"])
    parser.add_argument("--seed", type=int, default=DEFAULT_MARKET.seed)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="Write reports to this folder.")
    args = parser.parse_args()
    from backfill.traces import ITP_NODES, ITP_START, load_itp

    console = Console()
    table = Table(title=f"ITP replays, market seed {args.seed}")
    for column in (
        "cluster",
        "run",
        "sold % of idle",
        "p99 wait (base)",
        "p99 growth / allowance",
        "jobs waited (base)",
        "spot stops",
        "violations",
        "breaches",
        "revenue",
        "replay s",
    ):
        table.add_column(column, justify="right")
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    market = DEFAULT_MARKET.with_seed(args.seed)
    for cluster in args.clusters:
        trace = load_itp(ITP / f"cluster{cluster}.csv")
        nodes = tuple(Node(f"n{i:05d}", 8) for i in range(ITP_NODES[f"cluster{cluster}"]))
        fleet = Fleet(name=f"itp{cluster}", pools=(Pool("itp", "GPU", nodes, prices),))
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"cluster {cluster}", total=None)
            result = compare(
                trace,
                fleet,
                market,
                start=ITP_START,
                sweep=args.sweep,
                name=f"cluster{cluster}",
                progress=lambda label, share, task=task, cluster=cluster: bar.update(
                    task, description=f"{cluster} {label}"
                ),
            )
        base = result.baseline
        for label, run in (("no leasing", base), *result.runs.items(), *(
            (f"h{r.policy.headroom:.0%} c{r.policy.confidence:g}", r) for r in result.frontier[1:]
        )):  # fmt: skip
            table.add_row(
                cluster,
                label,
                f"{sold_share(run, base):.1%}",
                f"{run.wait(0.99):,.0f} ({base.wait(0.99):,.0f})",
                f"{p99_growth(run, base):+,.0f} / {p99_allowance(base):,.0f}",
                f"{(run.waits > 0).sum():,} ({(base.waits > 0).sum():,})",
                f"{run.spot_stops:,}",
                f"{run.notice_violations}",
                f"{run.sla_breaches}",
                f"{run.total_revenue:,.0f}",
                f"{run.replay_seconds:.1f}",
            )
        if args.json is not None:
            args.json.mkdir(parents=True, exist_ok=True)
            path = args.json / f"cluster{cluster}.json"
            path.write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")
    console.print(table)


if __name__ == "__main__":
    main()
