"""The core promise, through the HTTP API on both databases: internal work takes spot GPUs back
with the full notice and a signed webhook; on-demand and reserved are never touched; usage is
billed to the second and stops at the stop."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from backfill.services.webhooks import SIGNATURE_HEADER, verify_signature
from tests.conftest import Platform, WebhookReceiver


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_internal_work_takes_spot_back_with_notice_and_leaves_other_tiers(
    platform: Platform, webhook_receiver: WebhookReceiver
) -> None:
    tenant = platform.tenant("acme")
    secret = tenant.put("/v1/webhook", json={"url": webhook_receiver.url}).json()["secret"]

    # us-east/H100 is 6 nodes × 8 GPUs, sellable floor 24: 16 on-demand + 8 reserved fit under it.
    pool = {"region": "us-east", "accelerator": "H100"}
    on_demand = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 16, **pool}).json()
    now = _at(platform.advance(1))
    reserved = tenant.post(
        "/v1/leases",
        json={"tier": "reserved", "gpus": 8, "end": (now + timedelta(days=7)).isoformat(), **pool},
    ).json()
    # 3 nodes are idle: 32 GPUs (4 whole nodes) cannot be had, and nothing changes.
    refused = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 32, **pool})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "insufficient_capacity"
    assert len(tenant.get("/v1/leases").json()["data"]) == 2
    spot = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 16, **pool}).json()
    assert [lease["state"] for lease in (on_demand, reserved, spot)] == ["running"] * 3
    spot_price = Decimal(
        next(
            p for p in tenant.get("/v1/instance-types").json()["data"] if p["id"] == "us-east/H100"
        )["prices"]["spot"]
    )

    platform.advance(600)  # ten minutes of everyone running
    # The owner's teams need 24 GPUs: 8 idle + the spot lease's 16 (never on-demand/reserved).
    job = platform.internal(24, "us-east", "H100", duration=3600)
    assert job["state"] == "pending"

    noticed = tenant.get(f"/v1/leases/{spot['id']}").json()
    assert noticed["state"] == "noticed"
    notice = noticed["notice"]
    assert _at(notice["stop_at"]) - _at(notice["notice_at"]) == timedelta(seconds=120)
    assert tenant.get(f"/v1/leases/{spot['id']}/notice").json() == notice

    # The webhook arrived, signed with the tenant's secret, carrying the notice.
    platform.advance(1)
    hooks = [d for d in webhook_receiver.deliveries if d.json()["type"] == "lease.notice"]
    assert len(hooks) == 1
    delivery = hooks[0]
    assert verify_signature(secret, delivery.body, delivery.headers[SIGNATURE_HEADER])
    assert not verify_signature("whsec_wrong", delivery.body, delivery.headers[SIGNATURE_HEADER])
    assert delivery.json()["data"]["id"] == spot["id"]
    assert delivery.json()["data"]["notice"] == notice

    # Still running one second before stop_at; stopped exactly at stop_at.
    platform.advance(118)
    assert tenant.get(f"/v1/leases/{spot['id']}").json()["state"] == "noticed"
    platform.advance(1)
    stopped = tenant.get(f"/v1/leases/{spot['id']}").json()
    assert stopped["state"] == "preempted"
    assert stopped["ended_at"] == notice["stop_at"]
    jobs = {j["id"]: j for j in platform.operator.get("/v1/admin/internal-jobs").json()}
    assert jobs[job["id"]]["state"] == "running"
    assert jobs[job["id"]]["started_at"] == notice["stop_at"]
    platform.advance(1)
    ended = [d for d in webhook_receiver.deliveries if d.json()["type"] == "lease.ended"]
    assert [d.json()["data"]["state"] for d in ended] == ["preempted"]

    # On-demand and reserved were never touched.
    for lease in (on_demand, reserved):
        current = tenant.get(f"/v1/leases/{lease['id']}").json()
        assert current["state"] == "running"
        assert current["notice"] is None

    # Billing: the spot lease ran from its start to stop_at, to the second, and no further.
    platform.advance(3600)
    usage = tenant.get("/v1/usage", params={"lease_id": spot["id"]}).json()
    seconds = int((_at(notice["stop_at"]) - _at(spot["started_at"])).total_seconds())
    assert seconds == 600 + 120
    assert sum(s["seconds"] for s in usage["segments"]) == seconds
    assert all(s["ended_at"] is not None for s in usage["segments"])
    assert usage["segments"][0]["started_at"] == spot["started_at"]
    assert usage["segments"][-1]["ended_at"] == notice["stop_at"]
    expected = sum(
        (Decimal(s["price_per_gpu_hour"]) * 16 * s["seconds"] / 3600).quantize(Decimal("0.000001"))
        for s in usage["segments"]
    )
    assert Decimal(usage["cost"]) == expected
    assert Decimal(usage["segments"][0]["price_per_gpu_hour"]) == spot_price
    # 16 GPUs × 720 s at the spot price at the start (one hour between re-pricings here).
    assert Decimal(usage["cost"]) == (spot_price * 16 * 720 / 3600).quantize(Decimal("0.000001"))

    # The on-demand lease keeps accruing: 1 + 600 + 1 + 118 + 1 + 1 + 3600 seconds so far.
    od_usage = tenant.get("/v1/usage", params={"lease_id": on_demand["id"]}).json()
    assert od_usage["segments"][0]["ended_at"] is None
    assert od_usage["segments"][0]["seconds"] == 1 + 600 + 1 + 118 + 1 + 1 + 3600
    assert Decimal(od_usage["cost"]) == (Decimal("2.99") * 16 * 4322 / 3600).quantize(
        Decimal("0.000001")
    )


def test_tenant_stop_ends_billing_at_the_stop(platform: Platform) -> None:
    tenant = platform.tenant("beta")
    lease = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 2}).json()
    platform.advance(90)
    stopped = tenant.delete(f"/v1/leases/{lease['id']}")
    assert stopped.status_code == 200
    assert stopped.json()["state"] == "stopped"
    platform.advance(1000)
    again = tenant.delete(f"/v1/leases/{lease['id']}")  # idempotent
    assert again.json() == stopped.json()
    usage = tenant.get("/v1/usage").json()
    assert [s["seconds"] for s in usage["segments"]] == [90]
    price = Decimal(usage["segments"][0]["price_per_gpu_hour"])
    assert Decimal(usage["cost"]) == (price * 2 * 90 / 3600).quantize(Decimal("0.000001"))


def test_command_with_duration_completes_and_reports_exit(platform: Platform) -> None:
    tenant = platform.tenant("gamma")
    lease = tenant.post(
        "/v1/leases",
        json={"tier": "spot", "gpus": 1, "command": "python train.py", "duration": 300},
    ).json()
    gpu_nodes = lease["allocation"]
    assert sum(len(idx) for idx in gpu_nodes.values()) == 1
    platform.advance(299)
    assert tenant.get(f"/v1/leases/{lease['id']}").json()["state"] == "running"
    platform.advance(1)
    done = tenant.get(f"/v1/leases/{lease['id']}").json()
    assert (done["state"], done["exit_code"]) == ("completed", 0)
    assert [s["seconds"] for s in tenant.get("/v1/usage").json()["segments"]] == [300]
