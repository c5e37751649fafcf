"""Held-out quantile forecasts of an owner's hourly peak GPU demand, on the ITP traces.

    python bench/forecast_itp.py [--clusters 02 04 06 07] [--train-days 42] [--trend] [--no-season]

For each cluster: the demand series is the exact hourly *peak* of the owner's intrinsic demand
(every job running from its submission for its duration, no queueing). The first day is
warm-up (jobs started before collection are missing; it runs at a fraction of the later load),
the model is fitted once on days 2 .. ``--train-days`` and every origin in the remaining days is
scored: ``window_max`` over 1 h, 24 h and 168 h and ``value`` at lead 24 h, at q = 0.5, 0.9,
0.95 and 0.99, by pinball loss (GPUs, lower is better) and coverage (share of outcomes ≤ the
forecast; the target is q). Baselines: *persistence* (demand now + the training quantile of
target − demand now) and *climatology* (the training quantile of the target itself).
``--trend`` adds the model with a linear time term, ``--no-season`` the model without its
hour-of-week term (for the decisions recorded in ``backfill.domain.forecast``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from backfill.domain import forecast
from backfill.traces import ITP_NODES, ITP_START, Trace, load_itp

ITP = Path(__file__).resolve().parents[2] / "shared/traces/itp"
QS = (0.5, 0.9, 0.95, 0.99)
WARMUP = 24  # hours left out at the start (ramp-up)
TARGETS = (("max", 1), ("max", 24), ("max", 168), ("value", 24))

Floats = npt.NDArray[np.float64]


def hourly_peak(trace: Trace, hours: int | None = None) -> Floats:
    """Peak GPUs in use within each hour, every job running over [submit, submit + duration)."""
    submit = np.fromiter((j.submit for j in trace.jobs), np.float64, len(trace.jobs))
    duration = np.fromiter((j.duration for j in trace.jobs), np.float64, len(trace.jobs))
    gpus = np.fromiter((j.gpus for j in trace.jobs), np.float64, len(trace.jobs))
    times = np.concatenate((submit, submit + duration))
    delta = np.concatenate((gpus, -gpus))
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(delta[order])
    settled = np.append(times[1:] != times[:-1], True)  # the level once an instant's events are in
    times, level = times[settled], level[settled]
    n = hours if hours is not None else int(np.ceil(times[-1] / 3600))
    upto = np.searchsorted(times, 3600.0 * np.arange(n), side="right")  # events at or before 3600 h
    peak = np.where(upto > 0, level[np.maximum(upto - 1, 0)], 0.0)  # the level as hour h starts
    hour = (times // 3600).astype(np.int64)
    inside = hour < n
    np.maximum.at(peak, hour[inside], level[inside])  # and every level reached within it
    return peak


def targets(y: Floats, kind: str, h: int) -> Floats:
    """Per origin t (0 .. len(y)-1-h): max(y[t+1 .. t+h]) or y[t+h]."""
    if kind == "max":
        maxima: Floats = np.lib.stride_tricks.sliding_window_view(y[1:], h).max(axis=1)
        return maxima
    return y[h:]


def pinball(outcome: Floats, fc: Floats, q: float) -> float:
    d = outcome - fc
    return float(np.mean(np.maximum(q * d, (q - 1) * d)))


@dataclass
class Scores:
    pinball: list[float]
    cover: list[float]


def score(outcome: Floats, fcs: list[Floats]) -> Scores:
    return Scores(
        [pinball(outcome, f, q) for f, q in zip(fcs, QS, strict=True)],
        [float(np.mean(outcome <= f)) for f in fcs],
    )


def evaluate(
    y: Floats, train_end: int, fit: Callable[[Floats], forecast.DemandForecast]
) -> dict[tuple[str, int], dict[str, Scores]]:
    """Scores per target and method; ``y[WARMUP:train_end]`` is the training history."""
    train = y[WARMUP:train_end]
    model = fit(train)
    n, out = len(y), {}
    for kind, h in TARGETS:
        hours = range(train_end, n - h)
        origins = np.array(hours)
        outcome = targets(y, kind, h)[train_end:]
        # forecast hours count from the training series' start, y[WARMUP]
        if kind == "max":
            ours = [
                np.array([model.window_max(y[: o + 1], o - WARMUP, h, q) for o in hours])
                for q in QS
            ]
        else:
            ours = [
                np.array([model.value(y[: o + 1], o - WARMUP, h, q) for o in hours]) for q in QS
            ]
        past = targets(train, kind, h)
        jump = past - train[: len(past)]
        persistence = [np.maximum(0.0, y[origins] + np.quantile(jump, q)) for q in QS]
        climatology = [np.full(len(origins), np.quantile(past, q)) for q in QS]
        out[kind, h] = {
            "model": score(outcome, ours),
            "persistence": score(outcome, persistence),
            "climatology": score(outcome, climatology),
        }
    return out


def timings(train: Floats) -> tuple[float, float]:
    """Median fit time (ms) and mean ``window_max`` time (µs) on this training series."""
    t0 = ITP_START + WARMUP * 3600
    fits = []
    for _ in range(15):
        t = time.perf_counter()
        model = forecast.fit(train, t0)
        fits.append(time.perf_counter() - t)
    calls = 20_000
    recent, origin = train, len(train) - 1
    t = time.perf_counter()
    for i in range(calls):
        model.window_max(recent, origin, 1 + i % 168, 0.95)
    return statistics.median(fits) * 1e3, (time.perf_counter() - t) / calls * 1e6


def label(kind: str, h: int) -> str:
    return f"max {h} h" if kind == "max" else f"value +{h} h"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--clusters", nargs="+", default=["02", "04", "06", "07"])
    parser.add_argument("--train-days", type=int, default=42)
    parser.add_argument("--trend", action="store_true", help="also score the model with a trend")
    parser.add_argument(
        "--no-season", action="store_true", help="also score the model without seasonality"
    )
    args = parser.parse_args()
    console = Console(width=130)
    started = time.perf_counter()
    t0 = ITP_START + WARMUP * 3600
    variants: dict[str, Callable[[Floats], forecast.DemandForecast]] = {
        "model": lambda train: forecast.fit(train, t0)
    }
    if args.trend:
        variants["+trend"] = lambda train: forecast.fit(train, t0, trend=True)
    if args.no_season:
        variants["-season"] = lambda train: forecast.fit(train, t0, seasonal=False)
    summaries = []
    for cluster in args.clusters:
        y = hourly_peak(load_itp(ITP / f"cluster{cluster}.csv"))
        train_end = args.train_days * 24
        fit_ms, query_us = timings(y[WARMUP:train_end])
        results = {name: evaluate(y, train_end, fit) for name, fit in variants.items()}
        gpus = 8 * ITP_NODES.get(f"cluster{cluster}", 0)
        table = Table(
            title=(
                f"cluster {cluster} ({gpus:,} GPUs): hourly peak demand, mean {y.mean():.0f}, "
                f"train hours {WARMUP}-{train_end - 1}, test {train_end}-{len(y) - 1}; "
                f"fit {fit_ms:.1f} ms, window_max {query_us:.1f} µs/call"
            ),
            title_justify="left",
        )
        table.add_column("target")
        table.add_column("method")
        table.add_column("origins", justify="right")
        table.add_column("pinball .5/.9/.95/.99 (GPUs)", justify="right")
        table.add_column("cover .5/.9/.95/.99", justify="right")
        for kind, h in TARGETS:
            rows = {name: res[kind, h]["model"] for name, res in results.items()}
            rows |= {k: v for k, v in results["model"][kind, h].items() if k != "model"}
            for method, s in rows.items():
                table.add_row(
                    label(kind, h),
                    method,
                    str(len(y) - h - train_end),
                    "/".join(f"{p:.1f}" for p in s.pinball),
                    "/".join(f"{c:.2f}".lstrip("0") for c in s.cover),
                )
            table.add_section()
        console.print(table)
        summaries.append(summary(cluster, gpus, fit_ms, query_us, results["model"]))
    console.print(
        "Summary rows (q = 0.9 pinball in GPUs, model / persistence / climatology; cover):"
    )
    for line in summaries:
        print(line)
    console.print(f"total {time.perf_counter() - started:.1f} s")


def summary(
    cluster: str,
    gpus: int,
    fit_ms: float,
    query_us: float,
    res: dict[tuple[str, int], dict[str, Scores]],
) -> str:
    cells = []
    for kind, h in TARGETS:
        m, p, c = (res[kind, h][k] for k in ("model", "persistence", "climatology"))
        cells.append(
            f"{label(kind, h)} {m.pinball[1]:.1f}/{p.pinball[1]:.1f}/{c.pinball[1]:.1f} "
            f"cover {m.cover[1]:.2f}"
        )
    return (
        f"| {cluster} | {gpus:,} | {fit_ms:.1f} ms | {query_us:.1f} µs | "
        + " | ".join(cells)
        + " |"
    )


if __name__ == "__main__":
    main()
