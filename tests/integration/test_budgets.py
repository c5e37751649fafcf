"""Budgets through the API, on SQLite and PostgreSQL: concurrent holds never overspend; a tenant
whose credit runs out gets notices, a post-paid one never."""

from __future__ import annotations

import threading
from decimal import Decimal

import httpx

from backfill.services.budgets import enforce_credit
from tests.conftest import Platform, WebhookReceiver


def hold(client: httpx.Client, tenant: str, amount: str, key: str | None = None) -> httpx.Response:
    body = {"tenant_id": tenant, "amount": amount, "description": "one chat completion"}
    if key is not None:
        body["key_id"] = key
    return client.post("/v1/spend/holds", json=body)


def test_100_concurrent_holds_against_credit_for_37_exactly_37_succeed(
    platform: Platform,
) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    granted = platform.operator.post(
        f"/v1/admin/tenants/{tenant}/credits", json={"amount": "46.25", "note": "prepaid"}
    )
    assert granted.status_code == 201, granted.text
    statuses: list[int] = []
    start = threading.Barrier(100)

    def spend() -> None:
        with httpx.Client(
            base_url=platform.url, headers=platform.operator.headers, timeout=60
        ) as client:
            start.wait()
            response = hold(client, tenant, "1.25")  # 37 × 1.25 = 46.25
            statuses.append(response.status_code)
            if response.status_code == 402:
                assert response.json()["error"]["code"] == "budget_exhausted"

    threads = [threading.Thread(target=spend) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(set(statuses)) == [201, 402]
    assert statuses.count(201) == 37
    (credit,) = acme.get("/v1/budgets").json()["data"]
    assert Decimal(credit["held"]) == Decimal("46.25")
    assert Decimal(credit["available"]) == 0


def test_a_hold_is_settled_at_its_real_cost_or_released_once(platform: Platform) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    op = platform.operator
    op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": "10"})
    op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": "2.50"})  # adds up
    first = hold(op, tenant, "4").json()
    second = hold(op, tenant, "3").json()
    assert hold(op, tenant, "5.51").status_code == 402  # 12.50 - 7 held = 5.50 left
    settled = op.post(f"/v1/spend/holds/{first['id']}/settle", json={"amount": "3.25"})
    assert settled.status_code == 200 and settled.json()["state"] == "settled"
    again = op.post(f"/v1/spend/holds/{first['id']}/settle", json={"amount": "3.25"})
    assert again.status_code == 200  # a retry changes nothing
    other = op.post(f"/v1/spend/holds/{first['id']}/settle", json={"amount": "1"})
    assert other.status_code == 409
    assert op.post(f"/v1/spend/holds/{first['id']}/release").status_code == 409
    assert op.post(f"/v1/spend/holds/{second['id']}/release").json()["state"] == "released"
    (credit,) = acme.get("/v1/budgets").json()["data"]
    assert {k: Decimal(credit[k]) for k in ("limit", "held", "spent", "available")} == {
        "limit": Decimal("12.50"),
        "held": 0,
        "spent": Decimal("3.25"),
        "available": Decimal("9.25"),
    }
    assert op.post("/v1/spend/holds/hld_nope/settle", json={"amount": "1"}).status_code == 404


def test_a_key_cap_limits_that_key_only_and_tenants_are_walled_off(platform: Platform) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    globex, other = platform.tenant_and_id("globex")
    op = platform.operator
    key = op.post(f"/v1/admin/tenants/{tenant}/keys").json()["id"]
    foreign_key = op.get(f"/v1/admin/tenants/{other}/keys").json()[0]["id"]
    capped = acme.put(f"/v1/budgets/keys/{key}", json={"limit": "5"})
    assert capped.status_code == 200 and capped.json()["scope"] == key
    assert acme.put(f"/v1/budgets/keys/{foreign_key}", json={"limit": "5"}).status_code == 404
    # No credit: post-paid, so only the key's cap counts.
    assert hold(op, tenant, "4", key).status_code == 201
    refused = hold(op, tenant, "1.5", key)
    assert refused.status_code == 402 and "budget" in refused.json()["error"]["message"]
    assert hold(op, tenant, "100").status_code == 201  # the tenant's other keys: no cap
    assert hold(op, tenant, "1", foreign_key).status_code == 404  # not acme's key
    assert hold(op, "ten_nobody", "1").status_code == 404
    assert acme.put(f"/v1/budgets/keys/{key}", json={"limit": None}).json() is None
    assert hold(op, tenant, "1.5", key).status_code == 201
    assert globex.get("/v1/budgets").json()["data"] == []
    # Who may hold: not a tenant; amounts are exact and positive.
    assert hold(acme, tenant, "1").status_code == 403
    assert hold(op, tenant, "0.0000001").status_code == 422
    assert hold(op, tenant, "-1").status_code == 422
    bad = op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": "0"})
    assert bad.status_code == 422


def test_a_tenant_on_credit_gets_a_lease_only_while_the_credit_covers_it(
    platform: Platform,
) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    op = platform.operator
    h100 = next(
        t for t in acme.get("/v1/instance-types").json()["data"] if t["accelerator"] == "H100"
    )
    hourly = Decimal(h100["prices"]["on_demand"]) * 8
    body = {"tier": "on_demand", "gpus": 8, "region": h100["region"], "accelerator": "H100"}
    op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": str(hourly * 3 / 2)})
    first = acme.post("/v1/leases", json=body)  # 1.5 hours of credit cover its first hour
    assert first.status_code == 201, first.text
    platform.advance(2400)  # 40 minutes of it are spent
    (credit,) = acme.get("/v1/budgets").json()["data"]
    spent = (hourly * 2400 / 3600).quantize(Decimal("0.000001"))  # billed to the micro-unit
    assert Decimal(credit["leases"]) == spent
    assert Decimal(credit["available"]) == hourly * 3 / 2 - spent
    refused = acme.post("/v1/leases", json=body)  # 50 minutes left: less than an hour
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert len(acme.get("/v1/leases").json()["data"]) == 1  # nothing was created
    acme.delete(f"/v1/leases/{first.json()['id']}")
    assert acme.post("/v1/leases", json=body).status_code == 402  # what it spent stays spent
    op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": str(hourly)})
    assert acme.post("/v1/leases", json=body).status_code == 201


def test_a_tenant_whose_credit_runs_out_gets_notices_and_a_post_paid_one_never(
    platform: Platform, webhook_receiver: WebhookReceiver
) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    globex = platform.tenant("globex")  # post-paid: no credit
    acme.put("/v1/webhook", json={"url": webhook_receiver.url})
    op = platform.operator
    h100 = next(
        t for t in acme.get("/v1/instance-types").json()["data"] if t["accelerator"] == "H100"
    )
    hourly = Decimal(h100["prices"]["on_demand"]) * 8
    body = {"tier": "on_demand", "gpus": 8, "region": h100["region"], "accelerator": "H100"}
    op.post(f"/v1/admin/tenants/{tenant}/credits", json={"amount": str(hourly * 3 / 2)})
    first = acme.post("/v1/leases", json=body).json()
    spot = acme.post("/v1/leases", json={**body, "tier": "spot", "gpus": 1}).json()
    postpaid = globex.post("/v1/leases", json=body).json()
    assert [lease["state"] for lease in (first, spot, postpaid)] == ["running"] * 3

    platform.advance(3600)  # an hour: the credit still covers them
    assert acme.get(f"/v1/leases/{first['id']}").json()["state"] == "running"
    assert enforce_credit(platform.runtime.ctx) == 0
    platform.advance(1801)  # past the credit (sooner with the spot lease beside)
    (credit,) = acme.get("/v1/budgets").json()["data"]
    assert Decimal(credit["available"]) < 0
    for lease in (first, spot):
        noticed = acme.get(f"/v1/leases/{lease['id']}").json()
        assert noticed["state"] == "noticed", noticed
        assert noticed["notice"]["reason"] == "credit exhausted"
    notice = acme.get(f"/v1/leases/{first['id']}").json()["notice"]
    hooks = [d.json() for d in webhook_receiver.deliveries if d.json()["type"] == "lease.notice"]
    assert sorted(h["data"]["id"] for h in hooks) == sorted([first["id"], spot["id"]])
    refused = acme.post("/v1/leases", json=body)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert enforce_credit(platform.runtime.ctx) == 0  # noticed once, post-paid never

    platform.advance(119)  # the notice period is 120 s
    assert acme.get(f"/v1/leases/{first['id']}").json()["state"] == "noticed"
    platform.advance(1)
    for lease in (first, spot):
        ended = acme.get(f"/v1/leases/{lease['id']}").json()
        assert ended["state"] == "preempted" and ended["ended_at"] == notice["stop_at"]
    platform.advance(3600)
    kept = globex.get(f"/v1/leases/{postpaid['id']}").json()
    assert kept["state"] == "running" and kept["notice"] is None
