"""SLA arithmetic: availability from involuntary interruptions, and the credit it earns.

Promises, per tier (spot promises nothing but its notice):

| tier        | monthly availability | credit of the lease's charges for the month           |
|-------------|----------------------|-------------------------------------------------------|
| ``on_demand`` | 99.5 %               | 10 % below 99.5 %, 30 % below 99.0 %, 100 % below 95.0 % |
| ``reserved``  | 99.9 %               | 10 % below 99.9 %, 30 % below 99.0 %, 100 % below 95.0 % |

(The steps are the public clouds' compute SLAs'.) Availability is measured per lease per month:

- **the window** in which the lease was promised to run: a reservation's period; an on-demand
  lease's time from its start until the tenant stopped it, its command ended, or else the end of
  the month (on-demand runs until the tenant stops it, so an interruption takes the rest of the
  month from it);
- **downtime**: from an involuntary interruption to the end of the window, and for a reservation
  also a late start (from the period's start until it ran);
- an interruption is **involuntary** when the engine lost the lease (failed with no exit code: a
  node failure) or took a firm lease back (preempted, unless for the tenant's own spent credit).

availability = 1 − downtime / window; the credit is the step's percentage of what the lease was
charged in the month, so no credit exceeds what was paid.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from backfill.domain.rating import MICRO, overlap

CREDIT_EXHAUSTED = "credit exhausted"
"""The notice reason when a tenant's own prepaid credit ran out: not an interruption."""
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class SlaPolicy:
    tier: str
    target: Decimal
    """Monthly availability promised, in percent."""
    steps: tuple[tuple[Decimal, Decimal], ...]
    """(availability below which, credit percent), highest threshold first."""

    def credit_percent(self, availability: Decimal) -> Decimal:
        """The credit earned at ``availability`` percent: the deepest step it falls below."""
        earned = Decimal(0)
        for below, percent in self.steps:
            if availability < below:
                earned = percent
        return earned


POLICIES: dict[str, SlaPolicy] = {
    "on_demand": SlaPolicy(
        "on_demand",
        Decimal("99.5"),
        ((Decimal("99.5"), Decimal(10)), (Decimal("99.0"), Decimal(30)), (Decimal(95), HUNDRED)),
    ),
    "reserved": SlaPolicy(
        "reserved",
        Decimal("99.9"),
        ((Decimal("99.9"), Decimal(10)), (Decimal("99.0"), Decimal(30)), (Decimal(95), HUNDRED)),
    ),
}


@dataclass(frozen=True)
class LeaseRun:
    """What the SLA needs to know of a lease."""

    lease_id: str
    tenant_id: str
    tier: str
    pool: str
    gpus: int
    state: str
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None = None
    reason: str | None = None
    """Why it was noticed or ended, as the engine said."""
    start_at: datetime | None = None
    """Reserved: the period."""
    end_at: datetime | None = None


def involuntary(run: LeaseRun) -> bool:
    """Whether the lease's end was an interruption the tenant did not cause."""
    if run.state == "failed":
        return run.exit_code is None
    if run.state == "preempted":
        return run.tier != "spot" and run.reason != CREDIT_EXHAUSTED
    return False


@dataclass(frozen=True)
class Availability:
    lease_id: str
    tier: str
    window_start: datetime
    window_end: datetime
    downtime_seconds: int
    window_seconds: int
    interruptions: tuple[Mapping[str, object], ...]

    @property
    def percent(self) -> Decimal:
        up = Decimal(self.window_seconds - self.downtime_seconds)
        return (up * HUNDRED / Decimal(self.window_seconds)).quantize(Decimal("0.0001"))


def availability(run: LeaseRun, since: datetime, until: datetime) -> Availability | None:
    """The lease's availability within ``[since, until)``; None when it was promised nothing
    there (spot, internal, or no window in it)."""
    if run.tier == "reserved":
        if run.start_at is None or run.end_at is None:
            return None
        start, end = run.start_at, run.end_at
    elif run.tier == "on_demand":
        if run.started_at is None:
            return None
        start = run.started_at
        end = run.ended_at if run.ended_at is not None and not involuntary(run) else until
    else:
        return None
    lo, hi = max(start, since), min(end, until)
    window = overlap(lo, hi, since, until)
    if window == 0:
        return None
    down: list[tuple[datetime, datetime, str]] = []
    if run.tier == "reserved" and run.started_at is None:
        if run.state == "pending" or involuntary(run):  # it never ran
            down.append((start, end, run.reason or "did not start"))
    else:
        if run.tier == "reserved" and run.started_at is not None and run.started_at > start:
            down.append((start, min(run.started_at, end), "started late"))
        if involuntary(run) and run.ended_at is not None:
            down.append((run.ended_at, end, run.reason or run.state))
    seconds = 0
    evidence = []
    for a, b, why in down:
        lost = overlap(a, b, lo, hi)
        if lost == 0:
            continue
        seconds += lost
        evidence.append(
            {
                "from": max(a, lo).isoformat(),
                "until": min(b, hi).isoformat(),
                "seconds": lost,
                "reason": why,
            }
        )
    return Availability(
        lease_id=run.lease_id,
        tier=run.tier,
        window_start=lo,
        window_end=hi,
        downtime_seconds=min(seconds, window),
        window_seconds=window,
        interruptions=tuple(evidence),
    )


def credit(availability: Availability, charged: Decimal) -> tuple[Decimal, Decimal]:
    """(credit percent, credit amount) for a lease charged ``charged`` in the month."""
    percent = POLICIES[availability.tier].credit_percent(availability.percent)
    value = (charged * percent / HUNDRED).quantize(MICRO, rounding=ROUND_HALF_EVEN)
    return percent, value
