"""Tenants are walled off from each other; retries are safe; bad input changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import Platform


def _state(platform: Platform, client: httpx.Client) -> tuple[Any, ...]:
    """Everything a bad request must leave as it was."""
    leases = client.get("/v1/leases").json()["data"]
    dashboard = platform.operator.get("/v1/admin/dashboard").json()
    return (
        [(lease["id"], lease["state"]) for lease in leases],
        dashboard["by_tier"],
        dashboard["idle"],
    )


def test_tenants_cannot_see_or_touch_each_others_leases(platform: Platform) -> None:
    a = platform.tenant("tenant-a")
    b = platform.tenant("tenant-b")
    lease = a.post("/v1/leases", json={"tier": "on_demand", "gpus": 1}).json()

    assert b.get("/v1/leases").json()["data"] == []
    for response in (
        b.get(f"/v1/leases/{lease['id']}"),
        b.get(f"/v1/leases/{lease['id']}/notice"),
        b.delete(f"/v1/leases/{lease['id']}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert lease["id"] in response.json()["error"]["message"]  # the id asked for, nothing more
    assert b.get("/v1/usage", params={"lease_id": lease["id"]}).json()["segments"] == []
    assert a.get(f"/v1/leases/{lease['id']}").json()["state"] == "running"

    # Keys of one never work as the other: what A's key sees is A's alone.
    assert [x["id"] for x in a.get("/v1/leases").json()["data"]] == [lease["id"]]
    assert a.get("/v1/usage").json()["segments"][0]["lease_id"] == lease["id"]
    # Tenants are not operators.
    assert a.get("/v1/admin/tenants").status_code == 403


def test_keys_are_required_and_checked(platform: Platform) -> None:
    platform.tenant("someone")
    for key in (None, "", "bf_live_made-up", "x" * 300):
        response = platform.client(key).get("/v1/leases")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    # The operator key is not a tenant key.
    response = platform.operator.get("/v1/leases")
    assert response.status_code == 403


def test_revoked_key_stops_working(platform: Platform) -> None:
    created = platform.operator.post("/v1/admin/tenants", json={"name": "revoked"}).json()
    client = platform.client(created["api_key"])
    assert client.get("/v1/leases").status_code == 200
    tenant_id = created["tenant"]["id"]
    keys = platform.operator.get(f"/v1/admin/tenants/{tenant_id}/keys").json()
    assert len(keys) == 1 and created["api_key"].startswith(keys[0]["prefix"])
    platform.operator.delete(f"/v1/admin/tenants/{tenant_id}/keys/{keys[0]['id']}")
    assert client.get("/v1/leases").status_code == 401


def test_idempotency_key_returns_the_same_lease_and_refuses_another_body(
    platform: Platform,
) -> None:
    tenant = platform.tenant("retrier")
    body = {"tier": "spot", "gpus": 2, "region": "eu-west", "accelerator": "A100"}
    headers = {"Idempotency-Key": "order-42"}
    first = tenant.post("/v1/leases", json=body, headers=headers)
    second = tenant.post("/v1/leases", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert len(tenant.get("/v1/leases").json()["data"]) == 1

    other = tenant.post("/v1/leases", json={**body, "gpus": 3}, headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(tenant.get("/v1/leases").json()["data"]) == 1

    # Keys are per tenant: another tenant's same key is a different request.
    stranger = platform.tenant("stranger")
    theirs = stranger.post("/v1/leases", json=body, headers=headers)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"tier": "spot", "gpus": -1}, 422, "invalid_request", "gpus"),
        ({"tier": "spot", "gpus": 0}, 422, "invalid_request", "gpus"),
        ({"tier": "spot", "gpus": "many"}, 422, "invalid_request", "gpus"),
        ({"tier": "gold", "gpus": 1}, 422, "invalid_request", "tier"),
        ({"tier": "internal", "gpus": 1}, 422, "invalid_request", "tier"),
        ({"gpus": 1}, 422, "invalid_request", "tier"),
        ({"tier": "spot", "gpus": 1, "colour": "red"}, 422, "invalid_request", "colour"),
        ({"tier": "spot", "gpus": 1, "region": "mars"}, 422, "invalid_request", "region"),
        ({"tier": "spot", "gpus": 1, "accelerator": "TPU"}, 422, "invalid_request", "accelerator"),
        (
            {"tier": "spot", "gpus": 1, "region": "eu-west", "accelerator": "H200"},
            422,
            "invalid_request",
            "accelerator",
        ),
        (
            {"tier": "on_demand", "gpus": 1, "max_price": "1.00"},
            422,
            "invalid_request",
            "max_price",
        ),
        ({"tier": "spot", "gpus": 1, "max_price": "-1"}, 422, "invalid_request", "max_price"),
        ({"tier": "spot", "gpus": 12}, 422, "shape_not_placeable", "gpus"),
        ({"tier": "spot", "gpus": 4096}, 422, "shape_not_placeable", "gpus"),
        (
            {"tier": "spot", "gpus": 64, "region": "us-east", "accelerator": "H100"},
            422,
            "shape_not_placeable",
            "gpus",
        ),
        (
            {"tier": "on_demand", "gpus": 32, "region": "us-east", "accelerator": "H100"},
            409,
            "insufficient_capacity",
            "gpus",
        ),
        ({"tier": "spot", "gpus": 1, "max_price": "0.01"}, 409, "price_above_max", "max_price"),
        ({"tier": "reserved", "gpus": 8}, 422, "invalid_request", "end"),
        (
            {"tier": "reserved", "gpus": 8, "end": "2026-01-05T10:00:00"},
            422,
            "invalid_request",
            "end",
        ),
        (
            {"tier": "reserved", "gpus": 8, "end": "2020-01-01T00:00:00Z"},
            422,
            "invalid_request",
            "end",
        ),
        (
            {"tier": "spot", "gpus": 1, "end": "2030-01-01T00:00:00Z"},
            422,
            "invalid_request",
            "start",
        ),
        ({"tier": "spot", "gpus": 1, "command": "x" * 5000}, 422, "invalid_request", "command"),
        ({"tier": "spot", "gpus": 1, "duration": 0}, 422, "invalid_request", "duration"),
        ([1, 2, 3], 422, "invalid_request", None),
    ],
)
def test_bad_lease_requests_get_clear_errors_and_change_nothing(
    platform: Platform, body: Any, status: int, code: str, field: str | None
) -> None:
    tenant = platform.tenant("careful")
    tenant.post("/v1/leases", json={"tier": "spot", "gpus": 1, "region": "eu-west"})
    before = _state(platform, tenant)
    response = tenant.post("/v1/leases", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"]
    assert _state(platform, tenant) == before


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 422, "invalid_request"),
        (
            b'{"tier": "spot", "gpus": 1, "command": "' + b"a" * 70_000 + b'"}',
            413,
            "payload_too_large",
        ),
    ],
)
def test_malformed_and_oversized_bodies(
    platform: Platform, content: bytes, status: int, code: str
) -> None:
    tenant = platform.tenant("sloppy")
    before = _state(platform, tenant)
    response = tenant.post(
        "/v1/leases", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert _state(platform, tenant) == before


def test_oversized_body_without_content_length_is_cut_off(platform: Platform) -> None:
    tenant = platform.tenant("streamer")
    before = _state(platform, tenant)

    def chunks() -> Any:
        yield b'{"tier": "spot", "gpus": 1, "command": "'
        for _ in range(100):
            yield b"b" * 1024
        yield b'"}'

    response = tenant.post(
        "/v1/leases", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert _state(platform, tenant) == before


def test_operator_rejects_bad_tenants_and_internal_jobs(platform: Platform) -> None:
    op = platform.operator
    assert op.post("/v1/admin/tenants", json={"name": "ok"}).status_code == 201
    duplicate = op.post("/v1/admin/tenants", json={"name": "ok"})
    assert (duplicate.status_code, duplicate.json()["error"]["code"]) == (409, "conflict")
    for name in ("", "has space", "x" * 65, "../etc"):
        response = op.post("/v1/admin/tenants", json={"name": name})
        assert response.status_code == 422 and response.json()["error"]["field"] == "name"
    assert len(op.get("/v1/admin/tenants").json()) == 1
    ambiguous = op.post("/v1/admin/internal-jobs", json={"gpus": 8, "accelerator": "H100"})
    assert ambiguous.status_code == 422 and ambiguous.json()["error"]["field"] == "region"
    assert op.get("/v1/admin/internal-jobs").json() == []
    assert op.delete("/v1/admin/internal-jobs/job_nope").status_code == 404


def test_wall_clock_cannot_be_advanced_and_webhook_urls_are_checked(platform: Platform) -> None:
    tenant = platform.tenant("hooks")
    for url in ("ftp://example.com/x", "not a url", "http://0.0.0.0/x"):
        response = tenant.put("/v1/webhook", json={"url": url})
        assert response.status_code == 422 and response.json()["error"]["field"] == "url"
    assert tenant.get("/v1/webhook").json() == {"url": None, "secret": None}


GOOD_FLEET = """\
name: upload
regions:
  - name: r1
    pools:
      - accelerator: H100
        nodes: 2
        gpus_per_node: 8
        prices: {on_demand: "2.00", reserved: "1.50", spot_floor: "0.50"}
