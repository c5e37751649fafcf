"""A month of billing through the API, on SQLite and PostgreSQL, checked against a hand computation.

January 2026 on the manual clock (it starts Monday 2026-01-05 00:00 UTC). Spot never re-prices in
this test (``price_interval`` of ten years), so every spot second is at the pool's floor.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.conftest import Platform, start_platform

JAN_5 = datetime(2026, 1, 5, tzinfo=UTC)
H100 = {"region": "us-east", "accelerator": "H100"}  # on-demand 2.99, reserved 2.39
A100_EU = {"region": "eu-west", "accelerator": "A100"}  # spot floor 0.55; 4 nodes × 8 GPUs
MODEL = "smollm2-135m"


@pytest.fixture
def platform(database_url: str) -> Iterator[Platform]:
    yield from start_platform(database_url, price_interval=10 * 366 * 86_400.0)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def advance_to(platform: Platform, moment: datetime) -> None:
    now = at(platform.operator.get("/v1/admin/clock").json()["now"])
    platform.advance(int((moment - now).total_seconds()))


def price(platform: Platform, **body: Any) -> httpx.Response:
    return platform.operator.post("/v1/admin/prices", json=body)


def tokens(platform: Platform, tenant: str, id: str, when: datetime, **units: int) -> None:
    event = {
        "specversion": "1.0",
        "id": id,
        "source": "/gateway/1",
        "type": "backfill.inference.tokens",
        "subject": tenant,
        "time": when.isoformat(),
        "data": {"model": MODEL, "input_tokens": 0, "output_tokens": 0, **units},
    }
    sent = platform.operator.post(
        "/v1/events",
        content=json.dumps(event),
        headers={"Content-Type": "application/cloudevents+json"},
    )
    assert sent.status_code == 200 and sent.json()["accepted"] == 1, sent.text


def test_a_month_with_a_preemption_a_node_failure_and_a_price_change_bills_as_by_hand(
    platform: Platform,
) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    globex = platform.tenant("globex")
    op = platform.operator

    # The price book: on-demand H100 goes up mid-month; the model's output tokens too.
    assert (
        price(
            platform,
            product="gpu",
            item="us-east/H100",
            dimension="on_demand",
            price="3.49",
            effective_from="2026-01-15T00:00:00Z",
        ).status_code
        == 201
    )
    assert (
        price(
            platform, product="inference", item=MODEL, dimension="input", price="0.10"
        ).status_code
        == 201
    )
    assert (
        price(
            platform, product="inference", item=MODEL, dimension="output", price="0.40"
        ).status_code
        == 201
    )
    assert (
        price(
            platform,
            product="inference",
            item=MODEL,
            dimension="output",
            price="0.50",
            effective_from="2026-01-20T00:00:00Z",
        ).status_code
        == 201
    )
    past = price(
        platform,
        product="gpu",
        item="us-east/H100",
        dimension="on_demand",
        price="1.00",
        effective_from="2026-01-04T00:00:00Z",
    )
    assert past.status_code == 422 and past.json()["error"]["field"] == "effective_from"

    on_demand = acme.post("/v1/leases", json={"tier": "on_demand", "gpus": 8, **H100}).json()
    spot = acme.post("/v1/leases", json={"tier": "spot", "gpus": 8, **A100_EU}).json()
    reserved = acme.post(
        "/v1/leases",
        json={
            "tier": "reserved",
            "gpus": 8,
            "start": "2026-01-10T00:00:00Z",
            "end": "2026-01-17T00:00:00Z",
            **H100,
        },
    ).json()
    assert at(on_demand["started_at"]) == JAN_5 and at(spot["started_at"]) == JAN_5
    assert reserved["state"] == "pending"

    # Jan 8: the owner needs the whole eu-west/A100 pool; spot gets its 120 s notice.
    advance_to(platform, datetime(2026, 1, 8, tzinfo=UTC))
    platform.internal(32, **A100_EU, duration=86_400)
    advance_to(platform, datetime(2026, 1, 8, 0, 5, tzinfo=UTC))
    assert acme.get(f"/v1/leases/{spot['id']}").json()["state"] == "preempted"

    advance_to(platform, datetime(2026, 1, 16, tzinfo=UTC))
    listed = next(
        p for p in acme.get("/v1/instance-types").json()["data"] if p["id"] == "us-east/H100"
    )
    assert Decimal(listed["prices"]["on_demand"]) == Decimal("3.49")
    tokens(
        platform,
        tenant,
        "r1",
        datetime(2026, 1, 10, 12, tzinfo=UTC),
        input_tokens=1_000_000,
        output_tokens=2_000_000,
    )

    # Jan 31 20:00: the on-demand lease's node fails.
    advance_to(platform, datetime(2026, 1, 31, 20, tzinfo=UTC))
    tokens(platform, tenant, "r2", datetime(2026, 1, 20, tzinfo=UTC), output_tokens=500_000)
    (node,) = acme.get(f"/v1/leases/{on_demand['id']}").json()["allocation"]
    down = op.post(f"/v1/admin/nodes/{node}/down", json={"reason": "GPU fell off the bus"})
    assert down.status_code == 200, down.text
    failed = acme.get(f"/v1/leases/{on_demand['id']}").json()
    assert failed["state"] == "failed" and failed["exit_code"] is None

    # Not over yet: a draft, but no finalizing.
    draft = op.post("/v1/admin/invoices", json={"month": "2026-01", "tenant_id": tenant})
    assert draft.status_code == 201, draft.text
    invoice_id = draft.json()["data"][0]["id"]
    early = op.post(f"/v1/admin/invoices/{invoice_id}/finalize")
    assert early.status_code == 409
    advance_to(platform, datetime(2026, 2, 1, 6, tzinfo=UTC))
    drafts = op.post("/v1/admin/invoices", json={"month": "2026-01"}).json()["data"]
    assert [d["tenant_name"] for d in drafts] == ["acme"]  # globex used nothing: no invoice
    invoice = drafts[0]
    assert invoice["id"] == invoice_id and invoice["status"] == "draft"

    # ---- the same invoice, by hand ----
    hour = Decimal(3600)
    # On-demand, 8 GPUs: Jan 5 00:00 → Jan 15 00:00 at 2.99 (240 h), → Jan 31 20:00 at 3.49.
    od_old = 8 * 240 * Decimal("2.99")  # 5740.80
    od_new = 8 * (16 * 24 + 20) * Decimal("3.49")  # 404 h: 11279.68
    # Spot, 8 GPUs at the floor 0.55: Jan 5 00:00 → Jan 8 00:02 (the notice's 120 s included).
    spot_seconds = 8 * (3 * 86_400 + 120)
    spot_cost = (spot_seconds * Decimal("0.55") / hour).quantize(Decimal("0.000001"))
    # Reserved, 8 GPUs × 7 days at 2.39, whether used or not.
    reserved_cost = 8 * 7 * 24 * Decimal("2.39")  # 3212.16
    # Tokens: 1M in at 0.10/M; 2M out at 0.40/M (Jan 10); 0.5M out at 0.50/M (Jan 20).
    token_cost = Decimal("0.10") + Decimal("0.80") + Decimal("0.25")
    # SLA: the on-demand lease was to run Jan 5 → Feb 1 (27 days); down for the last 4 hours:
    # availability (27 × 24 − 4) / (27 × 24) = 99.38 % < 99.5 % → 10 % of its charges back.
    sla_credit = (od_old + od_new) / 10
    subtotal = od_old + od_new + spot_cost + reserved_cost + token_cost
    assert spot_cost == Decimal("316.946667")

    lines = {
        (line["kind"], line["tier"] or line["dimension"], line["unit_price"]): line
        for line in invoice["lines"]
    }
    assert Decimal(lines[("usage", "on_demand", "2.99")]["amount"]) == od_old
    assert Decimal(lines[("usage", "on_demand", "3.49")]["amount"]) == od_new
    assert lines[("usage", "on_demand", "3.49")]["quantity"] == 8 * 404 * 3600
    assert Decimal(lines[("usage", "spot", None)]["amount"]) == spot_cost
    assert lines[("usage", "spot", None)]["quantity"] == spot_seconds
    assert Decimal(lines[("commitment", "reserved", "2.39")]["amount"]) == reserved_cost
    assert Decimal(lines[("usage", "input", "0.10")]["amount"]) == Decimal("0.10")
    assert Decimal(lines[("usage", "output", "0.40")]["amount"]) == Decimal("0.80")
    assert Decimal(lines[("usage", "output", "0.50")]["amount"]) == Decimal("0.25")
    credit = lines[("sla_credit", "on_demand", None)]
    assert Decimal(credit["amount"]) == -sla_credit
    evidence = credit["evidence"]
    assert evidence["lease_id"] == on_demand["id"]
    assert evidence["availability_percent"] == "99.3827"
    assert evidence["credit_percent"] == "10"
    assert evidence["window_seconds"] == 27 * 86_400
    assert evidence["downtime_seconds"] == 4 * 3600
    (interruption,) = evidence["interruptions"]
    assert at(interruption["from"]) == datetime(2026, 1, 31, 20, tzinfo=UTC)
    assert "GPU fell off the bus" in interruption["reason"]
    assert len(invoice["lines"]) == 8
    assert Decimal(invoice["subtotal"]) == subtotal
    assert Decimal(invoice["sla_credits"]) == sla_credit
    assert invoice["tax"] is None
    assert Decimal(invoice["total"]) == subtotal - sla_credit
    assert {p["product"]: Decimal(p["amount"]) for p in invoice["products"]} == {
        "gpu": od_old + od_new + spot_cost + reserved_cost,
        "inference": token_cost,
    }

    # Finalized: numbered, immutable, and January is closed to new usage.
    final = op.post(f"/v1/admin/invoices/{invoice_id}/finalize")
    assert final.status_code == 200, final.text
    assert final.json()["status"] == "finalized" and final.json()["number"] == "BF-202601-000001"
    assert op.post(f"/v1/admin/invoices/{invoice_id}/finalize").json() == final.json()
    again = op.post("/v1/admin/invoices", json={"month": "2026-01", "tenant_id": tenant})
    assert again.status_code == 409
    late = platform.operator.post(
        "/v1/events",
        headers={"Content-Type": "application/cloudevents-batch+json"},
        content=json.dumps(
            [
                {
                    "specversion": "1.0",
                    "id": "late",
                    "source": "/gateway/1",
                    "type": "backfill.inference.tokens",
                    "subject": tenant,
                    "time": "2026-01-31T23:00:00Z",
                    "data": {"model": MODEL, "input_tokens": 5, "output_tokens": 5},
                }
            ]
        ),
    )
    assert late.json()["accepted"] == 0 and late.json()["rejected"][0]["field"] == "time"
    assert acme.get(f"/v1/invoices/{invoice_id}").json() == final.json()

    # A credit note corrects it; together they never exceed what was billed.
    spot_line = lines[("usage", "spot", None)]["position"]
    correction = {
        "amount": "16.946667",
        "reason": "spot billed past the owner's claim",
        "line_position": spot_line,
    }
    retry = {"Idempotency-Key": "correction-1"}
    note = op.post(f"/v1/admin/invoices/{invoice_id}/credit-notes", json=correction, headers=retry)
    assert note.status_code == 201, note.text
    assert note.json()["number"] == "CN-000001"
    again = op.post(f"/v1/admin/invoices/{invoice_id}/credit-notes", json=correction, headers=retry)
    assert again.json() == note.json()  # a retry: the same note, not a second one
    reused = op.post(
        f"/v1/admin/invoices/{invoice_id}/credit-notes",
        json={**correction, "amount": "1"},
        headers=retry,
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    too_much = op.post(
        f"/v1/admin/invoices/{invoice_id}/credit-notes",
        json={"amount": "300.000001", "reason": "x", "line_position": spot_line},
    )
    assert too_much.status_code == 422
    corrected = acme.get(f"/v1/invoices/{invoice_id}").json()
    assert Decimal(corrected["amount_due"]) == subtotal - sla_credit - Decimal("16.946667")
    assert Decimal(corrected["total"]) == subtotal - sla_credit  # the invoice itself is unchanged

    # Exports: CSV and FOCUS add up to the same money.
    exported = acme.get(f"/v1/invoices/{invoice_id}/export", params={"format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sum(Decimal(r["amount"]) for r in rows) == Decimal(corrected["amount_due"])
    focus = list(
        csv.DictReader(
            io.StringIO(
                acme.get(f"/v1/invoices/{invoice_id}/export", params={"format": "focus"}).text
            )
        )
    )
    assert sum(Decimal(r["BilledCost"]) for r in focus) == Decimal(corrected["amount_due"])
    categories = sorted({r["ChargeCategory"] for r in focus})
    assert categories == ["Adjustment", "Credit", "Purchase", "Usage"]
    assert {r["InvoiceId"] for r in focus} == {"BF-202601-000001"}

    # Walled off: another tenant sees none of it.
    assert globex.get(f"/v1/invoices/{invoice_id}").status_code == 404
    assert globex.get(f"/v1/invoices/{invoice_id}/export").status_code == 404
    assert globex.get("/v1/invoices").json()["data"] == []
    assert acme.post(f"/v1/admin/invoices/{invoice_id}/finalize").status_code == 403


def test_bad_billing_requests_are_refused_and_change_nothing(platform: Platform) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    op = platform.operator
    for body, field in [
        ({"product": "gpu", "item": "mars/H100", "dimension": "on_demand", "price": "1"}, "item"),
        (
            {"product": "gpu", "item": "us-east/H100", "dimension": "input", "price": "1"},
            "dimension",
        ),
        ({"product": "disk", "item": "x", "dimension": "gb", "price": "1"}, "product"),
        ({"product": "tool", "item": "search", "dimension": "calls", "price": "-1"}, "price"),
        (
            {"product": "tool", "item": "search", "dimension": "calls", "price": "0.0000001"},
            "price",
        ),
        ({"product": "tool", "item": "a b", "dimension": "calls", "price": "1"}, "item"),
    ]:
        refused = price(platform, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]["field"] == field, (body, refused.text)
    assert (
        acme.post(
            "/v1/admin/prices",
            json={"product": "tool", "item": "search", "dimension": "calls", "price": "1"},
        ).status_code
        == 403
    )
    assert (
        price(platform, product="tool", item="search", dimension="calls", price="0.002").status_code
        == 201
    )
    twice = price(
        platform,
        product="tool",
        item="search",
        dimension="calls",
        price="0.003",
        effective_from="2026-02-01T00:00:00Z",
    )
    assert twice.status_code == 201
    retried = price(
        platform,
        product="tool",
        item="search",
        dimension="calls",
        price="0.003",
        effective_from="2026-02-01T00:00:00Z",
    )
    assert retried.status_code == 201 and retried.json() == twice.json()
    clash = price(
        platform,
        product="tool",
        item="search",
        dimension="calls",
        price="0.004",
        effective_from="2026-02-01T00:00:00Z",
    )
    assert clash.status_code == 409
    book = [p for p in acme.get("/v1/prices", params={"product": "tool"}).json()["data"]]
    assert [(p["price"], p["effective_from"] is not None) for p in book] == [
        ("0.002", True),
        ("0.003", True),
    ]

    for month in ["2026-13", "26-01", "2026-1", "2027-01"]:
        bad = op.post("/v1/admin/invoices", json={"month": month, "tenant_id": tenant})
        assert bad.status_code == 422, (month, bad.text)
    assert (
        op.post(
            "/v1/admin/invoices", json={"month": "2026-01", "tenant_id": "ten_nobody"}
        ).status_code
        == 404
    )
    assert op.get("/v1/admin/invoices").json()["data"] == []
    draft = op.post("/v1/admin/invoices", json={"month": "2026-01", "tenant_id": tenant}).json()
    invoice_id = draft["data"][0]["id"]
    assert draft["data"][0]["total"] == "0.00"
    note = op.post(
        f"/v1/admin/invoices/{invoice_id}/credit-notes", json={"amount": "1", "reason": "goodwill"}
    )
    assert note.status_code == 409  # a draft is corrected by drafting it again
    assert op.post("/v1/admin/invoices/inv_nope/finalize").status_code == 404
    assert acme.get("/v1/invoices/inv_nope").status_code == 404
    bad_format = acme.get(f"/v1/invoices/{invoice_id}/export", params={"format": "pdf"})
    assert bad_format.status_code == 422


def test_usage_across_a_month_boundary_is_billed_once_split_at_midnight(
    platform: Platform,
) -> None:
    acme, tenant = platform.tenant_and_id("acme")
    op = platform.operator
    advance_to(platform, datetime(2026, 1, 31, 12, tzinfo=UTC))
    lease = acme.post("/v1/leases", json={"tier": "on_demand", "gpus": 4, **H100}).json()
    reservation = acme.post(
        "/v1/leases",
        json={
            "tier": "reserved",
            "gpus": 8,
            "start": "2026-01-31T18:00:00Z",
            "end": "2026-02-02T00:00:00Z",
            **H100,
        },
    ).json()
    assert reservation["state"] == "pending", reservation
    advance_to(platform, datetime(2026, 2, 1, 12, tzinfo=UTC))
    acme.delete(f"/v1/leases/{lease['id']}")
    advance_to(platform, datetime(2026, 3, 1, tzinfo=UTC))
    january = op.post("/v1/admin/invoices", json={"month": "2026-01"}).json()["data"][0]
    february = op.post("/v1/admin/invoices", json={"month": "2026-02"}).json()["data"][0]
    assert [m["period_start"][:7] for m in (january, february)] == ["2026-01", "2026-02"]
    # 12 h of 4 GPUs at 2.99 on each side of midnight; the reservation 6 h, then 24 h, at 2.39.
    assert Decimal(january["total"]) == 4 * 12 * Decimal("2.99") + 8 * 6 * Decimal("2.39")
    assert Decimal(february["total"]) == 4 * 12 * Decimal("2.99") + 8 * 24 * Decimal("2.39")
    usage = acme.get("/v1/usage").json()
    od_cost = sum(Decimal(s["cost"]) for s in usage["segments"] if s["tier"] == "on_demand")
    assert od_cost == 4 * 24 * Decimal("2.99")  # the meter and the two invoices agree
    assert [i["period_start"][:7] for i in acme.get("/v1/invoices").json()["data"]] == [
        "2026-02",
        "2026-01",
    ]
    assert tenant == january["tenant_id"] == february["tenant_id"]
