"""A tenant's GPU quota: set by the operator through the API, held by the engine, kept."""

from __future__ import annotations

import pytest

from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec
from backfill.errors import QuotaExceeded
from backfill.runtime import Runtime, Settings
from tests.conftest import OPERATOR_KEY, Platform


def test_the_operator_sets_a_quota_and_the_engine_holds_the_tenant_to_it(
    platform: Platform,
) -> None:
    tenant = platform.tenant("acme")
    other = platform.tenant("beta")
    (acme,) = [t for t in platform.operator.get("/v1/admin/tenants").json() if t["name"] == "acme"]
    assert acme["gpu_quota"] is None
    tenant_id = acme["id"]

    set_quota = platform.operator.put(f"/v1/admin/tenants/{tenant_id}/quota", json={"gpus": 8})
    assert set_quota.status_code == 200, set_quota.text
    assert set_quota.json()["gpu_quota"] == 8
    first = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 6})
    assert first.status_code == 201
    refused = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 4})
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "quota_exceeded" and "holds 6" in error["message"]
    assert len(tenant.get("/v1/leases").json()["data"]) == 1  # nothing was created
    assert tenant.post("/v1/leases", json={"tier": "spot", "gpus": 2}).status_code == 201
    assert other.post("/v1/leases", json={"tier": "spot", "gpus": 8}).status_code == 201  # theirs

    # Only the operator sets quotas, within bounds; a bad request changes nothing.
    assert tenant.put(f"/v1/admin/tenants/{tenant_id}/quota", json={"gpus": 99}).status_code in (
        401,
        403,
    )
    for body in ({"gpus": -1}, {"gpus": 10**7}, {"gpus": "8"}, {"gpus": True}, {}, {"gpu": 8}):
        bad = platform.operator.put(f"/v1/admin/tenants/{tenant_id}/quota", json=body)
        assert bad.status_code == 422, (body, bad.text)
    missing = platform.operator.put("/v1/admin/tenants/ten_nobody/quota", json={"gpus": 1})
    assert missing.status_code == 404
    (acme,) = [t for t in platform.operator.get("/v1/admin/tenants").json() if t["name"] == "acme"]
    assert acme["gpu_quota"] == 8

    lifted = platform.operator.put(f"/v1/admin/tenants/{tenant_id}/quota", json={"gpus": None})
    assert lifted.json()["gpu_quota"] is None
    assert tenant.post("/v1/leases", json={"tier": "spot", "gpus": 4}).status_code == 201


def test_quotas_are_given_to_the_engine_again_on_restart(platform: Platform) -> None:
    platform.tenant("acme")
    (acme,) = platform.operator.get("/v1/admin/tenants").json()
    platform.operator.put(f"/v1/admin/tenants/{acme['id']}/quota", json={"gpus": 4})
    settings = platform.runtime.settings
    again = Runtime(
        Settings(database_url=settings.database_url, clock="manual", operator_key=OPERATOR_KEY)
    )
    try:
        pool = again.engine.fleet().pools[0].key
        spec = WorkloadSpec(id="lse_x", tier=Tier.SPOT, pool=pool, gpus=5, owner=acme["id"])
        with pytest.raises(QuotaExceeded):
            again.engine.submit(spec)
    finally:
        again.close()
