"""The control plane on a real Slurm cluster, used as a tenant and the owner's teams use it.

The owner's job goes in with plain ``sbatch`` (Backfill never sees it submitted): Slurm preempts
the tenant's spot lease that Backfill placed; the tenant sees the notice and the stop through the
API (and a webhook); billing ends at the end time Slurm's own accounting (``sacct``) records.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from backfill.engines.slurm.engine import account_for
from tests.conftest import Platform, WebhookReceiver
from tests.engines.harness import (
    NODES,
    NOTICE,
    PRICES,
    SLURM_CONF,
    SLURM_DIR,
    control_plane,
    slurm_clear,
    slurm_env,
    slurm_owner_job,
    slurm_up,
)

pytestmark = pytest.mark.slurm


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wait_for(what: str, get: Any, predicate: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = get()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:g} s: {value}")
        time.sleep(0.25)


def sacct(lease_id: str) -> dict[str, str]:
    """Slurm's own accounting of the job that ran a lease."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", f"--name={lease_id}", "-S", "now-1hour",
         "--format=JobID,State,Start,End,AllocTRES"],
        env={**slurm_env(), "SLURM_TIME_FORMAT": "%s"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("|") for line in out.splitlines() if line]
    if not rows:  # slurmdbd has not got the record yet
        return {"job": "", "state": "", "start": "", "end": "", "tres": ""}
    assert len(rows) == 1, rows
    job, state, start, end, tres = rows[0]
    return {"job": job, "state": state, "start": start, "end": end, "tres": tres}


def test_plain_sbatch_preempts_a_spot_lease_and_billing_ends_at_slurms_end(
    slurm_platform: Platform, webhook_receiver: WebhookReceiver
) -> None:
    platform = slurm_platform
    tenant = platform.tenant("acme")
    tenant.put("/v1/webhook", json={"url": webhook_receiver.url})
    (pool,) = tenant.get("/v1/instance-types").json()["data"]
    assert pool["id"] == "backfill/H100" and pool["gpus"] == 32

    body = {"tier": "spot", "gpus": 8, "region": "backfill", "accelerator": "H100"}
    created = tenant.post("/v1/leases", json=body)
    assert created.status_code == 201, created.text
    lease = created.json()
    url = f"/v1/leases/{lease['id']}"
    running = wait_for(
        "the lease running", lambda: tenant.get(url).json(), lambda v: v["state"] == "running", 30
    )
    ((node, gpus),) = running["allocation"].items()
    assert node in NODES and len(gpus) == 8

    # The owner's teams need the whole cluster: plain sbatch, not through Backfill.
    slurm_owner_job(32, 5)
    noticed = wait_for(
        "the notice", lambda: tenant.get(url).json(), lambda v: v["state"] == "noticed", 30
    )
    notice = noticed["notice"]
    assert (_at(notice["stop_at"]) - _at(notice["notice_at"])).total_seconds() == NOTICE
    assert tenant.get(f"{url}/notice").json() == notice

    ended = wait_for(
        "the stop",
        lambda: tenant.get(url).json(),
        lambda v: v["state"] == "preempted",
        NOTICE + 60,
    )
    assert _at(ended["ended_at"]) >= _at(notice["stop_at"])  # never before the full notice
    kinds = wait_for(
        "both webhooks",
        lambda: [d.json()["type"] for d in webhook_receiver.deliveries],
        lambda v: "lease.ended" in v,
        10,
    )
    assert kinds[:1] == ["lease.notice"] and kinds.count("lease.notice") == 1

    # Billing ends where Slurm's accounting says the job ended, to the second.
    record = wait_for("sacct's end", lambda: sacct(lease["id"]), lambda r: r["end"].isdigit(), 30)
    # PREEMPTED when Slurm's grace check (every ~30 s) ended it; CANCELLED when Backfill did, at
    # the second the notice ran out, so as not to keep the owner's job waiting for that check.
    assert record["state"] in ("PREEMPTED", "CANCELLED by 0") and "gres/gpu=8" in record["tres"]
    assert _at(running["started_at"]).timestamp() == int(record["start"])
    assert _at(ended["ended_at"]).timestamp() == int(record["end"])
    usage = tenant.get("/v1/usage", params={"lease_id": lease["id"]}).json()
    seconds = int(record["end"]) - int(record["start"])
    assert sum(s["seconds"] for s in usage["segments"]) == seconds
    assert usage["segments"][-1]["ended_at"] == ended["ended_at"]
    price = Decimal(usage["segments"][0]["price_per_gpu_hour"])
    assert price >= Decimal(PRICES["spot_floor"])
    assert Decimal(usage["cost"]) == (price * 8 * seconds / 3600).quantize(Decimal("0.000001"))

    # Reconciled against sacct: what was metered is what Slurm ran, the owner's job aside.
    # (From the lease's start: the cluster's earlier jobs are other tests' control planes'.)
    since = datetime.fromtimestamp(int(record["start"]), UTC).isoformat()
    report = platform.operator.get("/v1/admin/reconciliation", params={"since": since}).json()
    assert report["engine"] == "slurm" and report["leases"] == 1
    assert report["differences"] == []
    assert report["metered_gpu_seconds"] == report["engine_gpu_seconds"] == 8 * seconds


