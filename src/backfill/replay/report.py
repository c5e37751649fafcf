"""The economics report: runs compared on one trace and seed, as JSON and as HTML with plots.

``compare`` replays (a) no leasing, (b) spot only and (c) the full policy, then a sweep of the
headroom and confidence knobs around the chosen policy (the default: spot only) that draws the
frontier: the share of the baseline's idle GPU-hours sold against the growth of the owner's p99
wait.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from backfill.domain.fleet import Fleet
from backfill.domain.surplus import DEFAULT, NO_LEASING, SurplusPolicy
from backfill.domain.tiers import EXTERNAL_TIERS, Tier
from backfill.replay.market import HOUR, Market
from backfill.replay.runner import TIERS, RunResult, replay
from backfill.traces import Trace

SWEEP_HEADROOM = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08)
SWEEP_CONFIDENCE = (0.8, 0.9, 0.99)
WAIT_QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
P99_TOLERANCE = 0.01
"""The owner's p99 wait may grow by 1 % of the baseline's (or 1 s, whichever is larger)."""


@dataclass
class Comparison:
    trace: str
    fleet: Fleet
    market: Market
    baseline: RunResult
    runs: dict[str, RunResult]
    """``spot`` and ``full``."""
    frontier: list[RunResult]
    """The chosen policy's run first, then the sweep around it."""

    @property
    def main(self) -> RunResult:
        """The chosen policy's run."""
        return self.frontier[0]


def compare(
    trace: Trace,
    fleet: Fleet,
    market: Market,
    *,
    start: int,
    policy: SurplusPolicy = DEFAULT,
    sweep: bool = True,
    name: str = "trace",
    progress: Callable[[str, float], None] | None = None,
) -> Comparison:
    """Replay ``trace`` without leasing, with spot only and with the full policy (``policy``'s
    knobs with and without the floor), and the sweep around ``policy``."""

    def run(label: str, p: SurplusPolicy) -> RunResult:
        report = None if progress is None else (lambda share: progress(label, share))
        return replay(trace, fleet, market, p, start=start, progress=report)

    baseline = run("no leasing", NO_LEASING)
    spot = run("spot only", replace(policy, spot=True, floor=False))
    full = run("full policy", replace(policy, spot=True, floor=True))
    frontier = [full if policy.floor else spot]
    if sweep:
        for knobs in sweep_points(policy):
            frontier.append(run(knobs.name(), knobs))
    return Comparison(name, fleet, market, baseline, {"spot": spot, "full": full}, frontier)


def sweep_points(policy: SurplusPolicy) -> list[SurplusPolicy]:
    points = [replace(policy, headroom=h) for h in SWEEP_HEADROOM if h != policy.headroom]
    full = replace(policy, floor=True)  # the confidence moves only what the floor sells
    points += [replace(full, confidence=c) for c in SWEEP_CONFIDENCE if c != policy.confidence]
    return points


# -- figures ---------------------------------------------------------------------------------------


def sold_share(run: RunResult, baseline: RunResult) -> float:
    idle = baseline.idle_gpu_seconds
    return run.sold_gpu_seconds / idle if idle else 0.0


def p99_growth(run: RunResult, baseline: RunResult) -> float:
    return run.wait(0.99) - baseline.wait(0.99)


def p99_allowance(baseline: RunResult) -> float:
    return max(1.0, P99_TOLERANCE * baseline.wait(0.99))


def run_summary(run: RunResult, baseline: RunResult) -> dict[str, Any]:
    sold = {t.value: round(run.gpu_seconds[t] / HOUR, 3) for t in EXTERNAL_TIERS}
    revenue = {t.value: str(run.revenue[t]) for t in EXTERNAL_TIERS}
    out: dict[str, Any] = {
        "policy": run.policy.name(),
        "headroom": run.policy.headroom,
        "confidence": run.policy.confidence,
        "idle_gpu_hours_baseline": round(baseline.idle_gpu_seconds / HOUR, 3),
        "idle_gpu_hours": round(run.idle_gpu_seconds / HOUR, 3),
        "sold_gpu_hours": round(run.sold_gpu_seconds / HOUR, 3),
        "sold_gpu_hours_by_tier": sold,
        "sold_share_of_idle": round(sold_share(run, baseline), 6),
        "internal_gpu_hours": round(run.gpu_seconds[Tier.INTERNAL] / HOUR, 3),
        "revenue": str(run.total_revenue),
        "revenue_by_tier": revenue,
    }
    for label, q in WAIT_QUANTILES.items():
        out[f"internal_wait_{label}"] = round(run.wait(q), 3)
        out[f"internal_wait_{label}_baseline"] = round(baseline.wait(q), 3)
    out["internal_wait_p99_growth"] = round(p99_growth(run, baseline), 3)
    out["internal_wait_p99_allowance"] = round(p99_allowance(baseline), 3)
    out["internal_jobs_waited"] = int((run.waits > 0).sum())
    out["internal_jobs_waited_baseline"] = int((baseline.waits > 0).sum())
    out["requests_asked"] = {t.value: run.asked.get(t, 0) for t in EXTERNAL_TIERS}
    out["requests_refused"] = dict(sorted(run.refused.items()))
    out["leases_sold"] = {
        t.value: sum(1 for lease in run.leases.values() if lease.request.tier is t)
        for t in EXTERNAL_TIERS
    }
    out["spot_notices"] = run.spot_notices
    out["spot_notices_for_headroom"] = run.headroom_notices
    out["spot_stops"] = run.spot_stops
    out["notice_violations"] = run.notice_violations
    out["sla_breaches"] = run.sla_breaches
    out["sla_breach_details"] = run.breaches[:100]
    out["replay_seconds"] = round(run.replay_seconds, 3)
    return out


