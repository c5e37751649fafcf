"""Token buckets for requests and tokens per minute: pure, on a clock passed in."""

from __future__ import annotations

from backfill.domain.ratelimit import Bucket, admit, duration, headers


def test_a_bucket_admits_its_minute_then_says_how_long_to_wait() -> None:
    requests = Bucket.full(3, now=0.0)
    assert [admit([(requests, None)], 0, now=0.0) for _ in range(3)] == [0, 0, 0]
    assert admit([(requests, None)], 0, now=0.0) == 20  # one request refills in 60/3 s
    assert admit([(requests, None)], 0, now=19.5) == 1  # never 0 while it does not fit
    assert admit([(requests, None)], 0, now=20.0) == 0


def test_nothing_is_taken_from_any_bucket_when_one_refuses() -> None:
    key_requests = Bucket.full(100, now=0.0)
    tenant_tokens = Bucket.full(1000, now=0.0)
    assert admit([(key_requests, None), (None, tenant_tokens)], 600, now=0.0) == 0
    assert admit([(key_requests, None), (None, tenant_tokens)], 600, now=0.0) == 12
    assert key_requests.level == 99 and tenant_tokens.level == 400
    tenant_tokens.take(-600)  # the engine counted fewer tokens than estimated: given back
    assert admit([(key_requests, None), (None, tenant_tokens)], 600, now=0.0) == 0


def test_a_request_larger_than_the_whole_minute_waits_for_a_full_bucket() -> None:
    tokens = Bucket.full(100, now=0.0)
    assert admit([(None, tokens)], 5000, now=0.0) == 0  # a full bucket lets it through
    assert tokens.level == -4900  # and the debt makes the next ones wait
    assert admit([(None, tokens)], 1, now=60.0) == 2881  # (1 + 4800) / (100 / 60 s)
    assert admit([], 10**9, now=0.0) == 0  # no limits: no wait


def test_the_headers_show_the_tightest_limit_and_when_it_is_whole_again() -> None:
    key_requests, tenant_requests = Bucket.full(10, 0.0), Bucket.full(600, 0.0)
    tokens = Bucket.full(6000, 0.0)
    assert admit([(key_requests, None), (tenant_requests, tokens)], 1500, 0.0) == 0
    found = headers([(key_requests, None), (tenant_requests, tokens)], 0.0)
    assert found == {
        "x-ratelimit-limit-requests": "10",  # the key's: 9 of 10 left is tighter than 599/600
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",  # 1 request back at 10 a minute
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "4500",
        "x-ratelimit-reset-tokens": "15s",
    }
    assert headers([(None, None)], 0.0) == {}
    key_requests.take(12)  # below zero (a token estimate corrected upwards does that)
    assert headers([(key_requests, None)], 0.0)["x-ratelimit-remaining-requests"] == "0"


def test_durations_read_as_openais() -> None:
    assert [duration(s) for s in (0.0, 0.02, 0.9999, 1.5, 59.99, 60, 360.2)] == [
        "0ms",
        "20ms",
        "1s",
        "1.5s",
        "1m0s",
        "1m0s",
        "6m1s",
    ]