def slurmctld_down() -> None:
    pid = (SLURM_DIR / "run/slurmctld.pid").read_text().strip()
    subprocess.run(["kill", pid], check=True)
    wait_for(
        "slurmctld stopped",
        lambda: subprocess.run(["kill", "-0", pid], capture_output=True).returncode,
        lambda code: code != 0,
        30,
    )


def test_slurm_down_answers_503_loses_no_usage_and_recovers(slurm_platform: Platform) -> None:
    platform = slurm_platform
    tenant = platform.tenant("acme")
    body = {"tier": "on_demand", "gpus": 4, "region": "backfill", "accelerator": "H100"}
    lease = tenant.post("/v1/leases", json=body).json()
    url = f"/v1/leases/{lease['id']}"
    running = wait_for(
        "the lease running", lambda: tenant.get(url).json(), lambda v: v["state"] == "running", 30
    )
    slurmctld_down()
    try:
        for response in (tenant.get(url), tenant.post("/v1/leases", json=body)):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "engine_unavailable" and "Slurm" in error["message"]
    finally:
        assert slurm_up() is None  # the controller comes back with its saved state
    # The lease ran on while the controller was away; nothing was created by the refused POST.
    back = wait_for("the API back", lambda: tenant.get(url), lambda r: r.status_code == 200, 60)
    assert back.json()["state"] == "running"
    assert back.json()["started_at"] == running["started_at"]
    assert [item["id"] for item in tenant.get("/v1/leases").json()["data"]] == [lease["id"]]
    stopped = tenant.delete(url).json()
    assert stopped["state"] == "stopped"
    record = wait_for("sacct's end", lambda: sacct(lease["id"]), lambda r: r["end"].isdigit(), 30)
    usage = tenant.get("/v1/usage", params={"lease_id": lease["id"]}).json()
    assert sum(s["seconds"] for s in usage["segments"]) == int(record["end"]) - int(record["start"])
    assert _at(stopped["ended_at"]).timestamp() == int(record["end"])


