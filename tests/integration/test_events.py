"""Usage events through the API, on SQLite and PostgreSQL: exactly once, one by one, walled off."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from tests.conftest import Platform

BATCH = "application/cloudevents-batch+json"
SINGLE = "application/cloudevents+json"


def event(tenant: str, ident: str, *, source: str = "/gateway/1", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": ident,
        "source": source,
        "type": "backfill.inference.tokens",
        "subject": tenant,
        "time": "2026-01-05T00:00:00Z",
        "data": {"model": "smollm2-135m", "input_tokens": 10, "output_tokens": 100, **data},
    }


def send(client: httpx.Client, events: Any, kind: str = BATCH) -> httpx.Response:
    return client.post("/v1/events", content=json.dumps(events), headers={"Content-Type": kind})


def totals(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/meters")
    assert response.status_code == 200, response.text
    return {row["key"]: row for row in response.json()["data"]}


def test_an_event_sent_three_times_in_concurrent_batches_is_counted_once(
    platform: Platform,
) -> None:
    acme, ten = platform.tenant_and_id("acme")
    shared = event(ten, "evt-shared", input_tokens=7, output_tokens=70)
    batches = [
        [event(ten, f"evt-{b}-{i}") for i in range(200)] + [shared] + [shared] for b in range(3)
    ]
    results: list[httpx.Response] = []
    start = threading.Barrier(3)

    def post(batch: list[dict[str, Any]]) -> None:
        with httpx.Client(base_url=platform.url, headers=platform.operator.headers) as client:
            start.wait()
            results.append(send(client, batch))

    threads = [threading.Thread(target=post, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200, 200, 200], [r.text for r in results]
    bodies = [r.json() for r in results]
    assert sum(b["accepted"] for b in bodies) == 601  # 600 distinct events, the shared one once
    assert sum(b["duplicates"] for b in bodies) == 5  # the shared one's five other copies
    assert all(b["rejected"] == [] for b in bodies)
    row = totals(acme)["smollm2-135m"]
    assert row["events"] == 601
    assert row["units"] == {"input_tokens": 600 * 10 + 7, "output_tokens": 600 * 100 + 70}
    # And sent once more, alone, later: still once.
    again = send(platform.operator, shared, SINGLE)
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert totals(acme)["smollm2-135m"]["events"] == 601


def test_a_batch_with_malformed_events_keeps_the_good_ones(platform: Platform) -> None:
    acme, ten = platform.tenant_and_id("acme")
    no_id = event(ten, "x")
    del no_id["id"]
    batch = [
        event(ten, "a"),
        no_id,
        event(ten, "b", input_tokens=-1),
        event(ten, "c"),
        {**event(ten, "d"), "subject": "ten_nobody"},
        {**event(ten, "e"), "type": "backfill.gpu.hours"},
        "not an event",
        event(ten, "f", output_tokens=2.5),
        {**event(ten, "g"), "time": "yesterday"},
        event(ten, "h"),
    ]
    response = send(platform.operator, batch)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (3, 0)
    reasons = {r["index"]: (r["field"], r["message"]) for r in body["rejected"]}
    assert sorted(reasons) == [1, 2, 4, 5, 6, 7, 8]
    assert reasons[1][0] == "id" and "required" in reasons[1][1]
    assert reasons[2][0] == "data.input_tokens"
    assert reasons[4] == ("subject", "no tenant 'ten_nobody'")
    assert reasons[5][0] == "type" and "backfill.inference.tokens" in reasons[5][1]
    assert reasons[6] == (None, "an event is a JSON object")
    assert reasons[7] == ("data.output_tokens", "must be a whole number")
    assert reasons[8][0] == "time"
    assert body["rejected"][1]["id"] == "b" and body["rejected"][1]["source"] == "/gateway/1"
    stored = acme.get("/v1/events").json()["data"]
    assert [e["id"] for e in stored] == ["a", "c", "h"]
    assert stored[0]["data"] == batch[0]["data"] and stored[0]["subject"] == ten
    # Fixed and sent again, the refused ones go in; the good ones are not counted twice.
    fixed = [event(ten, "b"), event(ten, "a")]
    assert send(platform.operator, fixed).json() | {"rejected": []} == {
        "object": "ingest_result",
        "accepted": 1,
        "duplicates": 1,
        "rejected": [],
    }
    assert totals(acme)["smollm2-135m"]["events"] == 4


def test_what_the_endpoint_refuses_changes_nothing(platform: Platform) -> None:
    acme, ten = platform.tenant_and_id("acme")
    op = platform.operator
    plain = op.post("/v1/events", json=[event(ten, "a")])
    assert plain.status_code == 415 and plain.json()["error"]["field"] == "Content-Type"
    broken = op.post("/v1/events", content=b"[{", headers={"Content-Type": BATCH})
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    deep = op.post("/v1/events", content=b"[" * 100_000, headers={"Content-Type": BATCH})
    assert deep.status_code == 400
    not_list = send(op, event(ten, "a"), BATCH)
    assert not_list.status_code == 422 and "array" in not_list.json()["error"]["message"]
    one_bad = send(op, event(ten, "a", input_tokens="many"), SINGLE)
    assert one_bad.status_code == 422
    assert one_bad.json()["error"]["field"] == "data.input_tokens"
    too_many = send(op, [event(ten, f"e{i}") for i in range(10_001)])
    assert too_many.status_code == 422 and "10000" in too_many.json()["error"]["message"]
    huge = op.post("/v1/events", content=b" " * (9 << 20), headers={"Content-Type": BATCH})
    assert huge.status_code == 413
    future = send(op, {**event(ten, "a"), "time": "2027-01-01T00:00:00Z"}, SINGLE)
    assert future.status_code == 422 and "future" in future.json()["error"]["message"]
    # Keys: a tenant's key may not send usage; a meter's key may send and do nothing else.
    assert send(acme, event(ten, "a"), SINGLE).status_code == 403
    assert platform.client(None).post("/v1/events", json=[]).status_code == 401
    meter_key = op.post("/v1/admin/meter-keys")
    assert meter_key.status_code == 201
    meter = platform.client(meter_key.json()["api_key"])
    assert meter.get("/v1/admin/tenants").status_code == 403
    assert meter.get("/v1/events").status_code == 403
    assert acme.get("/v1/events").json()["data"] == []  # nothing above was stored
    assert send(meter, event(ten, "a"), SINGLE).json()["accepted"] == 1


def test_a_tenant_sees_only_its_own_events(platform: Platform) -> None:
    acme, a = platform.tenant_and_id("acme")
    globex, g = platform.tenant_and_id("globex")
    # The same (source, id) for two tenants is two events: the key is per tenant.
    response = send(platform.operator, [event(a, "same"), event(g, "same"), event(g, "other")])
    assert response.json()["accepted"] == 3
    assert [e["subject"] for e in acme.get("/v1/events").json()["data"]] == [a]
    assert totals(globex)["smollm2-135m"]["events"] == 2
    assert totals(acme)["smollm2-135m"]["events"] == 1
    assert acme.get(f"/v1/admin/tenants/{g}/events").status_code == 403
    seen = platform.operator.get(f"/v1/admin/tenants/{g}/events").json()["data"]
    assert sorted(e["id"] for e in seen) == ["other", "same"]
    assert platform.operator.get("/v1/admin/tenants/ten_x/events").status_code == 404


def test_events_page_by_seq_and_filter_by_time_and_type(platform: Platform) -> None:
    acme, ten = platform.tenant_and_id("acme")
    batch = [{**event(ten, f"e{i}"), "time": f"2026-01-04T{i:02d}:00:00Z"} for i in range(5)] + [
        {
            "specversion": "1.0",
            "id": "call-1",
            "source": "/tools",
            "type": "backfill.tool.calls",
            "subject": ten,
            "time": "2026-01-04T10:00:00Z",
            "tenantref": "abc",
            "data": {"tool": "web.search", "calls": 3},
        }
    ]
    assert send(platform.operator, batch).json()["accepted"] == 6
    first = acme.get("/v1/events", params={"limit": 4}).json()
    assert len(first["data"]) == 4 and first["next_after"] == first["data"][-1]["seq"]
    rest = acme.get("/v1/events", params={"after": first["next_after"]}).json()
    assert [e["id"] for e in rest["data"]] == ["e4", "call-1"] and rest["next_after"] is None
    assert rest["data"][1]["extensions"] == {"tenantref": "abc"}
    window = acme.get(
        "/v1/meters", params={"since": "2026-01-04T01:00:00Z", "until": "2026-01-04T03:00:00Z"}
    ).json()["data"]
    assert [(r["key"], r["events"]) for r in window] == [("smollm2-135m", 2)]
    bounds = {"since": "2026-01-04T01:00:00Z", "until": "2026-01-04T03:00:00Z"}
    inside = acme.get("/v1/events", params=bounds).json()["data"]
    assert [e["id"] for e in inside] == ["e1", "e2"]  # from since, up to but not at until
    tools = acme.get("/v1/events", params={"type": "backfill.tool.calls"}).json()["data"]
    assert [e["id"] for e in tools] == ["call-1"]
    assert totals(acme)["web.search"]["units"] == {"calls": 3}
    assert acme.get("/v1/events", params={"type": "nope"}).status_code == 422


@pytest.mark.parametrize("count", [1, 2500])
def test_a_large_batch_goes_in_whole(platform: Platform, count: int) -> None:
    acme, ten = platform.tenant_and_id("acme")
    batch = [event(ten, f"e{i}", input_tokens=i) for i in range(count)]
    assert send(platform.operator, batch).json()["accepted"] == count
    row = totals(acme)["smollm2-135m"]
    assert row["units"]["input_tokens"] == count * (count - 1) // 2
