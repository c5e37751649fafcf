"""Rate limits: requests and tokens per minute, per API key and per tenant, as token buckets.

A limit of N per minute is a bucket of N that refills at N/60 per second. A request takes 1 from
each request bucket and its *estimate* of tokens (prompt + ``max_tokens``) from each token bucket
before it starts; once the engine has counted the real tokens the difference is given back or
taken (a bucket may go below zero: the next requests then wait). A request that does not fit is
refused with the seconds until it would (``Retry-After``), and takes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class Bucket:
    per_minute: int
    level: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> Bucket:
        return cls(per_minute=per_minute, level=float(per_minute), updated=now)

    @property
    def rate(self) -> float:
        """Refill per second."""
        return self.per_minute / 60.0

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(float(self.per_minute), self.level + (now - self.updated) * self.rate)
            self.updated = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` fits (0: it fits now). A cost above the whole bucket waits
        for a full bucket: such a request can never be served within the limit's minute, but it
        must not be refused for ever."""
        self.refill(now)
        need = min(cost, float(self.per_minute)) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def take(self, cost: float) -> None:
        self.level -= cost


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def admit(buckets: Iterable[tuple[Bucket | None, Bucket | None]], tokens: int, now: float) -> int:
    """Take one request and ``tokens`` from every (request bucket, token bucket) pair (None: no
    limit) if all of them have room; else take nothing and return the whole seconds to wait."""
    pairs = list(buckets)
    wait = 0.0
    for requests, token_bucket in pairs:
        if requests is not None:
            wait = max(wait, requests.wait(1, now))
        if token_bucket is not None:
            wait = max(wait, token_bucket.wait(tokens, now))
    if wait > 0:
        return max(1, math.ceil(wait))
    for requests, token_bucket in pairs:
        if requests is not None:
            requests.take(1)
        if token_bucket is not None:
            token_bucket.take(tokens)
    return 0


def headers(buckets: Iterable[tuple[Bucket | None, Bucket | None]], now: float) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers for the tightest request and token buckets: the
    limit, what remains of it now, and when it will be whole again (``6m0s``, ``1.5s``); none
    for a kind of limit that is not set."""
    pairs = list(buckets)
    found: dict[str, str] = {}
    for kind, index in (("requests", 0), ("tokens", 1)):
        chosen = [bucket for pair in pairs if (bucket := pair[index]) is not None]
        if not chosen:
            continue
        for bucket in chosen:
            bucket.refill(now)
        tightest = min(chosen, key=lambda b: b.level / b.per_minute)
        found[f"x-ratelimit-limit-{kind}"] = str(tightest.per_minute)
        found[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(tightest.level)))
        found[f"x-ratelimit-reset-{kind}"] = duration(
            max(0.0, tightest.per_minute - tightest.level) / tightest.rate
        )
    return found


def duration(seconds: float) -> str:
    """A duration as OpenAI writes one in its headers: ``20ms``, ``1.5s``, ``6m0s``."""
    if (milliseconds := math.ceil(seconds * 1000)) < 1000:
        return f"{milliseconds}ms"
    if (tenths := math.ceil(seconds * 10)) < 600:
        return f"{tenths / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"
