"""What the terminal shows: Rich renderings of the API's documents."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

TIER_STYLE = {
    "internal": "bold blue",
    "reserved": "magenta",
    "on_demand": "green",
    "spot": "yellow",
}


def _bar(pool: dict[str, Any], width: int = 24) -> Text:
    """A stacked bar of the pool's GPUs by tier; idle is dim dots."""
    total = max(1, int(pool["gpus"]))
    text = Text()
    used = 0
    for tier, style in TIER_STYLE.items():
        cells = round(width * int(pool["by_tier"].get(tier, 0)) / total)
        cells = min(cells, width - used)
        text.append("█" * cells, style=style)
        used += cells
    text.append("·" * (width - used), style="dim")
    return text


def dashboard(data: dict[str, Any]) -> Group:
    """Every pool's GPUs by tier (a bar and counts), idle, the owner's queued GPUs, the spot
    price and revenue so far."""
    table = Table(expand=True, header_style="bold")
    table.add_column("pool")
    table.add_column("GPUs", justify="right")
    table.add_column("use", no_wrap=True)
    for tier, style in TIER_STYLE.items():
        table.add_column(tier.replace("_", "-"), justify="right", style=style)
    table.add_column("idle", justify="right", style="dim")
    table.add_column("queued", justify="right", style="red")
    table.add_column("spot $/GPU-h", justify="right")
    table.add_column("revenue $", justify="right")
    for pool in data["pools"]:
        table.add_row(
            pool["id"],
            str(pool["gpus"]),
            _bar(pool),
            *(str(pool["by_tier"].get(tier, 0)) for tier in TIER_STYLE),
            str(pool["idle"]),
            str(pool["queued_gpus"] or ""),
            f"{Decimal(pool['prices']['spot']):.2f}",
            f"{Decimal(pool['revenue']):,.2f}",
        )
    totals = data["by_tier"]
    table.add_section()
    table.add_row(
        "all",
        str(data["gpus"]),
        "",
        *(str(totals.get(tier, 0)) for tier in TIER_STYLE),
        str(data["idle"]),
        str(sum(pool["queued_gpus"] for pool in data["pools"]) or ""),
        "",
        f"{Decimal(data['revenue']):,.2f}",
        style="bold",
    )
    when = str(data["now"]).replace("T", " ").replace("Z", " UTC")
    title = f"Backfill · {data['engine']} engine · {when} · {data['tenants']} tenant(s)"
    return Group(Panel(table, title=title, border_style="cyan"))


def fleet(data: dict[str, Any]) -> Table:
    table = Table(title=f"fleet {data['name']}: {data['nodes']} nodes, {data['gpus']} GPUs")
    for column in ("pool", "nodes", "GPUs/node", "GPUs", "floor", "notice s"):
        table.add_column(column, justify="right" if column != "pool" else "left")
    for tier in ("reserved", "on_demand", "spot"):
        table.add_column(f"{tier} $/h", justify="right")
    for pool in data["pools"]:
        table.add_row(
            pool["id"],
            str(pool["nodes"]),
            str(pool["gpus_per_node"]),
            str(pool["gpus"]),
            str(pool["sellable_floor"]),
            str(pool["notice_seconds"]),
            *(str(pool["prices"][t]) for t in ("reserved", "on_demand", "spot")),
        )
    return table


def leases(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} lease(s)")
    for column in ("id", "tier", "pool", "GPUs", "state", "started", "ended", "notice stop"):
        table.add_column(column)
    for lease in rows:
        notice = lease.get("notice") or {}
        table.add_row(
            lease["id"],
            Text(lease["tier"], style=TIER_STYLE.get(lease["tier"], "")),
            lease["pool"],
            str(lease["gpus"]),
            lease["state"],
            lease.get("started_at") or "",
            lease.get("ended_at") or "",
            notice.get("stop_at") or "",
        )
    return table


def usage(data: dict[str, Any]) -> Table:
    table = Table(
        title=f"usage as of {data['as_of']}: {data['cost']} for {data['gpu_seconds']} GPU-s"
    )
    for column in ("lease", "pool", "tier", "GPUs", "$/GPU-h", "from", "to", "seconds", "cost"):
        table.add_column(column)
    for s in data["segments"]:
        table.add_row(
            s["lease_id"],
            s["pool"],
            s["tier"],
            str(s["gpus"]),
            str(s["price_per_gpu_hour"]),
            s["started_at"],
            s["ended_at"] or "(running)",
            str(s["seconds"]),
            str(s["cost"]),
        )
    return table


def internal_jobs(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} internal job(s)")
    for column in ("id", "team", "pool", "GPUs", "state", "submitted", "started"):
        table.add_column(column)
    for job in rows:
        table.add_row(
            job["id"],
            job["team"],
            job["pool"],
            str(job["gpus"]),
            job["state"],
            job["submitted_at"],
            job.get("started_at") or "",
        )
    return table


def internal_jobs_line(job: dict[str, Any]) -> Table:
    return internal_jobs([job])
