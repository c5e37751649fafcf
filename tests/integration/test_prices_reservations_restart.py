"""Spot's max_price, reservations that start later, webhook retries, and a restart."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from backfill.runtime import DEFAULT_MANUAL_START
from tests.conftest import Platform, WebhookReceiver, start_platform

platform_at = contextmanager(start_platform)


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _lease(client: Any, lease_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/leases/{lease_id}").json())


def test_spot_lease_is_noticed_when_the_price_passes_its_max_and_never_billed_above_it(
    database_url: str,
) -> None:
    with platform_at(database_url, price_interval=60.0) as platform:
        tenant = platform.tenant("thrifty")
        pool = {"region": "eu-west", "accelerator": "H100"}  # 4 nodes × 8; 0.95 to 2.99
        lease = tenant.post(
            "/v1/leases", json={"tier": "spot", "gpus": 8, "max_price": "1.20", **pool}
        ).json()
        assert lease["state"] == "running"
        platform.internal(16, "eu-west", "H100")  # two idle nodes: nobody is preempted
        assert _lease(tenant, lease["id"])["state"] == "running"

        platform.advance(60)  # re-pricing: u = 24/32, spot = 0.95 + 2.04 × 0.5625 = 2.0975 → 2.10
        types = {p["id"]: p for p in tenant.get("/v1/instance-types").json()["data"]}
        assert types["eu-west/H100"]["prices"]["spot"] == "2.1"
        noticed = _lease(tenant, lease["id"])
        assert noticed["state"] == "noticed"
        assert noticed["notice"]["reason"] == "spot price above max_price"
        stop_at = _at(noticed["notice"]["stop_at"])
        assert stop_at - _at(noticed["notice"]["notice_at"]) == timedelta(seconds=120)

        platform.advance(120)
        assert _lease(tenant, lease["id"])["state"] == "preempted"
        usage = tenant.get("/v1/usage").json()
        assert [(s["seconds"], s["price_per_gpu_hour"]) for s in usage["segments"]] == [
            (60, "0.95"),
            (120, "1.2"),  # the 2.10 price, capped at the tenant's max_price
        ]
        # 8 × 60 × 0.95 / 3600 = 0.126667; 8 × 120 × 1.20 / 3600 = 0.32
        assert Decimal(usage["cost"]) == Decimal("0.446667")


def test_reserved_lease_starts_at_its_start_taking_spot_back_with_notice(
    platform: Platform,
) -> None:
    tenant = platform.tenant("planner")
    pool = {"region": "us-east", "accelerator": "A100"}  # 6 nodes × 8, reserved 1.39
    spot = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 48, **pool}).json()
    now = _at(spot["started_at"])
    start, end = now + timedelta(hours=1), now + timedelta(hours=2)
    reserved = tenant.post(
        "/v1/leases",
        json={
            "tier": "reserved",
            "gpus": 8,
            "start": start.isoformat(),
            "end": end.isoformat(),
            **pool,
        },
    ).json()
    assert reserved["state"] == "pending"
    assert _at(reserved["start"]) == start

    platform.advance(3600 - 121)
    assert _lease(tenant, spot["id"])["state"] == "running"
    platform.advance(1)  # start − notice: the spot lease in the way gets its notice
    noticed = _lease(tenant, spot["id"])
    assert noticed["state"] == "noticed"
    assert _at(noticed["notice"]["stop_at"]) == start
    platform.advance(120)
    assert _lease(tenant, spot["id"])["state"] == "preempted"
    running = _lease(tenant, reserved["id"])
    assert running["state"] == "running"
    assert _at(running["started_at"]) == start

    platform.advance(3600)
    done = _lease(tenant, reserved["id"])
    assert (done["state"], _at(done["ended_at"])) == ("completed", end)
    usage = tenant.get("/v1/usage", params={"lease_id": reserved["id"]}).json()
    assert [s["seconds"] for s in usage["segments"]] == [3600]
    assert Decimal(usage["cost"]) == Decimal("1.39") * 8  # one hour of 8 GPUs


def test_reserved_capacity_is_sold_only_under_the_floor(platform: Platform) -> None:
    tenant = platform.tenant("greedy")
    pool = {"region": "eu-west", "accelerator": "A100"}  # 32 GPUs, floor 16
    end = (_at(platform.advance(1)) + timedelta(days=1)).isoformat()
    first = tenant.post("/v1/leases", json={"tier": "reserved", "gpus": 16, "end": end, **pool})
    assert first.status_code == 201
    second = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 1, **pool})
    assert second.status_code == 409
    assert "sellable floor" in second.json()["error"]["message"]
    types = {p["id"]: p for p in tenant.get("/v1/instance-types").json()["data"]}
    assert types["eu-west/A100"]["available"] == {"reserved": 0, "on_demand": 0, "spot": 16}


def test_failed_webhooks_are_retried(database_url: str) -> None:
    receiver = WebhookReceiver(failures=1)
    try:
        with platform_at(database_url) as platform:
            tenant = platform.tenant("flaky")
            tenant.put("/v1/webhook", json={"url": receiver.url})
            lease = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 1}).json()
            tenant.delete(f"/v1/leases/{lease['id']}")
            platform.advance(1)
            assert len(receiver.deliveries) == 1  # refused with a 500
            time.sleep(2.1)  # the first retry waits 2 s of wall time
            platform.advance(1)
            assert len(receiver.deliveries) == 2
            first, second = receiver.deliveries
            assert first.body == second.body
            assert second.json()["type"] == "lease.ended"
            platform.advance(1)
            assert len(receiver.deliveries) == 2  # delivered once it succeeded, never again
    finally:
        receiver.close()


def test_a_restart_keeps_running_leases_and_their_billing(database_url: str) -> None:
    with platform_at(database_url) as first:
        tenant = first.tenant("patient")
        key = tenant.headers["Authorization"]
        kept = tenant.post(
            "/v1/leases", json={"tier": "on_demand", "gpus": 8, "region": "us-east"}
        ).json()
        noticed = tenant.post(
            "/v1/leases",
            json={"tier": "spot", "gpus": 8, "region": "eu-west", "accelerator": "A100"},
        ).json()
        first.internal(32, "eu-west", "A100")  # takes the spot lease's node: notice
        assert _lease(tenant, noticed["id"])["state"] == "noticed"
        first.advance(100)

    # Down for 1,000 s of engine time; the spot notice ran out meanwhile.
    with platform_at(database_url, start=DEFAULT_MANUAL_START + 1100) as second:
        again = second.client(key.removeprefix("Bearer "))
        assert _lease(again, kept["id"])["state"] == "running"
        ended = _lease(again, noticed["id"])
        assert ended["state"] == "preempted"
        assert ended["ended_at"] == ended["notice"]["stop_at"]
        second.advance(50)
        stopped = again.delete(f"/v1/leases/{kept['id']}").json()
        assert stopped["state"] == "stopped"
        usage = again.get("/v1/usage").json()
        by_lease = {s["lease_id"]: s["seconds"] for s in usage["segments"]}
        assert by_lease == {kept["id"]: 1150, noticed["id"]: 120}
        # The restored lease holds its GPUs in the new engine, and no more than once.
        assert second.operator.get("/v1/admin/dashboard").json()["by_tier"]["on_demand"] == 0
        again.post("/v1/leases", json={"tier": "on_demand", "gpus": 8, "region": "us-east"})
        assert second.operator.get("/v1/admin/dashboard").json()["by_tier"]["on_demand"] == 8
