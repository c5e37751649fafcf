"""The owner's view through the operator's API: revenue per pool, tier and tenant, GPU-hours by
tier with the idle sold and left, showback at list price, and the same figures in /metrics.

Half an hour on the demo fleet (a manual clock): two of the owner's teams, two tenants. Every
figure is checked against a hand computation here: GPU-seconds × price per GPU-hour / 3600.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Platform

WINDOW = 1800
POOLS = {  # the demo fleet: GPUs and on-demand list price per GPU-hour
    "us-east/H100": (48, Decimal("2.99")),
    "us-east/H200": (32, Decimal("3.79")),
    "us-east/A100": (48, Decimal("1.79")),
    "eu-west/H100": (32, Decimal("2.99")),
    "eu-west/A100": (32, Decimal("1.79")),
}
TIERS = ("internal", "reserved", "on_demand", "spot")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _cost(gpu_seconds: int, price: Decimal) -> Decimal:
    return (gpu_seconds * price / 3600).quantize(Decimal("0.000001"))


def _run_half_an_hour(platform: Platform) -> tuple[datetime, dict[str, Any]]:
    """The owner's teams and two tenants over 1,800 s; returns the window's start and what ran."""
    acme, acme_id = platform.tenant_and_id("acme")
    globex, globex_id = platform.tenant_and_id("globex")
    since = _at(platform.advance(1))
    platform.internal(8, "us-east", "H100", duration=900, team="research")
    platform.internal(16, "eu-west", "A100", team="serving")
    us_east, eu_west = (
        {"region": "us-east", "accelerator": "H100"},
        {"region": "eu-west", "accelerator": "A100"},
    )
    spot = acme.post("/v1/leases", json={"tier": "spot", "gpus": 4, **us_east})
    od = acme.post("/v1/leases", json={"tier": "on_demand", "gpus": 2, **eu_west})
    od2 = globex.post("/v1/leases", json={"tier": "on_demand", "gpus": 1, **us_east})
    assert {spot.status_code, od.status_code, od2.status_code} == {201}, spot.text + od.text
    platform.advance(900)
    assert acme.delete(f"/v1/leases/{spot.json()['id']}").status_code == 200
    platform.advance(900)
    (segment,) = [s for s in acme.get("/v1/usage").json()["segments"] if s["tier"] == "spot"]
    return since, {
        "acme": acme_id,
        "globex": globex_id,
        "spot_price": Decimal(segment["price_per_gpu_hour"]),
    }


def test_revenue_idle_and_showback_add_up_to_a_hand_computation(platform: Platform) -> None:
    since, ran = _run_half_an_hour(platform)
    until = since + timedelta(seconds=WINDOW)
    response = platform.operator.get(
        "/v1/admin/revenue", params={"since": since.isoformat(), "until": until.isoformat()}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "revenue_report" and body["engine"] == "sim"
    assert _at(body["since"]) == since and _at(body["until"]) == until
    assert body["window_seconds"] == WINDOW

    # GPU-seconds the engine accounted, by hand: who held what, how long.
    held = {pool: dict.fromkeys(TIERS, 0) for pool in POOLS}
    held["us-east/H100"].update(internal=8 * 900, spot=4 * 900, on_demand=1 * WINDOW)
    held["eu-west/A100"].update(internal=16 * WINDOW, on_demand=2 * WINDOW)
    pools = {p["pool"]: p for p in body["pools"]}
    assert list(pools) == list(POOLS)
    for key, (gpus, price) in POOLS.items():
        seconds = pools[key]["gpu_seconds"]
        capacity = gpus * WINDOW
        used = sum(held[key].values())
        external = used - held[key]["internal"]
        assert {t: seconds[t] for t in TIERS} == held[key], key
        assert seconds["capacity"] == capacity
        assert seconds["idle"] == capacity - used
        assert sum(seconds[t] for t in (*TIERS, "idle")) == capacity  # conservation
        assert seconds["sold"] == external
        assert seconds["would_be_idle"] == capacity - held[key]["internal"]
        share = Decimal(external) / (capacity - held[key]["internal"])
        assert Decimal(pools[key]["sold_share"]) == share.quantize(Decimal("0.0001"))
        assert Decimal(pools[key]["gpu_hours"]["capacity"]) == Decimal(gpus * WINDOW) / 3600
        assert Decimal(pools[key]["on_demand_price"]) == price
        assert Decimal(pools[key]["showback"]) == _cost(held[key]["internal"], price)
    assert pools["us-east/H100"]["sold_share"] == "0.0682"  # 5,400 of 79,200 GPU-seconds
    assert pools["eu-west/A100"]["sold_share"] == "0.1250"  # 3,600 of 28,800

    # Showback: internal GPU-seconds per team at the pool's on-demand list price.
    showback = [
        (s["pool"], s["team"], s["gpu_seconds"], Decimal(s["amount"])) for s in body["showback"]
    ]
    assert showback == [
        ("us-east/H100", "research", 7200, Decimal("5.98")),  # 2 GPU-h × 2.99
        ("eu-west/A100", "serving", 28800, Decimal("14.32")),  # 8 GPU-h × 1.79
    ]

    # Revenue per pool, tier and tenant.
    spot = _cost(4 * 900, ran["spot_price"])
    revenue = {
        (r["pool"], r["tier"], r["tenant_name"]): Decimal(r["amount"]) for r in body["revenue"]
    }
    assert revenue == {
        ("eu-west/A100", "on_demand", "acme"): Decimal("1.79"),  # 2 GPUs × 1,800 s = 1 GPU-h
        ("us-east/H100", "on_demand", "globex"): Decimal("1.495"),  # 0.5 GPU-h × 2.99
        ("us-east/H100", "spot", "acme"): spot,
    }
    assert {r["tenant_id"] for r in body["revenue"]} == {ran["acme"], ran["globex"]}
    assert all(r["product"] == "gpu" for r in body["revenue"])
    assert Decimal(pools["us-east/H100"]["revenue"]) == Decimal("1.495") + spot

    totals = body["totals"]
    assert totals["pool"] == "all" and totals["gpus"] == 192
    assert totals["gpu_seconds"]["capacity"] == 192 * WINDOW
    assert totals["gpu_seconds"]["internal"] == 7200 + 28800
    assert totals["gpu_seconds"]["sold"] == 3600 + 1800 + 3600
    assert Decimal(totals["revenue"]) == Decimal("1.79") + Decimal("1.495") + spot
    assert Decimal(totals["showback"]) == Decimal("20.30")


def test_the_window_defaults_to_the_month_and_is_checked(platform: Platform) -> None:
    now = _at(platform.advance(60))  # the manual clock starts on 2026-01-05
    body = platform.operator.get("/v1/admin/revenue").json()
    assert _at(body["since"]) == datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    assert _at(body["until"]) == now
    later = platform.operator.get(
        "/v1/admin/revenue", params={"until": (now + timedelta(days=3)).isoformat()}
    ).json()
    assert _at(later["until"]) == now  # capped: nothing has run later
    assert later["pools"][0]["gpu_seconds"]["idle"] == 48 * int(
        (now - _at(later["since"])).total_seconds()
    )

    for params, field in (
        ({"since": "2026-01-05T00:00:10Z", "until": "2026-01-05T00:00:10Z"}, "until"),
        ({"since": "2026-01-05T00:00:10Z", "until": "2026-01-05T00:00:00Z"}, "until"),
        ({"since": "2026-02-01T00:00:00Z"}, "since"),  # after the engine's now
    ):
        response = platform.operator.get("/v1/admin/revenue", params=params)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    for params in ({"since": "2026-01-01T00:00:00"}, {"until": "soon"}):  # no zone; not a time
        assert platform.operator.get("/v1/admin/revenue", params=params).status_code == 422


def test_revenue_and_metrics_are_for_the_operator_only(platform: Platform) -> None:
    tenant = platform.tenant("acme")
    assert tenant.get("/v1/admin/revenue").status_code == 403
    assert tenant.get("/metrics").status_code == 403
    assert platform.client(None).get("/metrics").status_code == 401


def test_metrics_parse_and_carry_the_fleet_now_and_the_month(platform: Platform) -> None:
    _, ran = _run_half_an_hour(platform)
    response = platform.operator.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    # Now: the research job and the spot lease have ended; the rest still run.
    assert value("backfill_gpus", pool="us-east/H100", state="on_demand") == 1
    assert value("backfill_gpus", pool="us-east/H100", state="internal") == 0
    assert value("backfill_gpus", pool="us-east/H100", state="spot") == 0
    assert value("backfill_gpus", pool="us-east/H100", state="idle") == 47
    assert value("backfill_gpus", pool="eu-west/A100", state="internal") == 16
    assert value("backfill_gpus", pool="eu-west/A100", state="on_demand") == 2
    for pool, (gpus, _) in POOLS.items():
        states = ("internal", "reserved", "on_demand", "spot", "idle", "claimed", "down")
        assert value("backfill_gpus", pool=pool, state="down") == 0
        assert sum(value("backfill_gpus", pool=pool, state=s) for s in states) == gpus
    assert value("backfill_spot_price", pool="us-east/H100") == float(ran["spot_price"])
    assert value("backfill_tenants") == 2
    assert value("backfill_leases", tier="spot", state="stopped") == 1
    assert value("backfill_leases", tier="on_demand", state="running") == 2

    # The month so far (the clock started on 2026-01-05: all of it is this half hour).
    revenue = float(_cost(4 * 900, ran["spot_price"]))
    assert value("backfill_revenue_total", pool="us-east/H100", tier="spot") == revenue
    assert value("backfill_revenue_total", pool="us-east/H100", tier="on_demand") == 1.495
    assert value("backfill_revenue_total", pool="eu-west/A100", tier="on_demand") == 1.79
    assert value("backfill_gpu_seconds_total", pool="us-east/H100", tier="internal") == 7200
    assert value("backfill_gpu_seconds_total", pool="eu-west/A100", tier="internal") == 28800
    assert value("backfill_gpu_seconds_total", pool="us-east/H100", tier="spot") == 3600
    assert value("backfill_gpu_seconds_total", pool="us-east/A100", tier="internal") == 0
