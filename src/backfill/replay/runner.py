"""Replay an owner's trace with a surplus policy, and count what leasing would have done.

The owner's recorded jobs are the internal work of a ``SimEngine`` on a fleet of the trace's size
(multi-GPU jobs on whole nodes; the owner's queue first come, first served with greedy backfill:
whenever GPUs free up, every queued job that fits starts, in arrival order — Slurm's backfill
without its reservations for the queue's head, which the trace's short queues rarely need). The
market model's buyers ask for leases; the surplus policy (``backfill.domain.surplus``) decides
which are sold, and gives spot its notices when the owner's headroom runs low.

Time moves from event to event: every owner arrival, every buyer's ask and every hour. Whatever
the engine did in between reaches the ledger as events, so every GPU-second is counted from the
engine's own starts and ends:

- ``gpu_seconds[tier]`` integrates the GPUs each tier runs on over the measured window (the
  trace's first submission to its last); ``idle`` is the rest, so the five always add up to
  capacity × time, and the ledger checks at every event that no more GPUs run than exist;
- each lease is billed for its running seconds inside the window (spot at the price in force each
  second: the price moves with the pool's utilisation), in exact decimal;
- the owner's waits are measured on every job, after the market closes at the window's end and
  the owner's queue drains.

The demand the forecast learns is what the policy could see: each hour's peak of the owner's
GPUs running or queued. The forecast is refitted every midnight (UTC) on everything seen so far;
before it has a week of history, nothing is sold under the floor.
"""

from __future__ import annotations

import bisect
import gc
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from backfill.domain.fleet import Fleet, Pool
from backfill.domain.forecast import MIN_HISTORY_HOURS, DemandForecast, fit
from backfill.domain.pricing import list_price, spot_price
from backfill.domain.surplus import (
    Commitment,
    SurplusPolicy,
    committed_peak,
    floor_room,
    is_breach,
    nodes_to_free,
    spot_refusal,
)
from backfill.domain.tiers import EXTERNAL_TIERS, Tier
from backfill.engines.base import (
    EngineEvent,
    EventKind,
    Outcome,
    WorkloadSpec,
    WorkloadView,
)
from backfill.engines.sim import ManualClock, SimEngine, TraceOwner
from backfill.errors import BackfillError
from backfill.replay.market import HOUR, LeaseRequest, Market
from backfill.traces import Trace

TIERS = (Tier.INTERNAL, *EXTERNAL_TIERS)
MICRO = Decimal("0.000001")
"""Money is reported in micro-units."""
FORECAST_LEAD = 24
"""Hours ahead of the forecast band the report draws against what happened."""

Progress = Callable[[float], None]
"""Called with the share of the replay done, 0..1."""


@dataclass
class Lease:
    request: LeaseRequest
    started: float | None = None
    ended: float | None = None
    notice_at: float | None = None
    billed_seconds: int = 0
    """Running seconds inside the measured window."""


@dataclass
class RunResult:
    """One replay: a trace, a fleet, a market, a policy."""

    policy: SurplusPolicy
    start: int
    end: int
    capacity: int
    gpu_seconds: dict[Tier, int]
    idle_gpu_seconds: int
    revenue: dict[Tier, Decimal]
    waits: np.ndarray
    leases: dict[str, Lease]
    asked: Counter[Tier]
    refused: Counter[str]
    spot_notices: int
    spot_stops: int
    notice_violations: int
    sla_breaches: int
    headroom_notices: int
    hourly: np.ndarray
    """GPU-seconds per hour of the window: rows are hours, columns internal, reserved,
    on-demand, spot, idle."""
    demand: np.ndarray
    """Each hour's peak of the owner's GPUs running or queued."""
    band: np.ndarray
    """Per hour: the forecast made ``FORECAST_LEAD`` hours before of that hour's demand at
    q = 0.5 and at the policy's confidence (NaN where there was no forecast yet)."""
    internal_job_gpu_seconds: int = 0
    """The owner's GPU-seconds in the window counted job by job (the ledger counts by event)."""
    views: dict[str, WorkloadView] = field(default_factory=dict)
    """Every lease as the engine saw it at the end."""
    replay_seconds: float = 0.0
    breaches: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def sold_gpu_seconds(self) -> int:
        return sum(self.gpu_seconds[t] for t in EXTERNAL_TIERS)

    @property
    def total_revenue(self) -> Decimal:
        return sum(self.revenue.values(), Decimal(0))

    def wait(self, q: float) -> float:
        if not len(self.waits):
            return 0.0
        return float(np.quantile(self.waits, q, method="inverted_cdf"))


