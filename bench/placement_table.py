"""The Markdown table of bench/placement_openb.py's JSON results, next to the published figures.

    python bench/placement_table.py bench/out/placement [more result folders…]

Results for the same trace in several folders are merged (later folders add policies).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from placement_openb import BASELINES, PUBLISHED

NAMES = {
    "random": "Random",
    "dotprod": "DotProd",
    "gpuclustering": "GpuClustering",
    "gpupacking": "GpuPacking",
    "bestfit": "BestFit",
    "fgd": "FGD",
    "backfill": "**Backfill**",
}


def main() -> None:
    results: dict[str, dict[str, dict[str, object]]] = {}
    for folder in map(Path, sys.argv[1:]):
        for path in sorted(folder.glob("*.json")):
            for result in json.loads(path.read_text())["results"]:
                results.setdefault(path.stem, {})[str(result["policy"])] = result
    order = [p for p in NAMES if any(p in r for r in results.values())]
    print("| trace | " + " | ".join(NAMES[p] for p in order) + " | Backfill − FGD |")
    print("|---|" + "---|" * (len(order) + 1))
    worst = 0.0
    for trace, by_policy in results.items():
        published = dict(zip(BASELINES, PUBLISHED.get(trace, (None,) * 6), strict=True))
        cells = []
        for policy in order:
            value = float(by_policy[policy]["alloc_at_100"])  # type: ignore[arg-type]
            paper = published.get(policy)
            if paper is not None:
                worst = max(worst, abs(value - paper))
            cells.append(f"{value:.2f}" + (f" ({paper:.2f})" if paper is not None else ""))
        ours, fgd = by_policy.get("backfill"), by_policy.get("fgd")
        margin = ""
        if ours and fgd:
            a, b = ours["alloc_at_100_by_seed"], fgd["alloc_at_100_by_seed"]
            wins = sum(1 for x, y in zip(a, b, strict=True) if x >= y)  # type: ignore[call-overload]
            delta = float(ours["alloc_at_100"]) - float(fgd["alloc_at_100"])  # type: ignore[arg-type]
            margin = f"{delta:+.2f} ({wins}/{len(a)} seeds ≥)"  # type: ignore[arg-type]
        print(f"| {trace} | " + " | ".join(cells) + f" | {margin} |")
    print(f"\nlargest |ours − published| over the baselines: {worst:.2f} points")


if __name__ == "__main__":
    main()