def to_json(c: Comparison) -> dict[str, Any]:
    """The report's JSON: the chosen policy's figures at the top, every run below."""
    (pool,) = c.fleet.pools
    out: dict[str, Any] = {
        "trace": c.trace,
        "window": {
            "start": _iso(c.baseline.start),
            "end": _iso(c.baseline.end),
            "hours": round(c.baseline.seconds / HOUR, 3),
        },
        "fleet": {
            "pool": pool.key,
            "nodes": len(pool.nodes),
            "gpus": pool.gpus,
            "notice_seconds": pool.notice_seconds,
            "prices": {
                "on_demand": str(pool.prices.on_demand),
                "reserved": str(pool.prices.reserved),
                "spot_floor": str(pool.prices.spot_floor),
            },
        },
        "market_seed": c.market.seed,
    }
    out.update(run_summary(c.main, c.baseline))
    out["replay_seconds_baseline"] = round(c.baseline.replay_seconds, 3)
    out["runs"] = {
        "no_leasing": run_summary(c.baseline, c.baseline),
        **{name: run_summary(run, c.baseline) for name, run in c.runs.items()},
    }
    out["frontier"] = [
        {
            "policy": run.policy.name(),
            "headroom": run.policy.headroom,
            "confidence": run.policy.confidence,
            "sold_share_of_idle": round(sold_share(run, c.baseline), 6),
            "internal_wait_p99_growth": round(p99_growth(run, c.baseline), 3),
            "spot_stops": run.spot_stops,
            "revenue": str(run.total_revenue),
        }
        for run in c.frontier
    ]
    return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


# -- HTML ------------------------------------------------------------------------------------------

COLOURS = {
    Tier.INTERNAL: "#4c72b0",
    Tier.RESERVED: "#8172b3",
    Tier.ON_DEMAND: "#55a868",
    Tier.SPOT: "#dd8452",
    "idle": "#d0d0d0",
}


def write_html(c: Comparison, path: Path) -> None:
    """A self-contained HTML page: the headline figures and six PNG plots, inline."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - the [report] extra is missing
        raise RuntimeError(
            "the HTML report needs matplotlib: pip install 'backfill[report]'"
        ) from None
    data = to_json(c)
    figures = [
        ("Allocation by tier, with leasing (daily mean GPUs)", _allocation(plt, c)),
        ("Idle GPUs before and after leasing (daily mean)", _idle(plt, c)),
        ("Revenue by tier", _revenue(plt, c)),
        ("The owner's wait, with and without leasing", _wait_cdf(plt, c)),
        ("The owner's demand against the forecast band (24 h ahead)", _band(plt, c)),
        ("The frontier: idle GPU-hours sold against the owner's p99 wait", _frontier(plt, c)),
    ]
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(data[k]))}</td></tr>"
        for k in (
            "idle_gpu_hours_baseline",
            "sold_gpu_hours",
            "sold_share_of_idle",
            "revenue",
            "internal_wait_p50_baseline",
            "internal_wait_p50",
            "internal_wait_p99_baseline",
            "internal_wait_p99",
            "internal_wait_p99_allowance",
            "spot_notices",
            "spot_stops",
            "notice_violations",
            "sla_breaches",
            "replay_seconds",
        )
    )
    images = "".join(
        f"<figure><figcaption>{html.escape(title)}</figcaption>"
        f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></figure>'
        for title, png in figures
    )
    title = f"Backfill replay: {c.trace} on {data['fleet']['gpus']:,} GPUs"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:15px system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}
th,td{{padding:2px 12px;text-align:left;border-bottom:1px solid #eee}}
figure{{margin:2em 0}}img{{max-width:100%}}figcaption{{font-weight:600;margin-bottom:.5em}}</style>
</head><body><h1>{html.escape(title)}</h1>
<p>{html.escape(data["policy"])}; window {data["window"]["start"]} to {data["window"]["end"]};
market seed {data["market_seed"]}.</p>
<table>{rows}</table>{images}</body></html>
"""
    path.write_text(page, encoding="utf-8")


