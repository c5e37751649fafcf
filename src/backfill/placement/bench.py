"""``backfill bench placement``: policies × seeds on an openb trace, with a curve and a plot."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn
from rich.table import Table

from backfill.placement.openb import load_nodes, load_pods
from backfill.placement.policies import POLICIES
from backfill.placement.protocol import RunResult, arrival_order, run


@dataclass
class PolicySummary:
    policy: str
    trace: str
    seeds: list[int]
    runs: list[RunResult]
    seconds: float

    @property
    def alloc_at_100(self) -> float:
        return float(np.mean([r.alloc_at_100 for r in self.runs]))

    @property
    def curve(self) -> list[float | None]:
        stacked = np.vstack([r.curve for r in self.runs])
        with np.errstate(all="ignore"):
            mean = np.nanmean(stacked, axis=0) if np.isfinite(stacked).any() else stacked[0]
        return [None if np.isnan(v) else round(float(v), 4) for v in mean]

    @property
    def decisions_per_second(self) -> float:
        decisions = sum(len(r.arrived) for r in self.runs)
        return decisions / self.seconds if self.seconds else 0.0

    def document(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "trace": self.trace,
            "seeds": self.seeds,
            "alloc_at_100": round(self.alloc_at_100, 4),
            "alloc_at_100_by_seed": [round(r.alloc_at_100, 4) for r in self.runs],
            "alloc_by_arrived": self.curve,
            "placed": [r.placed for r in self.runs],
            "dropped": [r.dropped for r in self.runs],
            "decisions_per_second": round(self.decisions_per_second, 1),
            "seconds": round(self.seconds, 3),
        }


def parse_seeds(text: str) -> list[int]:
    """``42-51`` or ``42,45,47`` (or a mix) as a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, dash, high = part.partition("-")
        if not low.strip().isdigit() or (dash and not high.strip().isdigit()):
            raise ValueError(f"seeds are numbers or ranges like 42-51, not {part!r}")
        start, end = int(low), int(high) if dash else int(low)
        if end < start or end - start > 10_000:
            raise ValueError(f"the range {part!r} is empty or too long")
        seeds.update(range(start, end + 1))
    if not seeds:
        raise ValueError("give at least one seed")
    return sorted(seeds)


def benchmark(
    *, trace: Path, nodes_file: Path, policies: list[str], seeds: list[int], console: Console
) -> list[PolicySummary]:
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICIES)}")
    nodes = load_nodes(nodes_file)
    pods = load_pods(trace)
    steps = sum(len(arrival_order(pods, nodes.total_gpu_milli, s)) for s in seeds)
    summaries = []
    columns = (
        *Progress.get_default_columns()[:1],
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        for name in policies:
            task = progress.add_task(f"{name} on {trace.name}", total=steps)
            started = time.perf_counter()
            runs = []

            def advance(count: int, task: TaskID = task) -> None:
                progress.advance(task, count)

            for seed in seeds:
                runs.append(run(name, POLICIES[name], nodes, pods, seed, progress=advance))
            summaries.append(
                PolicySummary(name, trace.name, seeds, runs, time.perf_counter() - started)
            )
    return summaries


def table(summaries: list[PolicySummary]) -> Table:
    out = Table(title=f"GPU allocation at 100 % arrived ({summaries[0].trace})")
    for column in ("policy", "alloc % at 100", "min", "max", "decisions/s", "seconds"):
        out.add_column(column, justify="left" if column == "policy" else "right")
    for s in summaries:
        values = [r.alloc_at_100 for r in s.runs]
        out.add_row(
            s.policy,
            f"{s.alloc_at_100:.2f}",
            f"{min(values):.2f}",
            f"{max(values):.2f}",
            f"{s.decisions_per_second:,.0f}",
            f"{s.seconds:.1f}",
        )
    return out


def write_json(summaries: list[PolicySummary], path: Path) -> None:
    document = {"results": [s.document() for s in summaries]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def plot(summaries: list[PolicySummary], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (full, zoom) = plt.subplots(1, 2, figsize=(12, 5))
    x = np.arange(len(summaries[0].curve))
    for s in summaries:
        y = np.array([np.nan if v is None else v for v in s.curve])
        label = f"{s.policy} ({s.alloc_at_100:.2f} % at 100)"
        full.plot(x, y, label=label)
        zoom.plot(x, y, label=label)
    full.plot(x, np.minimum(x, 100), color="grey", linestyle=":", label="ideal")
    full.set(
        xlabel="GPU demand arrived (% of cluster)",
        ylabel="GPUs allocated (%)",
        title=f"Allocation as pods arrive: {summaries[0].trace}",
    )
    zoom.set(
        xlim=(80, 130),
        ylim=(75, 100),
        xlabel="GPU demand arrived (%)",
        title="Zoom: 80-130 % arrived",
    )
    zoom.axvline(100, color="grey", linestyle="--", linewidth=0.8)
    for axis in (full, zoom):
        axis.grid(alpha=0.3)
    zoom.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