class _Ledger:
    """GPU-seconds per tier, from the engine's events, clipped to the window."""

    def __init__(self, capacity: int, start: int, end: int, pool: Pool) -> None:
        self.capacity = capacity
        self.start, self.end = start, end
        self.prices = pool.prices
        self.running: dict[Tier, int] = dict.fromkeys(TIERS, 0)
        self.gpu_seconds: dict[Tier, int] = dict.fromkeys(TIERS, 0)
        self.spot_cent_seconds = 0  # Σ spot GPUs × price in cents × seconds
        hours = math.ceil((end - start) / HOUR)
        self._hourly = np.zeros((hours, len(TIERS) + 1))
        self._hour = 0  # the hour ``_row`` accumulates, added to ``_hourly`` when it is done
        self._row = [0.0] * (len(TIERS) + 1)
        self._spot: dict[int, tuple[Decimal, int]] = {}  # GPUs busy → spot price, in cents
        self.at = float(start)
        self.frees = 0  # bumped whenever GPUs free up

    @property
    def hourly(self) -> np.ndarray:
        """GPU-seconds per hour of the window: internal, reserved, on-demand, spot, idle."""
        self._flush()
        return self._hourly

    def _flush(self) -> None:
        if any(self._row):
            self._hourly[self._hour] += self._row
            self._row = [0.0] * (len(TIERS) + 1)

    def advance(self, to: float) -> None:
        if to <= self.at:
            return
        a, b = max(self.at, self.start), min(to, self.end)
        self.at = to
        if b <= a:
            return
        running = self.running
        seconds = round(b - a)
        for tier, gpus in running.items():
            self.gpu_seconds[tier] += gpus * seconds
        if running[Tier.SPOT]:
            self.spot_cent_seconds += running[Tier.SPOT] * self._spot_now()[1] * seconds
        t = a
        while t < b:  # split at hour boundaries for the hourly series
            hour = int((t - self.start) // HOUR)
            if hour != self._hour:
                self._flush()
                self._hour = hour
            edge = min(b, self.start + (hour + 1) * HOUR)
            dt = edge - t
            row, busy = self._row, 0
            for i, gpus in enumerate(running.values()):
                row[i] += gpus * dt
                busy += gpus
            row[-1] += (self.capacity - busy) * dt
            t = edge

    def spot_price(self) -> Decimal:
        """The spot price in force: it moves with the pool's utilisation."""
        return self._spot_now()[0]

    def _spot_now(self) -> tuple[Decimal, int]:
        """The spot price in force and the same in whole cents (computed once per load)."""
        busy = sum(self.running.values())
        spot = self._spot.get(busy)
        if spot is None:
            price = spot_price(self.prices, Decimal(busy) / Decimal(self.capacity))
            spot = self._spot[busy] = (price, int(price * 100))
        return spot

    def change(self, tier: Tier, gpus: int) -> None:
        self.frees += gpus < 0
        self.running[tier] += gpus
        if self.running[tier] < 0 or sum(self.running.values()) > self.capacity:
            raise AssertionError(f"ledger out of balance: {self.running} on {self.capacity} GPUs")


@contextmanager
def _long_lived_objects() -> Iterator[None]:
    """No garbage collector passes while a replay runs (as before, after it).

    A replay makes millions of objects that live to its end (every workload the engine has
    seen) and almost no reference cycles: what it drops, reference counting frees. The
    collector's passes over the living took 30 % of a 1M-job replay (54 s without them, 76 s
    with passes 100,000 allocations apart). Any cycle made meanwhile is collected after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_long_lived_objects()
def replay(
    trace: Trace,
    fleet: Fleet,
    market: Market,
    policy: SurplusPolicy,
    *,
    start: int,
    progress: Progress | None = None,
    placement: str = "backfill",
) -> RunResult:
    """Replay ``trace`` on the fleet's one pool from ``start`` (epoch seconds, UTC)."""
    if len(fleet.pools) != 1:
        raise ValueError("a replay runs on a fleet of one pool (the trace's cluster)")
    began = time.perf_counter()
    (pool,) = fleet.pools
    capacity = pool.gpus
    trace = _whole_seconds(trace)
    last_submit = math.ceil(trace.jobs[-1].submit) if trace.jobs else 0
    end = start + max(HOUR, last_submit)
    clock = ManualClock(float(start))
    owner = TraceOwner(trace, start=start, pools=fleet.pools, default_pool=pool.key)
    engine = SimEngine(fleet, clock, owner=owner, placement=placement)
    ledger = _Ledger(capacity, start, end, pool)
    keep = policy.headroom_nodes(len(pool.nodes)) if policy.spot else 0
    headroom_gpus = keep * pool.max_node_gpus

    requests = market.requests(fleet.pools, start, end) if policy.sells else []
    asked: Counter[Tier] = Counter(r.tier for r in requests)
    refused: Counter[str] = Counter()
    leases: dict[str, Lease] = {}
    commitments: dict[str, Commitment] = {}
    waits: list[float] = []
    counts = {
        "notices": 0,
        "stops": 0,
        "violations": 0,
        "headroom": 0,
        "internal_job_gpu_seconds": 0,
    }
    breaches: list[str] = []

    hours = ledger.hourly.shape[0]
    demand = np.zeros(hours)
    band = np.full((hours, 2), np.nan)
    owner_demand = 0  # GPUs of owner jobs submitted and not ended
    forecast: DemandForecast | None = None
    submits = [start + job.submit for job in trace.jobs]
    arrivals: deque[tuple[float, int]] = deque()  # the owner's arrivals in the surge window
    arriving = 0  # their GPUs
    surge_window = policy.surge * pool.notice_seconds
    gpus_of = [job.gpus for job in trace.jobs]

    def handle(event: EngineEvent) -> None:
        nonlocal owner_demand
        ledger.advance(event.at)
        gpus = sum(map(len, event.allocation.values()))
        if event.tier is Tier.INTERNAL:
            if event.kind is EventKind.STARTED:
                ledger.change(Tier.INTERNAL, gpus)
            elif event.kind is EventKind.ENDED:
                started, submitted = event.started_at, event.submitted_at
                if started is not None and submitted is not None:
                    ledger.change(Tier.INTERNAL, -gpus)
                    waits.append(started - submitted)
                    ran = min(event.at, end) - max(started, start)
                    counts["internal_job_gpu_seconds"] += gpus * max(0, round(ran))
                else:  # ended before it started: it holds nothing, but was counted as asked
                    gpus = engine.workload(event.workload).spec.gpus
                owner_demand -= gpus
            return
        lease = leases[event.workload]
        if event.kind is EventKind.STARTED:
            lease.started = event.at
            ledger.change(event.tier, gpus)
        elif event.kind is EventKind.NOTICED:
            lease.notice_at = event.at
            counts["notices"] += 1
        elif event.kind is EventKind.ENDED:
            lease.ended = event.at
            commitments.pop(event.workload, None)
            if lease.started is not None:
                ledger.change(event.tier, -gpus)
                a, b = max(lease.started, start), min(event.at, end)
                lease.billed_seconds = max(0, round(b - a))
            if event.tier is Tier.SPOT and event.outcome is Outcome.PREEMPTED:
                counts["stops"] += 1
                if lease.notice_at is None or event.at - lease.notice_at < pool.notice_seconds:
                    counts["violations"] += 1
            request = lease.request
            closed = event.at >= end and event.outcome is Outcome.STOPPED  # the market closed
            interrupted = event.outcome in (Outcome.PREEMPTED, Outcome.FAILED) or (
                event.outcome is Outcome.STOPPED and not closed
            )
            late = 0.0
            if request.tier is Tier.RESERVED and request.start_at is not None:
                began_at = lease.started if lease.started is not None else event.at
                late = max(0.0, began_at - request.start_at)
            if is_breach(request.tier, interrupted=interrupted, late_seconds=late):
                breaches.append(
                    f"{request.id} ({request.tier.value}): "
                    + ("interrupted" if interrupted else f"started {late:.0f} s late")
                )

    def take_events() -> None:
        for event in engine.poll():
            handle(event)

    def sync(now: float) -> None:
        clock.set(now)
        take_events()
        ledger.advance(now)

    def record_demand(now: float) -> None:
        hour = int((now - start) // HOUR)
        if 0 <= hour < hours:
            demand[hour] = max(demand[hour], owner_demand)

    def headroom_now(now: float) -> int:
        """Whole nodes to keep idle: the policy's share, plus what the owner asked for lately."""
        nonlocal arriving
        while arrivals and arrivals[0][0] <= now - surge_window:
            arriving -= arrivals.popleft()[1]
        return keep + -(-arriving // pool.max_node_gpus) if keep else 0

    def restore_headroom(now: float) -> None:
        want = headroom_now(now)
        if not want:
            return
        idle = engine.idle_nodes(pool.key)
        if idle + engine.coming_nodes(pool.key) >= want:
            return  # (what nodes_to_free would find, without reading every node)
        holds = engine.node_holds(pool.key, spot_only=True)
        targets = nodes_to_free(holds, want, idle=idle)
        if not targets:
            return
        for workload in engine.spot_on(targets):
            engine.notice(workload, reason="the owner's headroom")
            counts["headroom"] += 1
        take_events()

    def refit(now: float) -> None:
        nonlocal forecast
        done = int((now - start) // HOUR)
        if done >= MIN_HISTORY_HOURS:
            forecast = fit(demand[:done], float(start))

    def owner_peak(now: float, until: float) -> float | None:
        if forecast is None:
            return None
        origin = int((now - start) // HOUR) - 1  # the last whole hour seen
        span = (until - (start + (origin + 1) * HOUR)) / HOUR
        if span > forecast.max_hours:
            return None  # beyond the forecast's horizon
        peak = forecast.window_max(demand[: origin + 1], origin, span, policy.confidence)
        return max(peak, owner_demand)

    patience = market.of(pool.key).spot_patience_hours * HOUR
    waiting: list[LeaseRequest] = []  # spot asks waiting for GPUs (persistent), by ask time
    tried_at_frees = -1  # the ledger's frees when the waiting asks were last tried

    def fill(now: float) -> None:
        """Place the waiting spot asks that fit now, oldest first; drop the expired ones."""
        nonlocal tried_at_frees
        if not waiting:
            return
        expired = bisect.bisect_right(waiting, now - patience, key=lambda r: r.at)
        if expired:
            refused["expired"] += expired
            del waiting[:expired]
        if tried_at_frees == ledger.frees or owner_demand > ledger.running[Tier.INTERNAL]:
            return  # nothing freed since the last try, or the owner is queued
        tried_at_frees = ledger.frees
        spare = capacity - sum(ledger.running.values()) - headroom_now(now) * pool.max_node_gpus
        price = ledger.spot_price()
        kept = []
        scanned = 0
        for request in waiting:
            if spare < 1:
                break  # nothing more fits: the rest wait as they are
            scanned += 1
            if request.gpus > spare or (request.bid is not None and request.bid < price):
                kept.append(request)
            elif place(request, now):
                spare -= request.gpus
            else:
                spare = request.gpus - 1  # nothing this size fits: try only smaller ones
                kept.append(request)
        waiting[:scanned] = kept

    def sell(request: LeaseRequest, now: float) -> None:
        reason = decide(request, now)
        if reason is None:
            if place(request, now):
                return
            reason = "no_room_now"
        if request.tier is Tier.SPOT and patience and reason != "spot_not_sold":
            waiting.append(request)  # a persistent spot request: it waits for GPUs
        else:
            refused[reason] += 1

    def place(request: LeaseRequest, now: float) -> bool:
        spec = WorkloadSpec(
            id=request.id,
            tier=request.tier,
            pool=request.pool,
            gpus=request.gpus,
            owner="market",
            duration=None if request.tier is Tier.RESERVED else request.seconds,
            start_at=request.start_at,
            end_at=request.end_at if request.tier is Tier.RESERVED else None,
            keep_idle_nodes=headroom_now(now) if request.tier is not Tier.ON_DEMAND else 0,
            apart_from_owner=request.tier is Tier.SPOT and policy.apart,
        )
        leases[request.id] = Lease(request)
        try:
            engine.submit(spec)
        except BackfillError:
            del leases[request.id]
            return False
        if request.tier is not Tier.SPOT:  # a reservation's GPUs are set aside from its sale
            commitments[request.id] = Commitment(now, request.end_at, request.gpus)
        return True

    def decide(request: LeaseRequest, now: float) -> str | None:
        if request.tier is Tier.SPOT:
            if not policy.spot:
                return "spot_not_sold"
            return spot_refusal(
                owner_queued=owner_demand - ledger.running[Tier.INTERNAL],
                bid=request.bid,
                price=ledger.spot_price(),
                idle_gpus=capacity - sum(ledger.running.values()),
                gpus=request.gpus,
            )
        if not policy.floor:
            return "floor_not_sold"
        peak = owner_peak(now, request.end_at)
        if peak is None:
            return "no_forecast" if forecast is None else "beyond_forecast"
        committed = committed_peak(commitments.values(), request.start_at or now, request.end_at)
        room = floor_room(
            capacity=capacity, headroom_gpus=headroom_gpus, owner_peak=peak, committed=committed
        )
        return None if request.gpus <= room else "over_floor"

    # The timeline: the owner's arrivals, the buyers' asks and the hours, merged in time order.
    hours_at = [start + h * HOUR for h in range(1, hours) if start + h * HOUR < end]
    i_job = i_req = i_hour = 0
    step = max(1, (len(submits) + len(requests)) // 200)
    done_steps = 0
    while i_job < len(submits) or i_req < len(requests) or i_hour < len(hours_at):
        t_job = submits[i_job] if i_job < len(submits) else math.inf
        t_req = requests[i_req].at if i_req < len(requests) else math.inf
        t_hour = hours_at[i_hour] if i_hour < len(hours_at) else math.inf
        now = min(t_job, t_req, t_hour)
        if now == t_hour:
            sync(now)
            record_demand(now)  # the new hour starts with what is running or queued
            if (now - start) % (24 * HOUR) == 0:
                refit(now)
            if forecast is not None:
                lead_hour = int((now - start) // HOUR) + FORECAST_LEAD - 1
                if lead_hour < hours:
                    origin = int((now - start) // HOUR) - 1
                    recent = demand[: origin + 1]
                    band[lead_hour] = (
                        forecast.value(recent, origin, FORECAST_LEAD, 0.5),
                        forecast.value(recent, origin, FORECAST_LEAD, policy.confidence),
                    )
            i_hour += 1
        elif now == t_job:
            sync(now)
            owner_demand += gpus_of[i_job]
            record_demand(now)
            arrivals.append((now, gpus_of[i_job]))
            arriving += gpus_of[i_job]
            restore_headroom(now)
            i_job += 1
        else:
            sync(now)
            sell(requests[i_req], now)
            i_req += 1
        fill(now)
        done_steps += 1
        if progress is not None and done_steps % step == 0:
            progress(min(0.99, (now - start) / (end - start)))

    # The market closes at the window's end: leases stop; the owner's queue drains.
    sync(float(end))
    refused["expired"] += len(waiting)
    for lease_id, lease in leases.items():
        if lease.ended is None:
            engine.stop(lease_id)
    take_events()
    while owner_demand > 0 or engine.workloads(tier=Tier.INTERNAL):  # (the engine's: once)
        clock.advance(HOUR)
        take_events()
    if progress is not None:
        progress(1.0)

    gpu_seconds = dict(ledger.gpu_seconds)
    idle = capacity * (end - start) - sum(gpu_seconds.values())
    fixed = (Tier.ON_DEMAND, Tier.RESERVED)  # billed at list price (spot: by the second above)
    gpu_seconds_at_list = dict.fromkeys(fixed, 0)
    for lease in leases.values():
        if lease.request.tier in gpu_seconds_at_list:
            gpu_seconds_at_list[lease.request.tier] += lease.request.gpus * lease.billed_seconds
    revenue = {
        tier: (list_price(pool.prices, tier, Decimal(0)) * seconds / HOUR).quantize(MICRO)
        for tier, seconds in gpu_seconds_at_list.items()
    }
    revenue[Tier.SPOT] = (Decimal(ledger.spot_cent_seconds) / 100 / HOUR).quantize(MICRO)
    return RunResult(
        policy=policy,
        start=start,
        end=end,
        capacity=capacity,
        gpu_seconds=gpu_seconds,
        idle_gpu_seconds=idle,
        revenue=revenue,
        waits=np.array(sorted(waits)),
        leases=leases,
        asked=asked,
        refused=refused,
        spot_notices=counts["notices"],
        spot_stops=counts["stops"],
        notice_violations=counts["violations"],
        sla_breaches=len(breaches),
        headroom_notices=counts["headroom"],
        hourly=ledger.hourly,
        demand=demand,
        band=band,
        internal_job_gpu_seconds=counts["internal_job_gpu_seconds"],
        views={lease_id: engine.workload(lease_id) for lease_id in leases},
        replay_seconds=time.perf_counter() - began,
        breaches=breaches,
    )


def _whole_seconds(trace: Trace) -> Trace:
    """The trace with submissions and durations in whole seconds (at least one), so that every
    GPU-second and every cent of a replay is counted exactly."""
    if all(float(j.submit).is_integer() and float(j.duration).is_integer() for j in trace.jobs):
        return trace
    jobs = tuple(
        replace(job, submit=float(round(job.submit)), duration=float(max(1, round(job.duration))))
        for job in trace.jobs
    )
    return Trace(jobs, source=trace.source, start=trace.start)
