"""Every policy × every openb trace × seeds 42-51, next to the published figures.

    python bench/placement_openb.py [--seeds 42-51] [--out bench/out/placement]

Writes one JSON and one plot per trace into --out, and prints a Markdown table of allocation at
100 % arrived (mean of the seeds) with the published FGD-paper figure beside each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console

from backfill.placement import bench
from backfill.placement.policies import POLICIES

OPENB = Path(__file__).resolve().parents[2] / "shared" / "traces" / "openb"
PUBLISHED = {  # ../shared/traces/FGD_PROTOCOL.md: Random, DotProd, GpuClustering, GpuPacking,
    # BestFit, FGD at 100 % arrived, mean of ten seeds
    "default": (86.30, 90.62, 91.65, 91.78, 92.86, 95.23),
    "cpu050": (89.02, 93.03, 93.52, 93.46, 93.56, 95.00),
    "cpu100": (87.44, 91.73, 92.41, 92.49, 93.26, 95.21),
    "gpushare40": (84.86, 89.30, 89.76, 89.77, 91.44, 93.96),
    "gpushare60": (82.81, 86.82, 86.90, 87.15, 89.06, 91.25),
    "gpushare80": (80.62, 84.14, 84.50, 84.65, 86.66, 89.08),
    "gpuspec10": (86.26, 90.17, 91.96, 92.24, 93.10, 94.66),
    "gpuspec20": (85.90, 88.29, 89.11, 89.28, 88.46, 94.66),
    "multigpu20": (86.92, 91.85, 93.34, 93.50, 93.73, 95.53),
    "multigpu30": (86.63, 93.11, 94.55, 94.70, 94.57, 96.36),
    "multigpu40": (85.37, 94.04, 95.35, 95.59, 95.10, 96.91),
}
BASELINES = ("random", "dotprod", "gpuclustering", "gpupacking", "bestfit", "fgd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--out", type=Path, default=Path("bench/out/placement"))
    parser.add_argument("--traces", default="", help="comma-separated names (default: all)")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args()
    console = Console()
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = bench.parse_seeds(args.seeds)
    policies = [p for p in args.policies.split(",") if p]
    wanted = {t for t in args.traces.split(",") if t}
    traces = sorted(OPENB.glob("openb_pod_list_*.csv"))
    rows = []
    started = time.perf_counter()
    for trace in traces:
        name = trace.stem.removeprefix("openb_pod_list_")
        if wanted and name not in wanted:
            continue
        summaries = bench.benchmark(
            trace=trace,
            nodes_file=OPENB / "openb_node_list_gpu_node.csv",
            policies=policies,
            seeds=seeds,
            console=console,
        )
        bench.write_json(summaries, args.out / f"{name}.json")
        bench.plot(summaries, args.out / f"{name}.png")
        published = dict(zip(BASELINES, PUBLISHED.get(name, (None,) * 6), strict=True))
        cells = []
        for s in summaries:
            paper = published.get(s.policy)
            cells.append(f"{s.alloc_at_100:.2f}" + (f" ({paper:.2f})" if paper is not None else ""))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        console.print(rows[-1])
    header = "| trace | " + " | ".join(policies) + " |"
    console.print("\n" + header + "\n|" + "---|" * (len(policies) + 1))
    for row in rows:
        console.print(row)
    console.print(f"\n{time.perf_counter() - started:.0f} s for {len(rows)} traces")


if __name__ == "__main__":
    main()
