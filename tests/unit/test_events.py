"""CloudEvents checks: every rule says which attribute is wrong; a batch keeps its good events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backfill.domain.events import EventError, parse_batch, parse_event

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)


def good(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "/gateway/1",
        "type": "backfill.inference.tokens",
        "subject": "ten_1",
        "time": "2026-01-05T11:00:00+01:00",
        "data": {"model": "llama-3.1-8b", "input_tokens": 12, "output_tokens": 345},
    }
    for name, value in changes.items():
        if value is ...:
            event.pop(name, None)
        else:
            event[name] = value
    return event


def test_a_good_event_becomes_usage_in_utc() -> None:
    event = parse_event(good(), now=NOW)
    assert (event.source, event.id, event.subject) == ("/gateway/1", "evt-1", "ten_1")
    assert event.time == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert (event.key, event.units) == ("llama-3.1-8b", (12, 345))
    assert json.loads(event.data) == good()["data"] and event.extensions is None


def test_time_defaults_to_receipt_and_extensions_are_kept() -> None:
    event = parse_event(good(time=..., region="eu", attempt=2), now=NOW)
    assert event.time == NOW
    assert json.loads(event.extensions or "") == {"region": "eu", "attempt": 2}
    tools = parse_event(
        good(type="backfill.tool.calls", data={"tool": "web.search", "calls": 4}), now=NOW
    )
    assert (tools.key, tools.units) == ("web.search", (4, 0))


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"specversion": "0.3"}, "specversion", "1.0"),
        ({"specversion": ...}, "specversion", "1.0"),
        ({"id": ...}, "id", "required"),
        ({"id": ""}, "id", "required"),
        ({"id": 7}, "id", "string"),
        ({"id": "x" * 256}, "id", "longer than 255"),
        ({"id": "evt\x00-1"}, "id", "NUL"),
        ({"source": ...}, "source", "required"),
        ({"source": "/gateway\x00"}, "source", "NUL"),
        ({"type": "backfill.inference.tokens\x00"}, "type", "NUL"),
        ({"subject": "ten_1\x00"}, "subject", "NUL"),
        ({"type": "com.example.other"}, "type", "unknown type"),
        ({"subject": ...}, "subject", "tenant"),
        ({"subject": "t" * 65}, "subject", "tenant"),
        ({"time": "2026-01-05 11:00"}, "time", "offset"),
        ({"time": "soon"}, "time", "RFC 3339"),
        ({"time": 1736074800}, "time", "RFC 3339"),
        ({"time": (NOW + timedelta(minutes=6)).isoformat()}, "time", "future"),
        ({"datacontenttype": "text/plain"}, "datacontenttype", "application/json"),
        ({"data_base64": "AAAA"}, "data_base64", "JSON"),
        ({"data": [1, 2]}, "data", "object"),
        ({"data": ...}, "data", "object"),
        ({"data": {"input_tokens": 1, "output_tokens": 1}}, "data.model", "name"),
        ({"data": {"model": "a b", "input_tokens": 1, "output_tokens": 1}}, "data.model", "name"),
        ({"data": {"model": "m", "input_tokens": True, "output_tokens": 1}}, "data.input_tokens",
         "whole number"),
        ({"data": {"model": "m", "input_tokens": 1.0, "output_tokens": 1}}, "data.input_tokens",
         "whole number"),
        ({"data": {"model": "m", "input_tokens": 1, "output_tokens": -1}}, "data.output_tokens",
         "0.."),
        ({"data": {"model": "m", "input_tokens": 10**16, "output_tokens": 1}},
         "data.input_tokens", "0.."),
        ({"data": {"model": "m", "input_tokens": 1, "output_tokens": 1, "note": "x" * 3000}},
         "data", "2048"),
        ({"data": {"model": "m", "input_tokens": 1, "output_tokens": 1, "big": 2**70}},
         "data", "JSON"),
        ({"Region": "eu"}, "Region", "lower-case"),
        ({"region": {"nested": 1}}, "region", "string, integer or boolean"),
    ],
)  # fmt: skip
def test_each_rule_names_the_attribute_at_fault(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(good(**changes), now=NOW)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_a_batch_keeps_the_good_events_and_says_where_the_bad_ones_are() -> None:
    items = [good(id="a"), "junk", good(id="c", subject=...), None, good(id="e")]
    events, rejected = parse_batch(items, now=NOW)
    assert [(index, e.id) for index, e in events] == [(0, "a"), (4, "e")]
    assert [(r.index, r.field, r.id) for r in rejected] == [
        (1, None, None),
        (2, "subject", "c"),
        (3, None, None),
    ]
