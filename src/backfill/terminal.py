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
    """Every pool's GPUs by tier (a bar and counts), idle, down (on nodes out of service), the
    owner's queued GPUs, the spot price and revenue so far."""
    table = Table(expand=True, header_style="bold")
    table.add_column("pool")
    table.add_column("GPUs", justify="right")
    table.add_column("use", no_wrap=True)
    for tier, style in TIER_STYLE.items():
        table.add_column(tier.replace("_", "-"), justify="right", style=style)
    table.add_column("idle", justify="right", style="dim")
    table.add_column("down", justify="right", style="red")
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
            str(pool["down"] or ""),
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
        str(data["down"] or ""),
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


def keys(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(rows)} key(s)")
    for column in ("id", "prefix", "state", "created", "revoked"):
        table.add_column(column)
    for key in rows:
        revoked = key.get("revoked_at")
        table.add_row(
            key["id"],
            key["prefix"] + "…",
            Text("revoked", style="red") if revoked else Text("live", style="green"),
            key["created_at"],
            revoked or "",
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


def prices(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Price book", title_justify="left")
    for column in ("product", "item", "dimension", "price", "per", "from"):
        table.add_column(column, justify="right" if column == "price" else "left")
    for row in rows:
        table.add_row(
            row["product"],
            row["item"],
            row["dimension"],
            row["price"],
            row["unit"],
            row["effective_from"] or "list price",
        )
    return table


def invoices(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="Invoices", title_justify="left")
    for column in ("id", "number", "tenant", "month", "status", "total", "due"):
        table.add_column(column, justify="right" if column in ("total", "due") else "left")
    for row in rows:
        table.add_row(
            row["id"],
            row["number"] or "—",
            row["tenant_name"],
            row["period_start"][:7],
            row["status"],
            f"{Decimal(row['total']):,.2f}",
            f"{Decimal(row['amount_due']):,.2f}",
        )
    return table


def invoice(data: dict[str, Any]) -> Group:
    """One invoice: its lines grouped by product, SLA credits, totals and credit notes."""
    title = (
        f"Invoice {data['number'] or '(draft)'} — {data['tenant_name']}, "
        f"{data['period_start'][:7]} ({data['status']}, {data['currency']})"
    )
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("description")
    table.add_column("quantity", justify="right")
    table.add_column("unit price", justify="right")
    table.add_column("amount", justify="right")
    product = None
    for line in data["lines"]:
        if line["kind"] != "sla_credit" and line["product"] != product:
            product = line["product"]
            table.add_row("", Text(product.upper(), style="bold"), "", "", "")
        quantity = _quantity(line)
        style = "green" if line["kind"] == "sla_credit" else None
        table.add_row(
            str(line["position"]),
            Text(line["description"], style=style or ""),
            quantity,
            "—" if line["kind"] == "sla_credit" else line["unit_price"] or "market",
            Text(f"{Decimal(line['amount']):,.2f}", style=style or ""),
        )
    table.add_section()
    table.add_row("", "Subtotal", "", "", f"{Decimal(data['subtotal']):,.2f}")
    table.add_row("", "SLA credits", "", "", f"-{Decimal(data['sla_credits']):,.2f}")
    table.add_row("", "Tax", "", "", "not computed" if data["tax"] is None else data["tax"])
    table.add_row("", Text("Total", style="bold"), "", "", f"{Decimal(data['total']):,.2f}")
    for note in data["credit_notes"]:
        table.add_row(
            "",
            f"Credit note {note['number']}: {note['reason']}",
            "",
            "",
            f"-{Decimal(note['amount']):,.2f}",
        )
    if data["credit_notes"]:
        table.add_row(
            "", Text("Amount due", style="bold"), "", "", f"{Decimal(data['amount_due']):,.2f}"
        )
    return Group(table)


def _quantity(line: dict[str, Any]) -> str:
    per = {"gpu_hour": 3600, "1M_tokens": 1_000_000, "call": 1}[line["price_unit"]]
    amount = Decimal(line["quantity"]) / per
    unit = {"gpu_hour": "GPU-h", "1M_tokens": "M tokens", "call": "calls"}[line["price_unit"]]
    return f"{amount:,.4f} {unit}".replace(".0000 ", " ")


def revenue(data: dict[str, Any]) -> Group:
    """The owner's books over a window: GPU-hours per pool (capacity, the owner's, sold, idle
    left, the share of the would-be idle sold), revenue per pool, tier and tenant, showback."""
    window = f"{data['since']} → {data['until']}"
    pools = Table(title=f"GPU-hours by pool, {window}", title_justify="left")
    for column in ("pool", "capacity", "internal", "sold", "idle left", "sold share", "revenue $"):
        pools.add_column(column, justify="left" if column == "pool" else "right")
    for row in [*data["pools"], data["totals"]]:
        hours, share = row["gpu_hours"], row["sold_share"]
        if row is data["totals"]:
            pools.add_section()
        pools.add_row(
            row["pool"],
            f"{Decimal(hours['capacity']):,.1f}",
            Text(f"{Decimal(hours['internal']):,.1f}", style=TIER_STYLE["internal"]),
            f"{Decimal(hours['sold']):,.1f}",
            Text(f"{Decimal(hours['idle']):,.1f}", style="dim"),
            "—" if share is None else f"{Decimal(share):.1%}",
            f"{Decimal(row['revenue']):,.2f}",
        )
    earned = Table(title="Revenue by pool, tier and tenant", title_justify="left")
    for column in ("pool", "tier", "tenant", "amount $"):
        earned.add_column(column, justify="right" if column == "amount $" else "left")
    for row in data["revenue"]:
        tier = row["tier"] or row["product"]
        earned.add_row(
            row["pool"] or "—",
            Text(tier, style=TIER_STYLE.get(tier, "")),
            row["tenant_name"] or row["tenant_id"],
            f"{Decimal(row['amount']):,.2f}",
        )
    showback = Table(title="Showback: the owner's work at on-demand list", title_justify="left")
    for column in ("pool", "team", "GPU-hours", "$/GPU-h", "amount $"):
        showback.add_column(column, justify="left" if column in ("pool", "team") else "right")
    for row in data["showback"]:
        showback.add_row(
            row["pool"],
            row["team"],
            f"{Decimal(row['gpu_hours']):,.1f}",
            row["price_per_gpu_hour"],
            f"{Decimal(row['amount']):,.2f}",
        )
    total = f"showback total {Decimal(data['totals']['showback']):,.2f}"
    return Group(pools, earned, showback, Text(total, style="bold"))


def reconciliation(data: dict[str, Any]) -> Group:
    """Metered GPU-seconds against the engine's accounting, and every lease that differs."""
    summary = (
        f"{data['engine']} engine, {data['since']} → {data['until']}: {data['leases']} lease(s), "
        f"metered {data['metered_gpu_seconds']:,} GPU-s, accounted "
        f"{data['engine_gpu_seconds']:,} GPU-s"
    )
    if not data["differences"]:
        return Group(Text(summary), Text("no differences", style="green"))
    table = Table(title=f"{len(data['differences'])} difference(s)", title_justify="left")
    for column in ("lease", "tenant", "metered", "accounted", "diff", "job", "state", "reason"):
        table.add_column(
            column, justify="right" if column in ("metered", "accounted", "diff") else "left"
        )
    for d in data["differences"]:
        table.add_row(
            d["lease_id"],
            d["tenant_id"] or "",
            f"{d['metered_gpu_seconds']:,}",
            f"{d['engine_gpu_seconds']:,}",
            Text(f"{d['gpu_seconds']:+,}", style="red"),
            d["engine_id"] or "",
            d["engine_state"] or "",
            d["reason"],
        )
    return Group(Text(summary), table)
