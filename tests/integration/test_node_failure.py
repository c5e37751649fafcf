"""A node that fails, through the operator's API on both databases: the leases on it end failed at
once (with a webhook, and billed to the failure), and its GPUs go to no one until it is back up."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Platform, WebhookReceiver

POOL = {"region": "us-east", "accelerator": "H100"}  # 6 nodes × 8 GPUs
KEY = "us-east/H100"


def _gpus_now(platform: Platform, tenant: httpx.Client) -> dict[str, Any]:
    """The pool's GPUs as the catalog, the dashboard and /metrics each show them."""
    (offer,) = [t for t in tenant.get("/v1/instance-types").json()["data"] if t["id"] == KEY]
    (pool,) = [
        p for p in platform.operator.get("/v1/admin/dashboard").json()["pools"] if p["id"] == KEY
    ]
    metrics = {
        s.labels["state"]: s.value
        for family in text_string_to_metric_families(platform.operator.get("/metrics").text)
        for s in family.samples
        if s.name == "backfill_gpus" and s.labels["pool"] == KEY
    }
    assert sum(metrics.values()) == 48  # every GPU in one state
    return {
        "spot": offer["available"]["spot"],
        "idle": pool["idle"],
        "down": pool["down"],
        "metrics": (metrics["idle"], metrics["down"]),
    }


def test_a_node_down_fails_its_leases_and_its_gpus_wait_until_it_is_up(
    platform: Platform, webhook_receiver: WebhookReceiver
) -> None:
    tenant = platform.tenant("acme")
    tenant.put("/v1/webhook", json={"url": webhook_receiver.url})
    lease = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 8, **POOL}).json()
    assert lease["state"] == "running" and lease["end_reason"] is None
    (node,) = lease["allocation"]
    platform.advance(60)
    assert _gpus_now(platform, tenant) == {"spot": 40, "idle": 40, "down": 0, "metrics": (40, 0)}

    op = platform.operator
    down = op.post(f"/v1/admin/nodes/{node}/down", json={"reason": "GPU fell off the bus"})
    assert down.status_code == 200, down.text
    assert down.json() == {"object": "node", "name": node, "pool": "us-east/H100", "state": "down"}
    failed = tenant.get(f"/v1/leases/{lease['id']}").json()
    assert (failed["state"], failed["exit_code"]) == ("failed", None)
    assert failed["ended_at"] is not None
    assert failed["end_reason"] == f"node {node} down: GPU fell off the bus"
    again = op.post(f"/v1/admin/nodes/{node}/down", json={"reason": "still broken"})
    assert again.status_code == 200 and again.json()["state"] == "down"  # idempotent

    platform.advance(1)  # the ticker sends the webhook
    ended = [d.json() for d in webhook_receiver.deliveries if d.json()["type"] == "lease.ended"]
    assert [(e["data"]["id"], e["data"]["state"]) for e in ended] == [(lease["id"], "failed")]
    assert ended[0]["data"]["end_reason"] == failed["end_reason"]  # the lease document
    usage = tenant.get("/v1/usage", params={"lease_id": lease["id"]}).json()
    assert [s["seconds"] for s in usage["segments"]] == [60]  # billed up to the failure

    # Five nodes are left: the catalog offers their 40 GPUs for spot, not the down node's; the
    # dashboard and /metrics count its GPUs down, not idle. 40 can be had; all six nodes cannot.
    assert _gpus_now(platform, tenant) == {"spot": 40, "idle": 40, "down": 8, "metrics": (40, 8)}
    spot = {"tier": "spot", **POOL}
    refused = tenant.post("/v1/leases", json={**spot, "gpus": 48})
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "insufficient_capacity"
    rest = tenant.post("/v1/leases", json={**spot, "gpus": 40})
    assert rest.status_code == 201, rest.text
    assert node not in rest.json()["allocation"]

    up = op.post(f"/v1/admin/nodes/{node}/up")
    assert up.status_code == 200, up.text
    assert up.json() == {"object": "node", "name": node, "pool": "us-east/H100", "state": "up"}
    assert op.post(f"/v1/admin/nodes/{node}/up").json()["state"] == "up"  # idempotent
    assert _gpus_now(platform, tenant) == {"spot": 8, "idle": 8, "down": 0, "metrics": (8, 0)}
    back = tenant.post("/v1/leases", json={**spot, "gpus": 8})
    assert back.status_code == 201, back.text
    assert list(back.json()["allocation"]) == [node]


def test_only_the_operator_takes_known_nodes_down_with_a_reason(platform: Platform) -> None:
    tenant = platform.tenant("acme")
    lease = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 1, **POOL}).json()
    (node,) = lease["allocation"]
    op = platform.operator
    reason = {"reason": "maintenance"}
    assert tenant.post(f"/v1/admin/nodes/{node}/down", json=reason).status_code == 403
    assert tenant.post(f"/v1/admin/nodes/{node}/up").status_code == 403
    assert platform.client(None).post(f"/v1/admin/nodes/{node}/up").status_code == 401
    missing = op.post("/v1/admin/nodes/no-such-node/down", json=reason)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert op.post("/v1/admin/nodes/no-such-node/up").status_code == 404
    for body in ({}, {"reason": ""}, {"reason": "x" * 201}, {**reason, "extra": 1}):
        bad = op.post(f"/v1/admin/nodes/{node}/down", json=body)
        assert bad.status_code == 422, body
    assert tenant.get(f"/v1/leases/{lease['id']}").json()["state"] == "running"  # untouched