def test_a_lost_node_fails_its_lease_and_is_avoided(slurm_platform: Platform) -> None:
    platform = slurm_platform
    tenant = platform.tenant("acme")
    body = {"tier": "on_demand", "gpus": 8, "region": "backfill", "accelerator": "H100"}
    lease = tenant.post("/v1/leases", json=body).json()
    url = f"/v1/leases/{lease['id']}"
    running = wait_for(
        "the lease running", lambda: tenant.get(url).json(), lambda v: v["state"] == "running", 30
    )
    (node,) = running["allocation"]
    env = slurm_env()
    # The node is lost: its slurmd dies, and the operator (or Slurm, after SlurmdTimeout) marks it
    # down; without its slurmd it cannot come back on its own.
    subprocess.run(["kill", (SLURM_DIR / f"run/slurmd-{node}.pid").read_text().strip()], check=True)
    down = ["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=lost in a test"]
    subprocess.run(down, env=env, check=True)
    try:
        failed = wait_for(
            "the lease failed", lambda: tenant.get(url).json(), lambda v: v["state"] == "failed", 60
        )
        record = wait_for("sacct", lambda: sacct(lease["id"]), lambda r: r["end"].isdigit(), 30)
        assert record["state"] == "NODE_FAIL"
        assert _at(failed["ended_at"]).timestamp() == int(record["end"])
        usage = tenant.get("/v1/usage", params={"lease_id": lease["id"]}).json()
        seconds = int(record["end"]) - int(record["start"])
        assert sum(s["seconds"] for s in usage["segments"]) == seconds
        # New leases go to the other nodes; four whole nodes cannot be had with one down.
        others, spot = [], {**body, "tier": "spot"}
        for _ in range(3):
            created = tenant.post("/v1/leases", json=spot)
            assert created.status_code == 201, created.text
            others.append(created.json())
        for other in others:
            done = wait_for(
                "a lease running",
                lambda other=other: tenant.get(f"/v1/leases/{other['id']}").json(),
                lambda v: v["state"] == "running",
                30,
            )
            assert node not in done["allocation"]
        refused = tenant.post("/v1/leases", json=spot)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "insufficient_capacity"
    finally:
        slurm_up()  # its slurmd again (the node may still be down: the next lines bring it back)
        resume = ["scontrol", "update", f"NodeName={node}", "State=RESUME"]
        subprocess.run(resume, env=env, check=False, capture_output=True)
        assert slurm_up() is None


