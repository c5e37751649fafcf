"""The gateway's vLLM path: what it asks of vLLM's server and what it makes of the answers.

vLLM needs a GPU, which no machine of this project has, so its server is played by
``tests/fake_vllm.py``, written to vLLM's documented API (a fake for an outside party we cannot
run here); the supervisor starts it with the very command, environment and key it would give
``vllm serve``. Everything else — supervisor, gateway, metering, the store — is real.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backfill.inference.workers import WorkerSpec, command, environment
from tests.conftest import Platform, start_platform

openai = pytest.importorskip("openai")

FAKE = Path(__file__).resolve().parents[1] / "fake_vllm.py"
MODEL = "llama-3-8b"


def fake_vllm(spec: WorkerSpec, host: str, port: int, log_path: Path | None) -> Any:
    argv = command(spec, host=host, port=port)
    assert argv[:3] == ["vllm", "serve", spec.weights]  # vLLM's documented CLI
    return subprocess.Popen(
        [sys.executable, str(FAKE), *argv[3:]],
        env=environment(spec),  # VLLM_API_KEY among it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    for platform in start_platform(database_url, data_dir=tmp_path / "state"):
        platform.runtime.supervisor.launcher = fake_vllm
        yield platform


def deploy(platform: Platform) -> dict[str, Any]:
    body = {"model": MODEL, "engine": "vllm", "weights": "meta-llama/Meta-Llama-3-8B-Instruct"}
    created = platform.operator.post("/v1/admin/deployments", json=body)
    assert created.status_code == 201, created.text
    deadline = time.monotonic() + 60
    while True:
        (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
        ready = [r for r in deployment["running"] if r["state"] == "ready"]
        if ready:
            return dict(ready[0])
        assert time.monotonic() < deadline, deployment
        time.sleep(0.1)


def meter(platform: Platform, key: str, events: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        meters = httpx.get(
            f"{platform.url}/v1/meters", headers={"Authorization": f"Bearer {key}"}
        ).json()["data"]
        found = [m for m in meters if m["type"] == "backfill.inference.tokens"]
        if found and found[0]["events"] == events:
            return dict(found[0])
        assert time.monotonic() < deadline, meters
        time.sleep(0.05)


def test_vllm_streams_are_billed_from_its_counts_and_its_running_count_is_not_passed_on(
    served: Platform,
) -> None:
    platform = served
    key = platform.operator.post("/v1/admin/tenants", json={"name": "acme"}).json()["api_key"]
    replica = deploy(platform)
    ai = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0)
    platform.clients.append(ai)
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "one two three"}]}

    chunks = list(
        ai.chat.completions.create(
            **ask, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.usage is None for c in chunks if c.choices)  # vLLM's count, asked by us
    assert chunks[-1].usage.completion_tokens == 6 and chunks[-1].usage.prompt_tokens == 3
    plain = list(ai.chat.completions.create(**ask, max_tokens=4, stream=True))
    assert all(c.usage is None for c in plain)  # not asked for: no usage chunk either
    assert meter(platform, key, events=2)["units"] == {"input_tokens": 6, "output_tokens": 10}

    # Abandoned after a few chunks: billed what vLLM had counted when the gateway let go.
    seen = 0
    with httpx.stream(
        "POST",
        f"{platform.url}/v1/chat/completions",
        json={**ask, "max_tokens": 400, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as answer:
        for line in answer.iter_lines():
            seen += line.startswith("data: {")
            if seen == 5:
                break
    units = meter(platform, key, events=3)["units"]
    assert units["input_tokens"] == 9
    assert 10 + 5 <= units["output_tokens"] < 10 + 400

    # Only the gateway may use the replica: without its key, vLLM's server refuses.
    assert httpx.post(f"{replica['url']}/v1/chat/completions", json=ask).status_code == 401
