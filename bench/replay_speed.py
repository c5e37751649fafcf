"""Replay speed (issue 4): a synthetic 1,000,000-job trace on a 10,000-node fleet, one core.

    OMP_NUM_THREADS=1 python bench/replay_speed.py [--nodes 10000] [--copies 64] [--days N]
        [--runs none,spot,full] [--rate ASKS] [--profile] [--profile-dir DIR] [--seed 7]

The goal: the whole replay in under 60 s on one core. The trace is ITP cluster04 (15,802 jobs,
60 days, 128 × 8 GPUs) superimposed ``--copies`` times (64: ~1.01M jobs), each copy's submit
times shifted by its own seeded offset within ±12 h (clipped to the window, whole seconds), so the
owner's load is about ``copies`` × cluster04's on ``--nodes`` × 8 GPUs (64 on 10,000 nodes: ~40 %
busy). Building the trace is not timed; each replay is (``replay_seconds``, which includes the
market's request generation for the runs that sell).

``--rate`` is market asks per hour per 1,000 GPUs (default: the default market's); at 80,000 GPUs
the default makes several million asks over 60 days, so the generation of the market's requests
alone (``Market.requests``) is timed separately first. ``--days N`` keeps the first N days of the
trace (the market's window follows) for quick runs. ``--profile`` runs each replay under cProfile
and prints the top 30 functions by cumulative and by total time, and the replay loop's split
(owner arrivals, market asks, the engine's timers).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import subprocess
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.surplus import FULL, NO_LEASING, SPOT_ONLY
from backfill.replay.market import DEFAULT_MARKET, Market
from backfill.replay.runner import replay
from backfill.traces import ITP_START, Job, Trace, load_itp

ITP = Path(__file__).resolve().parents[2] / "shared/traces/itp"
CLUSTER = ITP / "cluster04.csv"
NODE_GPUS = 8
SHIFT = 12 * 3600
"""Each copy's submit times move by a seeded offset within ±SHIFT seconds."""
GOAL_SECONDS = 60.0
RUNS = {
    "none": ("no leasing", NO_LEASING),
    "spot": ("spot only", SPOT_ONLY),
    "full": ("full", FULL),
}
DAY = 86_400


def synthetic_trace(copies: int, seed: int, days: float | None = None) -> Trace:
    """``copies`` superimposed copies of cluster04, each shifted by a seeded offset (±12 h)."""
    base = load_itp(CLUSTER)
    submit = np.array([j.submit for j in base.jobs], dtype=np.int64)
    duration = np.array([j.duration for j in base.jobs], dtype=np.int64)
    gpus = np.array([j.gpus for j in base.jobs], dtype=np.int64)
    ids = [j.id for j in base.jobs]
    window = int(submit.max())
    rng = np.random.default_rng(seed)
    offsets = rng.integers(-SHIFT, SHIFT + 1, copies)
    n = len(ids)
    all_submit = np.concatenate([np.clip(submit + off, 0, window) for off in offsets])
    copy_of = np.repeat(np.arange(copies), n)
    row_of = np.tile(np.arange(n), copies)
    keep = np.ones(len(all_submit), dtype=bool)
    if days is not None:
        keep = all_submit < days * DAY
    order = np.flatnonzero(keep)
    order = order[np.argsort(all_submit[order], kind="stable")]  # Trace's sort is then a no-op
    s = all_submit[order].tolist()
    rows = row_of[order].tolist()
    copy_list = copy_of[order].tolist()
    d = duration.tolist()
    g = gpus.tolist()
    jobs = tuple(
        Job(f"{c:03d}-{ids[r]}", float(t), float(d[r]), g[r])
        for t, r, c in zip(s, rows, copy_list, strict=True)
    )
    return Trace(jobs, source=f"cluster04 × {copies} (seed {seed})")


def build_fleet(nodes: int) -> Fleet:
    prices = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
    pool = Pool(
        "synthetic", "GPU", tuple(Node(f"n{i:05d}", NODE_GPUS) for i in range(nodes)), prices
    )
    return Fleet(name=f"synthetic-{nodes}", pools=(pool,))


def build_market(rate: float | None, seed: int) -> Market:
    market = DEFAULT_MARKET.with_seed(seed)
    if rate is None:
        return market
    return replace(market, default=replace(market.default, rate_per_1000_gpus=rate))


