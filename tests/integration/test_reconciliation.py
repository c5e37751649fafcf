"""Reconciliation through the operator's API: metered usage against the engine's own accounting.

On the sim engine here (the Slurm half is in tests/engines/test_slurm_platform.py): a month of
leases reconciles to zero difference; a segment metered wrong is reported with both figures and
left as it is; bad windows get clear errors.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from backfill.store.models import LeaseSegment
from tests.conftest import Platform


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_metered_usage_reconciles_and_a_wrong_meter_is_reported_not_fixed(
    platform: Platform,
) -> None:
    tenant = platform.tenant("acme")
    since = _at(platform.advance(1))
    spot = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 2}).json()
    od = tenant.post("/v1/leases", json={"tier": "on_demand", "gpus": 4}).json()
    platform.advance(600)
    tenant.delete(f"/v1/leases/{spot['id']}")
    platform.advance(3000)

    window = {"since": since.isoformat()}
    report = platform.operator.get("/v1/admin/reconciliation", params=window)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["engine"] == "sim" and body["leases"] == 2 and body["differences"] == []
    assert body["metered_gpu_seconds"] == body["engine_gpu_seconds"] == 2 * 600 + 4 * 3600

    # A metering bug: the spot lease's segment ends 10 s late. Reported, both figures, not fixed.
    with platform.runtime.ctx.unit_of_work() as session:
        segment = session.scalars(
            select(LeaseSegment).where(LeaseSegment.lease_id == spot["id"])
        ).one()
        segment.ended_at = segment.ended_at + timedelta(seconds=10)  # type: ignore[operator]
        session.commit()
    body = platform.operator.get("/v1/admin/reconciliation", params=window).json()
    (difference,) = body["differences"]
    assert difference["lease_id"] == spot["id"]
    assert difference["metered_gpu_seconds"] == 2 * 610
    assert difference["engine_gpu_seconds"] == 2 * 600
    assert difference["gpu_seconds"] == 20
    assert difference["engine_state"] == "STOPPED"
    assert "differ" in difference["reason"]
    assert (
        body["differences"]
        == (platform.operator.get("/v1/admin/reconciliation", params=window).json()["differences"])
    )  # looking changed nothing
    seconds = [s["seconds"] for s in tenant.get("/v1/usage").json()["segments"]]
    assert 610 in seconds
    assert od["id"] not in {d["lease_id"] for d in body["differences"]}


def test_reconciliation_windows_are_checked_and_for_the_operator_only(platform: Platform) -> None:
    tenant = platform.tenant("acme")
    assert tenant.get(
        "/v1/admin/reconciliation", params={"since": "2026-01-01T00:00:00Z"}
    ).status_code in (401, 403)
    for params in ({}, {"since": "2026-01-01T00:00:00"}, {"since": "yesterday"}):
        response = platform.operator.get("/v1/admin/reconciliation", params=params)
        assert response.status_code == 422, (params, response.text)
    backwards = platform.operator.get(
        "/v1/admin/reconciliation",
        params={"since": "2026-01-05T00:00:00Z", "until": "2026-01-04T00:00:00Z"},
    )
    assert backwards.status_code == 422
    assert backwards.json()["error"] == {
        "code": "invalid_request",
        "message": "until must be after since",
        "field": "until",
    }