def test_a_tenants_quota_is_its_slurm_accounts_grptres(slurm_platform: Platform) -> None:
    platform = slurm_platform
    tenant = platform.tenant("acme")
    (acme,) = platform.operator.get("/v1/admin/tenants").json()
    quota = platform.operator.put(f"/v1/admin/tenants/{acme['id']}/quota", json={"gpus": 8})
    assert quota.status_code == 200, quota.text
    account = account_for(acme["id"])
    env = slurm_env()
    shown = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", f"account={account}", "format=grptres"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "gres/gpu=8" in shown
    body = {"tier": "on_demand", "gpus": 6, "region": "backfill", "accelerator": "H100"}
    assert tenant.post("/v1/leases", json=body).status_code == 201
    refused = tenant.post("/v1/leases", json={**body, "gpus": 4})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "quota_exceeded"
    # A job sent straight to Slurm under the tenant's account, past the quota: Slurm refuses it.
    direct = subprocess.run(
        ["sbatch", "--parsable", f"--account={account}", "--qos=bf_on_demand",
         "--nodes=2", "--gres=gpu:h100:8", "--output=/dev/null", "--wrap=sleep 5"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert direct.returncode != 0 and "policy" in direct.stderr
    lifted = platform.operator.put(f"/v1/admin/tenants/{acme['id']}/quota", json={"gpus": None})
    assert lifted.status_code == 200
    shown = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "assoc", f"account={account}", "format=grptres"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "gres/gpu" not in shown
    assert tenant.post("/v1/leases", json={**body, "gpus": 4}).status_code == 201


def test_backfill_restarts_and_finds_what_slurm_did_while_it_was_away(
    slurm_cluster: None, tmp_path: Path
) -> None:
    slurm_clear()
    body = {"tier": "spot", "gpus": 8, "region": "backfill", "accelerator": "H100"}
    try:
        with control_plane(tmp_path) as platform:
            tenant = platform.tenant("acme")
            key = tenant.headers["Authorization"]
            kept, gone = (tenant.post("/v1/leases", json=body).json() for _ in range(2))
            for lease in (kept, gone):
                wait_for(
                    "a lease running",
                    lambda lease=lease: tenant.get(f"/v1/leases/{lease['id']}").json(),
                    lambda v: v["state"] == "running",
                    30,
                )
            before = tenant.get(f"/v1/leases/{kept['id']}").json()
        # Backfill is down; the cluster's admin cancels one lease's job meanwhile.
        job = (
            sacct(gone["id"])["job"]
            or wait_for("sacct", lambda: sacct(gone["id"]), lambda r: r["job"], 30)["job"]
        )
        subprocess.run(["scancel", str(job)], env=slurm_env(), check=True)
        with control_plane(tmp_path) as platform:
            assert platform.runtime.restored["kept"] == 2
            assert platform.runtime.restored["resubmitted"] == 0
            tenant = platform.client(key.removeprefix("Bearer "))
            now = tenant.get(f"/v1/leases/{kept['id']}").json()
            assert now["state"] == "running" and now["started_at"] == before["started_at"]
            ended = wait_for(
                "the cancelled lease ended",
                lambda: tenant.get(f"/v1/leases/{gone['id']}").json(),
                lambda v: v["state"] == "stopped",
                30,
            )
            record = wait_for(
                "sacct's end", lambda: sacct(gone["id"]), lambda r: r["end"].isdigit(), 30
            )
            assert _at(ended["ended_at"]).timestamp() == int(record["end"])
            # Nothing was submitted twice: one job per lease in Slurm's queue and books.
            names = subprocess.run(
                ["squeue", "-h", "-t", "R", "-o", "%j"], env=slurm_env(),
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            assert names.count(kept["id"]) == 1 and gone["id"] not in names
    finally:
        slurm_clear()


@contextmanager
def short_job_memory() -> Iterator[None]:
    """Slurm forgets ended jobs after 2 s instead of 5 min (MinJobAge), for one test: the cluster
    is shared by the tests, which run one at a time."""
    conf = SLURM_CONF.read_text()
    env = slurm_env()
    SLURM_CONF.write_text(conf.replace("MinJobAge=300", "MinJobAge=2"))
    subprocess.run(["scontrol", "reconfigure"], env=env, check=True)
    try:
        yield
    finally:
        SLURM_CONF.write_text(conf)
        subprocess.run(["scontrol", "reconfigure"], env=env, check=True)


def test_a_job_that_left_slurms_queue_while_backfill_was_away_is_read_from_sacct(
    slurm_cluster: None, tmp_path: Path
) -> None:
    slurm_clear()
    body = {"tier": "on_demand", "gpus": 2, "region": "backfill", "accelerator": "H100"}
    try:
        with short_job_memory():
            with control_plane(tmp_path) as platform:
                tenant = platform.tenant("acme")
                key = tenant.headers["Authorization"].removeprefix("Bearer ")
                lease = tenant.post("/v1/leases", json=body).json()
                wait_for(
                    "the lease running",
                    lambda: tenant.get(f"/v1/leases/{lease['id']}").json(),
                    lambda v: v["state"] == "running",
                    30,
                )
            job = wait_for("sacct", lambda: sacct(lease["id"]), lambda r: r["job"], 30)["job"]
            subprocess.run(["scancel", job], env=slurm_env(), check=True)
            wait_for(
                "Slurm forgetting the job",
                lambda: subprocess.run(
                    ["squeue", "-h", "-j", job, "-o", "%i"], env=slurm_env(),
                    capture_output=True, text=True,
                ).stdout.strip(),
                lambda out: out == "",
                150,
            )  # fmt: skip
            with control_plane(tmp_path) as platform:
                assert platform.runtime.restored == {
                    "kept": 1, "resubmitted": 0, "preempted": 0, "failed": 0
                }  # fmt: skip
                tenant = platform.client(key)
                ended = tenant.get(f"/v1/leases/{lease['id']}").json()
                record = sacct(lease["id"])
                assert ended["state"] == "stopped"
                assert _at(ended["ended_at"]).timestamp() == int(record["end"])
                usage = tenant.get("/v1/usage", params={"lease_id": lease["id"]}).json()
                seconds = int(record["end"]) - int(record["start"])
                assert sum(s["seconds"] for s in usage["segments"]) == seconds
    finally:
        slurm_clear()