def _png(plt: Any, fig: Any) -> str:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _days(run: RunResult) -> tuple[np.ndarray, np.ndarray]:
    """Daily mean GPUs per column of ``run.hourly`` and the day numbers."""
    hours = run.hourly.shape[0]
    days = math.ceil(hours / 24)
    padded = np.zeros((days * 24, run.hourly.shape[1]))
    padded[:hours] = run.hourly
    per_day = padded.reshape(days, 24, -1).sum(axis=1)
    seconds = np.full(days, 24.0 * HOUR)
    seconds[-1] = (hours - (days - 1) * 24) * HOUR
    return np.arange(days), per_day / seconds[:, None]


def _allocation(plt: Any, c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x, gpus = _days(c.main)
    labels = [*(t.value for t in TIERS), "idle"]
    colours = [*(COLOURS[t] for t in TIERS), COLOURS["idle"]]
    ax.stackplot(x, gpus.T, labels=labels, colors=colours, step="post")
    ax.set_xlabel("day")
    ax.set_ylabel("GPUs")
    ax.set_ylim(0, c.main.capacity)
    ax.legend(loc="upper left", ncol=5, fontsize=8)
    return _png(plt, fig)


def _three_runs(c: Comparison) -> list[tuple[str, RunResult, str]]:
    """The compared runs with their labels and line colours."""
    return [
        ("no leasing", c.baseline, "#888888"),
        ("spot only", c.runs["spot"], COLOURS[Tier.SPOT]),
        ("full policy", c.runs["full"], COLOURS[Tier.ON_DEMAND]),
    ]


def _idle(plt: Any, c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(10, 3.2))
    for label, run, colour in _three_runs(c):
        x, gpus = _days(run)
        ax.step(x, gpus[:, -1], where="post", label=label, color=colour)
    ax.set_xlabel("day")
    ax.set_ylabel("idle GPUs")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def _revenue(plt: Any, c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = ["spot only", "full policy"]
    bottom = np.zeros(2)
    for tier in EXTERNAL_TIERS:
        values = np.array([float(r.revenue[tier]) for r in (c.runs["spot"], c.runs["full"])])
        ax.bar(names, values, bottom=bottom, label=tier.value, color=COLOURS[tier])
        bottom += values
    ax.set_ylabel("revenue")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def _wait_cdf(plt: Any, c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for label, run, colour in _three_runs(c):
        waits = np.maximum(run.waits, 1.0)  # log axis: a job that did not wait shows at 1 s
        share = np.arange(1, len(waits) + 1) / max(1, len(waits))
        ax.step(waits, share, where="post", label=label, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, log; 1 = no wait)")
    ax.set_ylabel("share of the owner's jobs")
    ax.set_ylim(0.9, 1.0005)
    ax.legend(fontsize=8, loc="lower right")
    return _png(plt, fig)


def _band(plt: Any, c: Comparison) -> str:
    run = c.runs["full"]  # the run whose floor the forecast drew
    fig, ax = plt.subplots(figsize=(10, 3.4))
    hours = np.arange(len(run.demand)) / 24
    ax.plot(hours, run.demand, lw=0.6, color="#222222", label="owner's demand (hourly peak)")
    ax.fill_between(
        hours,
        run.band[:, 0],
        run.band[:, 1],
        step=None,
        color=COLOURS[Tier.ON_DEMAND],
        alpha=0.35,
        label=f"forecast 24 h ahead, median to q{run.policy.confidence:g}",
    )
    ax.axhline(run.capacity, color="#aa3333", lw=0.8, ls="--", label="capacity")
    ax.set_xlabel("day")
    ax.set_ylabel("GPUs")
    ax.legend(fontsize=8, loc="upper left")
    return _png(plt, fig)


def _frontier(plt: Any, c: Comparison) -> str:
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in c.frontier:
        x = sold_share(run, c.baseline) * 100
        y = p99_growth(run, c.baseline)
        main = run is c.main
        ax.scatter(x, y, color=COLOURS[Tier.SPOT] if not main else "#222222", zorder=3)
        knobs = f"h{run.policy.headroom:.0%}"
        if run.policy.floor:
            knobs += f" c{run.policy.confidence:g}"
        ax.annotate(
            knobs,
            (x, y),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    full = c.runs["full"]
    ax.scatter(
        sold_share(full, c.baseline) * 100,
        p99_growth(full, c.baseline),
        marker="s",
        color=COLOURS[Tier.ON_DEMAND],
        label="full policy",
    )
    ax.axhline(p99_allowance(c.baseline), color="#aa3333", lw=0.8, ls="--", label="allowance")
    ax.axvline(90, color="#888888", lw=0.8, ls=":", label="90 % sold")
    ax.set_xlabel("baseline idle GPU-hours sold (%)")
    ax.set_ylabel("owner p99 wait growth (s)")
    ax.legend(fontsize=8)
    return _png(plt, fig)


def describe(sequence: Sequence[RunResult], baseline: RunResult) -> list[str]:
    """One line per run, for a terminal."""
    return [
        f"{run.policy.name()}: sold {sold_share(run, baseline):.1%} of idle, "
        f"p99 wait {run.wait(0.99):,.0f} s (baseline {baseline.wait(0.99):,.0f} s), "
        f"{run.spot_stops} spot stops, {run.sla_breaches} breaches"
        for run in sequence
    ]
