"""The control plane on a real production fleet's shape: Alibaba's published GPU inventory."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import SHARED, start_platform

INVENTORY = SHARED / "fleets" / "alibaba_v2026_spot_nodes.csv"

pytestmark = pytest.mark.skipif(
    not INVENTORY.exists(), reason=f"the real inventory is not at {INVENTORY} (../shared/fleets)"
)


def test_leases_on_the_alibaba_inventory(tmp_path: Path) -> None:
    with contextmanager(start_platform)(
        f"sqlite:///{tmp_path / 'b.db'}", fleet_file=str(INVENTORY)
    ) as platform:
        tenant = platform.tenant("tenant")
        types = {p["id"]: p for p in tenant.get("/v1/instance-types").json()["data"]}
        assert sum(p["gpus"] for p in types.values()) == 10_412
        assert types["alibaba/H800"]["gpus_per_node"] == 8
        assert types["alibaba/A10"]["gpus_per_node"] == 1

        # An 8-GPU lease sits on one 8-GPU node; 16 take two whole nodes.
        one = tenant.post(
            "/v1/leases", json={"tier": "spot", "gpus": 8, "accelerator": "H800"}
        ).json()
        assert [len(idx) for idx in one["allocation"].values()] == [8]
        two = tenant.post(
            "/v1/leases", json={"tier": "on_demand", "gpus": 16, "accelerator": "H800"}
        ).json()
        assert sorted(len(idx) for idx in two["allocation"].values()) == [8, 8]
        # A10 nodes hold one GPU each: two A10s take two whole nodes.
        pair = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 2, "accelerator": "A10"})
        assert [len(idx) for idx in pair.json()["allocation"].values()] == [1, 1]

        # The owner's work on the spot lease's node takes it back with notice.
        node = next(iter(one["allocation"]))
        fill = types["alibaba/H800"]["gpus"] - 16  # every other H800 node
        platform.internal(fill, "alibaba", "H800")
        lease = tenant.get(f"/v1/leases/{one['id']}").json()
        assert lease["state"] == "noticed", node
        platform.advance(120)
        assert tenant.get(f"/v1/leases/{one['id']}").json()["state"] == "preempted"
        assert tenant.get(f"/v1/leases/{two['id']}").json()["state"] == "running"
