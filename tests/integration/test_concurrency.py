"""Requests that race: one lease per idempotency key, and never more sold than the floor."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import Platform


def test_concurrent_retries_with_one_key_make_one_lease(platform: Platform) -> None:
    tenant = platform.tenant("racer")
    body = {"tier": "spot", "gpus": 1, "region": "us-east", "accelerator": "H200"}

    def attempt(_: int) -> tuple[int, str]:
        response = tenant.post("/v1/leases", json=body, headers={"Idempotency-Key": "once"})
        return response.status_code, response.json()["id"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(16)))
    assert {status for status, _ in results} == {201}
    assert len({lease_id for _, lease_id in results}) == 1
    assert len(tenant.get("/v1/leases").json()["data"]) == 1


def test_concurrent_on_demand_requests_never_oversell_the_floor(platform: Platform) -> None:
    # eu-west/H100: 32 GPUs, sellable floor 16 → at most 16 one-GPU on-demand leases.
    tenants = [platform.tenant(f"buyer-{i}") for i in range(4)]
    body = {"tier": "on_demand", "gpus": 1, "region": "eu-west", "accelerator": "H100"}

    def attempt(i: int) -> int:
        return tenants[i % len(tenants)].post("/v1/leases", json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(40)))
    assert statuses.count(201) == 16
    assert statuses.count(409) == 24
    dashboard = platform.operator.get("/v1/admin/dashboard").json()
    pool_view = next(p for p in dashboard["pools"] if p["id"] == "eu-west/H100")
    assert pool_view["by_tier"]["on_demand"] == 16
    held = sum(len(t.get("/v1/leases").json()["data"]) for t in tenants)
    assert held == 16


def test_openapi_document_is_served(platform: Platform) -> None:
    spec = platform.client(None).get("/openapi.json").json()
    assert spec["info"]["title"] == "Backfill"
    for path in ("/v1/instance-types", "/v1/leases", "/v1/leases/{lease_id}", "/v1/usage"):
        assert path in spec["paths"]
    assert {"post", "get"} <= set(spec["paths"]["/v1/leases"])