def print_profile(console: Console, profile: cProfile.Profile, label: str, top: int) -> None:
    stats = pstats.Stats(profile)
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(top)
        text = out.getvalue()
        # Drop pstats' preamble up to the column header.
        text = text[text.find("   ncalls") :] if "   ncalls" in text else text
        console.rule(f"{label}: top {top} by {order}")
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    # The replay loop's split: the runner's closures, by cumulative time.
    split = Table(title=f"{label}: where the replay loop's time goes (cumulative, overlapping)")
    for column in ("function", "calls", "cumulative s", "own s"):
        split.add_column(column, justify="right")
    wanted = {
        ("runner.py", "sync"): "sync (fire the engine's timers: owner arrivals, ends)",
        ("runner.py", "handle"): "handle (ledger per engine event)",
        ("runner.py", "restore_headroom"): "restore_headroom (per owner arrival)",
        ("runner.py", "sell"): "sell (per market ask)",
        ("runner.py", "decide"): "decide (policy, per ask)",
        ("runner.py", "place"): "place (submit a lease)",
        ("runner.py", "fill"): "fill (per loop step)",
        ("runner.py", "refit"): "refit (daily forecast)",
        ("market.py", "requests"): "Market.requests (generate the asks)",
        ("engine.py", "_owner_arrives"): "engine: owner arrivals",
        ("engine.py", "_schedule"): "engine: _schedule",
        ("engine.py", "_place"): "engine: _place",
        ("engine.py", "_touch"): "engine: _touch",
        ("engine.py", "_emit"): "engine: _emit",
        ("engine.py", "workloads"): "engine: workloads()",
        ("engine.py", "node_holds"): "engine: node_holds()",
    }
    rows = []
    for (file, _line, name), (_cc, calls, own, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        key = (Path(file).name, name)
        if key in wanted:
            rows.append((cum, wanted[key], calls, own))
    for cum, what, calls, own in sorted(rows, reverse=True):
        split.add_row(what, f"{calls:,}", f"{cum:.1f}", f"{own:.1f}")
    console.print(split)


def source_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (read-only git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{head}" + (f" + uncommitted changes in {len(dirty)} src file(s)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10_000, help="8-GPU nodes (default 10,000)")
    parser.add_argument("--copies", type=int, default=64, help="copies of cluster04 (default 64)")
    parser.add_argument("--days", type=float, default=None, help="keep only the first N days")
    parser.add_argument("--runs", default="none,full", help="comma-separated: none, spot, full")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="market asks per hour per 1,000 GPUs"
        f" (default {DEFAULT_MARKET.default.rate_per_1000_gpus:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_MARKET.seed, help="trace and market seed"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile each replay")
    parser.add_argument("--profile-dir", type=Path, default=None, help="also dump .prof files here")
    parser.add_argument("--top", type=int, default=30, help="functions per profile listing")
    parser.add_argument(
        "--skip-market-timing", action="store_true", help="don't time Market.requests on its own"
    )
    args = parser.parse_args()
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    for run in runs:
        if run not in RUNS:
            parser.error(f"unknown run {run!r}: choose from {', '.join(RUNS)}")

    console = Console()
    console.print(f"source: {source_state()}")
    began = time.perf_counter()
    trace = synthetic_trace(args.copies, args.seed, args.days)
    built = time.perf_counter() - began
    busy = trace.gpu_seconds / (args.nodes * NODE_GPUS * max(trace.span, 1))
    console.print(
        f"trace: {len(trace):,} jobs ({args.copies} × cluster04"
        + (f", first {args.days:g} days" if args.days is not None else "")
        + f"), span {trace.span / DAY:.1f} days, {trace.gpu_seconds / 3600:,.0f} GPU-hours "
        f"(~{busy:.0%} of {args.nodes:,} × {NODE_GPUS} GPUs); built in {built:.1f} s (not timed)"
    )
    began = time.perf_counter()
    fleet = build_fleet(args.nodes)
    console.print(
        f"fleet: {args.nodes:,} nodes × {NODE_GPUS} GPUs;"
        f" built in {time.perf_counter() - began:.1f} s"
    )
    market = build_market(args.rate, args.seed)
    rate = market.default.rate_per_1000_gpus
    last_submit = int(np.ceil(trace.jobs[-1].submit)) if len(trace) else 0
    start, end = ITP_START, ITP_START + max(3600, last_submit)

    if not args.skip_market_timing and any(RUNS[r][1].sells for r in runs):
        began = time.perf_counter()
        requests = market.requests(fleet.pools, start, end)
        took = time.perf_counter() - began
        console.print(
            f"market: {len(requests):,} asks at {rate:g}/h per 1,000 GPUs over "
            f"{(end - start) / DAY:.1f} days; Market.requests alone took {took:.1f} s "
            "(inside each selling replay's time too)"
        )
        del requests
        gc.collect()

    table = Table(
        title=f"Replay speed: {args.nodes:,} nodes × {NODE_GPUS} GPUs, one core"
        f" (goal < {GOAL_SECONDS:.0f} s)"
    )
    for column in ("run", "jobs", "market asks", "sold", "wall s", "replay s", "owner p99 wait s"):
        table.add_column(column, justify="right")
    for run in runs:
        label, policy = RUNS[run]
        gc.collect()
        profile = cProfile.Profile() if args.profile else None
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f} %"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(label, total=1.0)

            def tick(share: float, bar: Progress = bar, task: TaskID = task) -> None:
                bar.update(task, completed=share)

            began = time.perf_counter()
            if profile is not None:
                profile.enable()
            result = replay(trace, fleet, market, policy, start=start, progress=tick)
            if profile is not None:
                profile.disable()
            wall = time.perf_counter() - began
        asks = sum(result.asked.values())
        sold = sum(1 for lease in result.leases.values() if lease.started is not None)
        table.add_row(
            label,
            f"{len(trace):,}",
            f"{asks:,}",
            f"{sold:,}",
            f"{wall:.1f}",
            f"{result.replay_seconds:.1f}",
            f"{result.wait(0.99):,.0f}",
        )
        console.print(
            f"{label}: {wall:.1f} s wall ({len(trace):,} jobs, {asks:,} asks"
            f"{', under cProfile' if profile else ''})"
        )
        if profile is not None:
            if args.profile_dir is not None:
                args.profile_dir.mkdir(parents=True, exist_ok=True)
                profile.dump_stats(args.profile_dir / f"{run}.prof")
            print_profile(console, profile, label, args.top)
        del result
    console.print(table)


if __name__ == "__main__":
    main()
