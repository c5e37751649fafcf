"""A model deployment on a real Slurm cluster: each replica is a Slurm job that runs llama.cpp's
server on the GPUs Slurm gave it, and the gateway reaches it at its node's address."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from tests.conftest import Platform
from tests.engines.harness import slurm_env
from tests.inference import MODEL, WEIGHTS

openai = pytest.importorskip("openai")
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def ready_replica(platform: Platform, not_id: str | None = None, within: float = 120) -> Any:
    deadline = time.monotonic() + within
    while True:
        (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
        ready = [r for r in deployment["running"] if r["state"] == "ready" and r["id"] != not_id]
        if ready:
            return ready[0]
        assert time.monotonic() < deadline, deployment
        time.sleep(0.25)


def slurm_job(name: str) -> tuple[str, str, str]:
    """(job id, state, node) of the job Backfill named ``name``, as squeue shows it."""
    out = subprocess.run(
        ["squeue", "-h", f"--name={name}", "-o", "%i|%T|%N"],
        env=slurm_env(), capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    job, state, node = out.split("|") if out else ("", "", "")
    return job, state, node


def test_replicas_are_slurm_jobs_serving_the_model_and_one_slurm_ends_is_replaced(
    llama_engine: None, slurm_platform: Platform
) -> None:
    platform = slurm_platform
    (pool,) = platform.runtime.engine.fleet().pools
    created = platform.operator.post(
        "/v1/admin/deployments",
        json={
            "model": MODEL,
            "engine": "llama.cpp",
            "weights": WEIGHTS,
            "replicas": 1,
            "tier": "on_demand",
            "pool": pool.key,
            "gpus": 1,
        },
    )
    assert created.status_code == 201, created.text
    replica = ready_replica(platform)
    job, state, node = slurm_job(replica["id"])
    assert state == "RUNNING"  # Slurm runs the server: no process of Backfill's own
    assert replica["pid"] is None
    assert replica["url"].startswith(f"http://{platform.runtime.engine.address(node)}:")

    key = platform.operator.post("/v1/admin/tenants", json={"name": "acme"}).json()["api_key"]
    ai = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0)
    chat = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
    )
    assert chat.choices[0].message.content
    assert chat.usage.completion_tokens >= 1

    # The job ends under it (an operator's scancel, a node lost): a new job replaces it.
    subprocess.run(["scancel", job], env=slurm_env(), check=True)
    again = ready_replica(platform, not_id=replica["id"])
    assert slurm_job(again["id"])[1] == "RUNNING"
    assert slurm_job(replica["id"])[0] == ""  # the old job is gone
    answer = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4
    )
    assert answer.choices[0].message.content
    ai.close()