"""


def test_fleet_files_are_checked_with_file_line_and_field(platform: Platform) -> None:
    op = platform.operator
    before = op.get("/v1/admin/fleet").json()
    good = op.post(
        "/v1/admin/fleet/check", params={"filename": "fleet.yaml"}, content=GOOD_FLEET.encode()
    )
    assert good.status_code == 200, good.text
    assert good.json() == {
        "name": "upload",
        "regions": ["r1"],
        "accelerators": ["H100"],
        "pools": ["r1/H100"],
        "nodes": 2,
        "gpus": 16,
    }
    bad = GOOD_FLEET.replace('on_demand: "2.00"', 'on_demand: "-2"')
    response = op.post(
        "/v1/admin/fleet/check", params={"filename": "fleet.yaml"}, content=bad.encode()
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_fleet_file"
    assert error["field"] == "regions[0].pools[0].prices.on_demand"
    assert error["message"].startswith("fleet.yaml:8: regions[0].pools[0].prices.on_demand")

    csv = "gpu_model,gpu_capacity_num,cpu_num,node_name\nA10,1,128,0\nA10,x,128,1\n"
    response = op.post("/v1/admin/fleet/check", params={"filename": "nodes.csv"}, content=csv)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("nodes.csv:3:")

    for filename in ("../etc/fleet.yaml", "fleet.exe", ".yaml"):
        response = op.post(
            "/v1/admin/fleet/check", params={"filename": filename}, content=GOOD_FLEET
        )
        assert response.status_code == 422
        assert response.json()["error"]["field"] == "filename"
    huge = op.post(
        "/v1/admin/fleet/check",
        params={"filename": "fleet.yaml"},
        content=b"#" * (3 * 1024 * 1024),
    )
    assert huge.status_code == 413
    tenant = platform.tenant("not-an-operator")
    assert tenant.post("/v1/admin/fleet/check", params={"filename": "f.yaml"}).status_code == 403
    assert op.get("/v1/admin/fleet").json() == before
