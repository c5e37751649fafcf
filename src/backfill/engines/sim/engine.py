"""The sim engine: a discrete-event model of a GPU cluster.

State is GPU slots: every GPU of every node is held by at most one workload and claimed by at most
one waiting workload. Timers (command ends, notice ends, reserved periods, the owner's arrivals)
sit in a heap and fire in time order whenever the clock is read, so the same calls at the same
clock readings always give the same events.

The owner's queue is first come, first served, with greedy backfill: when GPUs free up, every
queued job that fits starts, in arrival order.

A reservation sold ahead of its start is given its GPUs when it is sold, as a Slurm reservation is
given its nodes when it is created: from then on no firm work (the owner's, on-demand) is placed on
those nodes; spot may use them until a notice period before the start, when it is noticed. So a
reservation starts on time whatever the owner's load does in between.

A node that is down (``set_node_down``) has none of its GPUs idle: the work on it ended when it
went down, the work that had claimed its GPUs went back to the queue, and nothing is placed on it
until it is up again.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from backfill.domain.fleet import Fleet, Pool
from backfill.domain.placement import (
    Holding,
    NodeState,
    Placement,
    ShapeError,
    check_shape,
    place,
)
from backfill.domain.surplus import NodeHold
from backfill.domain.tiers import Tier, may_preempt
from backfill.engines.base import (
    NOTICEABLE,
    AccountRecord,
    EngineEvent,
    EventKind,
    FleetEngine,
    Outcome,
    PoolUsage,
    WorkloadSpec,
    WorkloadState,
    WorkloadView,
    check_quota,
    node_failure,
)
from backfill.engines.sim.clock import Clock
from backfill.engines.sim.owner import OwnerJob, OwnerSource
from backfill.errors import Conflict, InsufficientCapacity, NotFound, ShapeNotPlaceable
from backfill.placement.pool import DEFAULT_MIX, PoolPlacer

WARM_UP = 12 * 3600.0
OWNER_NODE, SPOT_NODE, RESERVED_NODE = 1, 2, 4
"""A node's placement tags: firm work (the owner's or on-demand) is on it; spot is on it; a
reservation holds some of its GPUs, now or from its start."""

_FIRM = frozenset({Tier.INTERNAL, Tier.ON_DEMAND})
"""Work placed anywhere but on a reservation's nodes, and never taken back."""
_FIRM_WORK, _SPOT_WORK, _RESERVED_WORK = range(3)
"""A workload's kind, as ``_touch`` counts it (from its tier, kept per workload)."""

_COMPLETE, _NOTICE_END, _RESERVED_CLAIM, _RESERVED_BEGIN, _RESERVED_END = range(5)


@dataclass(slots=True)
class _Workload:
    spec: WorkloadSpec
    state: WorkloadState
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    claimed: dict[str, list[int]] = field(default_factory=dict)
    held: dict[str, list[int]] = field(default_factory=dict)
    notice_at: float | None = None
    stop_at: float | None = None
    reason: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None
    earmark: dict[str, int] = field(default_factory=dict)
    """A reservation's GPUs per node, set aside from its sale to its end."""
    held_allocation: dict[str, tuple[int, ...]] | None = None

    def allocation(self) -> dict[str, tuple[int, ...]]:
        """Node → the GPU indices it holds (or, until it starts, claims)."""
        if self.held:  # what a workload holds never changes: read once
            if self.held_allocation is None:
                self.held_allocation = {n: tuple(idx) for n, idx in sorted(self.held.items())}
            return self.held_allocation
        return {node: tuple(idx) for node, idx in sorted(self.claimed.items())}

    def view(self) -> WorkloadView:
        return WorkloadView(
            spec=self.spec,
            state=self.state,
            submitted_at=self.submitted_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            allocation=self.allocation(),
            notice_at=self.notice_at,
            stop_at=self.stop_at,
            reason=self.reason,
            outcome=self.outcome,
            exit_code=self.exit_code,
        )


class SimEngine(FleetEngine):
    name = "sim"

    def __init__(
        self,
        fleet: Fleet,
        clock: Clock,
        *,
        owner: OwnerSource | None = None,
        placement: str = "backfill",
    ) -> None:
        self._fleet = fleet
        self._clock = clock
        self._owner = owner
        self._lock = threading.RLock()
        self._pool_of: dict[str, Pool] = {}
        self._holder: dict[str, list[str | None]] = {}
        self._claim: dict[str, list[str | None]] = {}
        # Kept current by _touch, so placement never rescans a pool's every GPU:
        self._pool_key_of: dict[str, str] = {}
        self._node_order: dict[str, int] = {}  # node → its place in its pool
        self._spot_only: dict[str, set[str]] = {}  # per pool: see node_holds(spot_only=True)
        self._coming: dict[str, set[str]] = {}  # per pool: see coming_nodes
        self._node_free: dict[str, int] = {}
        self._node_spot: dict[str, int] = {}  # GPUs held by running, unclaimed spot work
        self._node_noticed: dict[str, int] = {}  # GPUs held by noticed, unclaimed spot work
        self._pool_free: dict[str, int] = {}
        self._freed: dict[str, int] = {}  # per pool: bumped whenever GPUs free up there
        self._tried: dict[str, int] = {}  # queued work → its pool's _freed at its last try
        self._pool_spot: dict[str, int] = {}
        self._earmark: dict[str, dict[str, int]] = {}  # node → reservation → GPUs set aside
        self._down: dict[str, str] = {}  # node → why it is out of service (none of it idle)
        # Where requests of up to a node go: the placement policy, judged against the request
        # sizes the owner usually submits, so leases leave room for the owner's next jobs.
        mix = owner.sizes if owner is not None else DEFAULT_MIX
        self._placer = {
            pool.key: PoolPlacer(
                [n.name for n in pool.nodes],
                [n.gpus for n in pool.nodes],
                mix=mix,
                policy=placement,
                promised=RESERVED_NODE,
            )
            for pool in fleet.pools
        }
        for pool in fleet.pools:
            self._spot_only[pool.key] = set()
            self._coming[pool.key] = set()
            self._pool_free[pool.key] = pool.gpus
            self._freed[pool.key] = 0
            self._pool_spot[pool.key] = 0
            for index, node in enumerate(pool.nodes):
                self._node_order[node.name] = index
                self._pool_of[node.name] = pool
                self._pool_key_of[node.name] = pool.key
                self._holder[node.name] = [None] * node.gpus
                self._claim[node.name] = [None] * node.gpus
                self._node_free[node.name] = node.gpus
                self._node_spot[node.name] = 0
                self._node_noticed[node.name] = 0
        self._workloads: dict[str, _Workload] = {}
        self._quota: dict[str, int] = {}  # owner → GPUs its leases may hold at once
        self._shapes: set[tuple[str, int]] = set()  # (pool, GPUs) found to fit the pool's shape
        self._kind: dict[str, int] = {}  # workload → _FIRM_WORK, _SPOT_WORK or _RESERVED_WORK
        self._active: set[str] = set()
        self._waiting: set[str] = set()  # placed, waiting for noticed holders (or a start time)
        self._queue: list[str] = []
        self._timers: list[tuple[float, int, int, str]] = []
        self._arrivals: list[tuple[float, int, str]] = []
        """The owner's next arrival per pool (at, seq, pool): a heap of a few, kept apart from
        the timers so that the owner's every job does not go through the big heap."""
        self._seq = 0
        self._events: list[EngineEvent] = []
        self._now = clock.now()
        self._owner_jobs = 0
        self._next_owner_job: dict[str, OwnerJob] = {}
        if owner is not None:
            for pool in fleet.pools:
                self._warm_start(pool, owner)

    # -- the port ---------------------------------------------------------------------------

    def fleet(self) -> Fleet:
        return self._fleet

    def now(self) -> float:
        with self._lock:
            self._advance()
            return self._now

    def submit(self, spec: WorkloadSpec) -> WorkloadView:
        with self._lock:
            self._advance()
            if spec.id in self._workloads:
                raise Conflict(f"workload {spec.id} was already submitted", field="id")
            pool = self._pool(spec.pool)
            if spec.owner in self._quota and spec.tier.external:
                check_quota(spec, self._quota[spec.owner], self._leased_by(spec.owner))
            if (pool.key, spec.gpus) not in self._shapes:
                try:
                    check_shape(spec.gpus, [node.gpus for node in pool.nodes])
                except ShapeError as exc:
                    raise ShapeNotPlaceable(str(exc), field="gpus") from None
                self._shapes.add((pool.key, spec.gpus))
            work = _Workload(spec=spec, state=WorkloadState.PENDING, submitted_at=self._now)
            if spec.start_at is not None and spec.start_at > self._now:
                if not spec.tier.preemptible:
                    work.earmark = self._earmark_for(spec, pool) or {}
                    if not work.earmark and not spec.queue:
                        raise InsufficientCapacity(
                            f"{spec.gpus} {pool.accelerator} GPUs cannot be set aside in"
                            f" {pool.key} now",
                            field="gpus",
                        )
                self._register(work)
                for node, gpus in work.earmark.items():
                    self._earmark.setdefault(node, {})[spec.id] = gpus
                    self._touch(node)
                # Claim a notice period early, so spot in the way is gone by the start.
                claim_at = max(self._now, spec.start_at - pool.notice_seconds)
                self._push(claim_at, _RESERVED_CLAIM, spec.id)
                self._push(spec.start_at, _RESERVED_BEGIN, spec.id)
            else:
                placement = self._place(spec, pool)
                if placement is None and not spec.queue:
                    raise InsufficientCapacity(
                        f"{spec.gpus} {pool.accelerator} GPUs cannot be had in {pool.key} now",
                        field="gpus",
                    )
                self._register(work)
                if placement is None:
                    work.state = WorkloadState.QUEUED
                    self._queue.append(spec.id)
                else:
                    self._take(work, placement)
            if spec.end_at is not None:
                self._push(spec.end_at, _RESERVED_END, spec.id)
            return work.view()

    def set_quota(self, owner: str, gpus: int | None) -> None:
        with self._lock:
            if gpus is None:
                self._quota.pop(owner, None)
            else:
                self._quota[owner] = gpus

    def _leased_by(self, owner: str) -> int:
        works = (self._workloads[wid] for wid in self._active)
        return sum(w.spec.gpus for w in works if w.spec.owner == owner and w.spec.tier.external)

    def stop(self, workload_id: str) -> None:
        with self._lock:
            self._advance()
            work = self._get(workload_id)
            if work.state is WorkloadState.ENDED:
                return
            self._end(work, Outcome.STOPPED, exit_code=None)
            self._schedule()

    def notice(self, workload_id: str, *, reason: str) -> None:
        with self._lock:
            self._advance()
            work = self._get(workload_id)
            if work.state is WorkloadState.NOTICED:
                return
            if work.spec.tier not in NOTICEABLE or work.state is not WorkloadState.RUNNING:
                raise Conflict(
                    f"workload {workload_id} is not a running spot or on-demand workload"
                )
            self._give_notice(work, reason)

    def set_node_down(self, node: str, *, reason: str) -> None:
        with self._lock:
            self._advance()
            self._node(node)
            if node in self._down:
                return
            self._down[node] = reason  # from here _touch counts none of its GPUs idle
            holders = {h for h in self._holder[node] if h is not None}
            claimants = {c for c in self._claim[node] if c is not None} - holders
            for wid in sorted(holders):
                work = self._workloads[wid]
                work.reason = node_failure(node, reason)
                self._end(work, Outcome.FAILED, exit_code=None)
            for wid in sorted(claimants):
                self._requeue(self._workloads[wid])
            self._touch(node)
            self._schedule()

    def set_node_up(self, node: str) -> None:
        with self._lock:
            self._advance()
            self._node(node)
            if self._down.pop(node, None) is None:
                return
            self._touch(node)  # its GPUs are idle again: waiting work is tried on them
            self._schedule()

    def poll(self) -> list[EngineEvent]:
        with self._lock:
            self._advance()
            events, self._events = self._events, []
            return events

    def usage(self) -> list[PoolUsage]:
        with self._lock:
            self._advance()
            return [self._pool_usage(pool) for pool in self._fleet.pools]

    def workload(self, workload_id: str) -> WorkloadView:
        with self._lock:
            self._advance()
            return self._get(workload_id).view()

    def workloads(self, *, tier: Tier | None = None, active: bool = True) -> list[WorkloadView]:
        with self._lock:
            self._advance()
            ids = sorted(self._active) if active else list(self._workloads)
            works = (self._workloads[wid] for wid in ids)
            return [w.view() for w in works if tier is None or w.spec.tier is tier]

    def accounting(self, since: float, until: float) -> list[AccountRecord]:
        with self._lock:
            self._advance()
            return [
                AccountRecord(
                    workload=w.spec.id,
                    tier=w.spec.tier,
                    pool=w.spec.pool,
                    owner=w.spec.owner,
                    gpus=w.spec.gpus,
                    started_at=w.started_at,
                    ended_at=w.ended_at,
                    state=(w.outcome or w.state).value.upper(),
                    engine_id=w.spec.id,
                )
                for w in self._workloads.values()
                if w.started_at is not None
                and w.started_at < until
                and (w.ended_at is None or w.ended_at > since)
            ]

    # -- beyond the port: what a replay's surplus policy reads ----------------------------------

    def idle_nodes(self, pool: str) -> int:
        """Nodes of ``pool`` with every GPU idle and unclaimed."""
        with self._lock:
            self._advance()
            return self._placer[self._pool(pool).key].idle_nodes

    def coming_nodes(self, pool: str) -> int:
        """Nodes of ``pool`` that will be wholly idle once their spot notices run out: they hold
        noticed spot and idle GPUs, nothing else, and are not set aside."""
        with self._lock:
            self._advance()
            return len(self._coming[self._pool(pool).key])

    def node_holds(self, pool: str, *, spot_only: bool = False) -> list[NodeHold]:
        """Every node of ``pool``: its idle GPUs and those held by running or noticed spot.

        ``spot_only``: only the nodes that hold spot work and nothing else but idle GPUs, and
        are not set aside for a reservation (in node order): the nodes whose spot the owner's
        headroom may take back. The engine keeps them as a set, so this costs what it returns."""
        with self._lock:
            self._advance()
            key = self._pool(pool).key
            if spot_only:
                names = sorted(self._spot_only[key], key=self._node_order.__getitem__)
                return [
                    NodeHold(
                        name,
                        len(self._holder[name]),
                        self._node_free[name],
                        self._node_spot[name],
                        self._node_noticed[name],
                    )
                    for name in names
                ]
            return [
                NodeHold(
                    node.name,
                    node.gpus,
                    self._node_free[node.name],
                    self._node_spot[node.name],
                    self._node_noticed[node.name],
                    reserved=node.name in self._earmark,
                )
                for node in self._pool(pool).nodes
            ]

    def spot_on(self, nodes: Iterable[str]) -> list[str]:
        """The running spot workloads (not yet noticed) that hold GPUs on any of ``nodes``."""
        with self._lock:
            self._advance()
            found: set[str] = set()
            for node in nodes:
                for holder in set(self._holder[node]):
                    if (
                        holder is not None
                        and self._kind[holder] == _SPOT_WORK
                        and self._workloads[holder].state is WorkloadState.RUNNING
                    ):
                        found.add(holder)
            return sorted(found)

    # -- time ---------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Fire every timer due by the clock's current reading, in order."""
        target = self._clock.now()
        timers, arrivals = self._timers, self._arrivals
        while True:
            timer = timers[0] if timers else None
            if arrivals and arrivals[0][0] <= target and (timer is None or arrivals[0] < timer):
                at, _, pool = heapq.heappop(arrivals)
                if at > self._now:
                    self._now = at
                self._owner_arrives(self._fleet.pool(pool))
            elif timer is not None and timer[0] <= target:
                heapq.heappop(timers)
                if timer[0] > self._now:
                    self._now = timer[0]
                self._fire(timer[2], timer[3])
            else:
                break
        self._now = max(self._now, target)

    def _push(self, at: float, kind: int, workload_id: str) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, kind, workload_id))

    def _fire(self, kind: int, key: str) -> None:
        work = self._workloads.get(key)
        if work is None or work.state is WorkloadState.ENDED:
            return
        if kind == _COMPLETE and work.state in (WorkloadState.RUNNING, WorkloadState.NOTICED):
            self._end(work, Outcome.COMPLETED, exit_code=0)
        elif kind == _NOTICE_END and work.state is WorkloadState.NOTICED:
            self._end(work, Outcome.PREEMPTED, exit_code=None)
        elif kind == _RESERVED_BEGIN and work.state is WorkloadState.PENDING and work.claimed:
            self._start_if_clear(work)
            return
        elif kind == _RESERVED_CLAIM and work.state is WorkloadState.PENDING and not work.claimed:
            placement = self._earmarked(work) or self._place(
                work.spec, self._fleet.pool(work.spec.pool)
            )
            if placement is None:
                work.state = WorkloadState.QUEUED
                self._queue.append(work.spec.id)
            else:
                self._take(work, placement)
            return
        elif kind == _RESERVED_END:
            self._end(work, Outcome.COMPLETED, exit_code=0)
        else:
            return
        self._schedule()

    # -- placement ----------------------------------------------------------------------------

    def _place(self, spec: WorkloadSpec, pool: Pool) -> Placement | None:
        claimant_may_preempt = may_preempt(spec.tier, Tier.SPOT)
        reachable = self._pool_free[pool.key]
        if claimant_may_preempt:
            reachable += self._pool_spot[pool.key]
        if reachable < spec.gpus:
            return None  # cannot fit whatever the shape: skip the scan
        size = pool.max_node_gpus
        placer = self._placer[pool.key]
        firm = not spec.tier.preemptible  # keeps off the nodes set aside for reservations
        if spec.gpus <= size:
            if not firm:
                avoid = OWNER_NODE if spec.apart_from_owner else 0
                chosen = placer.choose(spec.gpus, keep_idle=spec.keep_idle_nodes, avoid=avoid)
            else:
                # Work that is never taken back keeps off spot's nodes while it can, so that
                # taking spot back frees whole nodes.
                chosen = placer.choose(
                    spec.gpus, keep_idle=spec.keep_idle_nodes, avoid=SPOT_NODE | RESERVED_NODE
                ) or placer.choose(spec.gpus, keep_idle=spec.keep_idle_nodes, avoid=RESERVED_NODE)
            found = None if chosen is None else Placement(((chosen[0], spec.gpus),), frozenset())
        elif placer.idle_nodes - -(-spec.gpus // size) < spec.keep_idle_nodes:
            found = None  # it would take whole nodes the headroom keeps idle
        else:
            # Whole idle nodes, in node order (firm work keeps off the reservations' nodes).
            names = placer.whole_nodes(spec.gpus // size, avoid=RESERVED_NODE if firm else 0)
            found = None if names is None else Placement(_whole(names, size), frozenset())
        if found is not None or not claimant_may_preempt or not self._pool_spot[pool.key]:
            return found  # (with no spot in the pool, preempting finds nothing more)
        smallest = spec.gpus if spec.gpus <= size else size
        candidates = [
            n for n in self._node_states(pool, smallest) if not (firm and n.name in self._earmark)
        ]
        return place(spec.gpus, candidates, may_preempt=True, node_size=size)

    def _earmark_for(self, spec: WorkloadSpec, pool: Pool) -> dict[str, int] | None:
        """GPUs to set aside for a reservation sold now, on nodes without firm work: packed onto
        the nodes other reservations hold where it fits; else idle GPUs where the policy places
        it; else GPUs spot holds now (it is noticed a notice period before the start). Never the
        idle nodes ``keep_idle_nodes`` keeps for the owner."""
        size = pool.max_node_gpus
        placer = self._placer[pool.key]
        if spec.gpus <= size:
            best: tuple[int, str] | None = None
            for node, marks in self._earmark.items():
                if self._pool_of[node] is not pool or node in self._down:
                    continue
                spare = len(self._holder[node]) - sum(marks.values())
                for h, c in zip(self._holder[node], self._claim[node], strict=True):
                    user = c if c is not None else h  # firm work not set aside here takes a GPU
                    if user is not None and user not in marks:
                        spare -= not self._workloads[user].spec.tier.preemptible
                if spare >= spec.gpus:
                    best = min(best or (spare, node), (spare, node))
            if best is not None:
                return {best[1]: spec.gpus}
            chosen = placer.choose(
                spec.gpus, keep_idle=spec.keep_idle_nodes, avoid=OWNER_NODE | RESERVED_NODE
            )
            if chosen is not None:
                return {chosen[0]: spec.gpus}
        else:
            names = placer.whole_nodes(spec.gpus // size, avoid=RESERVED_NODE)
            if names is not None and placer.idle_nodes - len(names) >= spec.keep_idle_nodes:
                return dict(_whole(names, size))
        # Nodes that hold nothing but spot and idle GPUs, the fewest idle first.
        spare_idle = placer.idle_nodes - spec.keep_idle_nodes
        picked: list[str] = []
        candidates = sorted(
            (self._node_free[n.name], n.name)
            for n in pool.nodes
            if n.name not in self._earmark
            and n.gpus >= min(spec.gpus, size)
            and self._node_free[n.name] + self._node_spot[n.name] + self._node_noticed[n.name]
            == n.gpus
        )
        for free, name in candidates:
            if free == len(self._holder[name]):
                if spare_idle <= 0:
                    continue
                spare_idle -= 1
            picked.append(name)
            if len(picked) * size >= spec.gpus:
                break
        if len(picked) * size < spec.gpus:
            return None
        if spec.gpus <= size:
            return {picked[0]: spec.gpus}
        return dict.fromkeys(picked, size)

    def _earmarked(self, work: _Workload) -> Placement | None:
        """A reservation's claim on the GPUs set aside for it: the idle ones first, then those
        of the spot work on them (noticed now, gone by the start)."""
        if not work.earmark or any(node in self._down for node in work.earmark):
            return None
        victims: set[str] = set()
        for node, count in work.earmark.items():
            holders, claims = self._holder[node], self._claim[node]
            free = sum(1 for h, c in zip(holders, claims, strict=True) if h is None and c is None)
            for h, c in zip(holders, claims, strict=True):
                if free >= count:
                    break
                if (
                    c is None
                    and h is not None
                    and h not in victims
                    and self._workloads[h].spec.tier.preemptible
                ):
                    victims.add(h)
                    free += sum(
                        1 for x, y in zip(holders, claims, strict=True) if x == h and y is None
                    )
            if free < count:
                return None  # cannot happen while firm work keeps off the node; queue if it does
        return Placement(tuple(sorted(work.earmark.items())), frozenset(victims))

    def _node_states(self, pool: Pool, smallest: int) -> Iterator[NodeState]:
        """Full node states (with preemptible holdings) of the nodes that could host a claim:
        at least ``smallest`` GPUs, and some of them idle or held by running spot work."""
        for node in pool.nodes:
            if node.gpus < smallest or not (
                self._node_spot[node.name] or self._node_free[node.name]
            ):
                continue  # (a node that is down has neither)
            holders = self._holder[node.name]
            claims = self._claim[node.name]
            free = sum(1 for h, c in zip(holders, claims, strict=True) if h is None and c is None)
            counts: dict[str, int] = {}
            for h, c in zip(holders, claims, strict=True):
                if h is not None and c is None:
                    counts[h] = counts.get(h, 0) + 1
            holdings = []
            for wid, gpus in sorted(counts.items()):
                work = self._workloads[wid]
                if work.spec.tier.preemptible and work.state is WorkloadState.RUNNING:
                    started = work.started_at if work.started_at is not None else self._now
                    lost = (self._now - started) * work.spec.gpus
                    holdings.append(Holding(workload=wid, gpus=gpus, lost_work=lost))
            yield NodeState(name=node.name, gpus=node.gpus, free=free, preemptible=tuple(holdings))

    def _take(self, work: _Workload, placement: Placement) -> None:
        """Claim the placement's GPUs for ``work``; start it if none is held by a victim."""
        wid = work.spec.id
        if not placement.victims and (
            work.spec.start_at is None or work.spec.start_at <= self._now
        ):
            # Idle GPUs for work that may start now: held at once, never claimed.
            held: dict[str, list[int]] = {}
            for node, count in placement.nodes:
                holders, claims = self._holder[node], self._claim[node]
                idle = [i for i, h in enumerate(holders) if h is None and claims[i] is None]
                del idle[count:]
                for i in idle:
                    holders[i] = wid
                held[node] = idle
            self._run(work, held)
            return
        for node, count in placement.nodes:
            holders, claims = self._holder[node], self._claim[node]
            order = sorted(
                (i for i in range(len(holders)) if claims[i] is None),
                key=lambda i: (holders[i] is not None, i),
            )
            chosen = [i for i in order if holders[i] is None or holders[i] in placement.victims][
                :count
            ]
            for i in chosen:
                claims[i] = wid
            work.claimed[node] = sorted(chosen)
            self._touch(node)
        for victim in sorted(placement.victims):
            victim_work = self._workloads[victim]
            if victim_work.state is WorkloadState.RUNNING:
                self._give_notice(victim_work, reason=f"{work.spec.tier.value} work needs the GPUs")
        work.state = WorkloadState.PENDING
        self._waiting.add(wid)
        self._start_if_clear(work)

    def _start_if_clear(self, work: _Workload) -> None:
        if work.spec.start_at is not None and self._now < work.spec.start_at:
            return  # a reservation never starts before its period (its timer starts it then)
        if any(
            self._holder[node][i] is not None for node, idx in work.claimed.items() for i in idx
        ):
            return
        wid = work.spec.id
        for node, idx in work.claimed.items():
            for i in idx:
                self._claim[node][i] = None
                self._holder[node][i] = wid
        held, work.claimed = work.claimed, {}
        self._waiting.discard(wid)
        self._run(work, held)

    def _run(self, work: _Workload, held: dict[str, list[int]]) -> None:
        """Start ``work`` on the GPUs it now holds."""
        wid = work.spec.id
        work.held = held
        work.state = WorkloadState.RUNNING
        for node in held:
            self._touch(node)
        work.started_at = self._now
        if work.spec.duration is not None:
            self._push(self._now + work.spec.duration, _COMPLETE, wid)
        self._emit(work, EventKind.STARTED)

    def _give_notice(self, work: _Workload, reason: str) -> None:
        pool = self._fleet.pool(work.spec.pool)
        work.state = WorkloadState.NOTICED
        work.notice_at = self._now
        work.stop_at = self._now + pool.notice_seconds
        work.reason = reason
        for node in work.held:
            self._touch(node)  # a noticed holder is no longer there to be taken
        self._push(work.stop_at, _NOTICE_END, work.spec.id)
        self._emit(work, EventKind.NOTICED)

    def _end(self, work: _Workload, outcome: Outcome, *, exit_code: int | None) -> None:
        wid = work.spec.id
        if work.state is WorkloadState.QUEUED:
            self._queue.remove(wid)
            self._tried.pop(wid, None)
        work.state = WorkloadState.ENDED
        for node in work.earmark:
            marks = self._earmark[node]
            del marks[wid]
            if not marks:
                del self._earmark[node]
            self._touch(node)
        for node, idx in work.held.items():
            for i in idx:
                self._holder[node][i] = None
            self._touch(node)
        for node, idx in work.claimed.items():
            for i in idx:
                self._claim[node][i] = None
            self._touch(node)
        self._active.discard(wid)
        self._waiting.discard(wid)
        work.outcome = outcome
        work.exit_code = exit_code
        work.ended_at = self._now
        self._emit(work, EventKind.ENDED)
        # A workload stops with its allocation recorded, for accounting; its slots are free now.
        work.claimed = {}

    def _requeue(self, work: _Workload) -> None:
        """Pending work that claimed GPUs of a node gone down: its claims let go, it waits in the
        queue for GPUs again (the notices its claim gave stand)."""
        for node, idx in work.claimed.items():
            for i in idx:
                self._claim[node][i] = None
            self._touch(node)
        work.claimed = {}
        self._waiting.discard(work.spec.id)
        work.state = WorkloadState.QUEUED
        self._queue.append(work.spec.id)

    def _schedule(self) -> None:
        """Start what waits: claimants whose victims are gone, then the queue, by tier."""
        if not self._waiting and not self._queue:
            return
        for wid in sorted(self._waiting):
            work = self._workloads[wid]
            if work.state is WorkloadState.PENDING and work.claimed:
                self._start_if_clear(work)
        queued = sorted(
            self._queue, key=lambda wid: -self._workloads[wid].spec.tier.rank
        )  # stable: arrival order within a tier
        for wid in queued:
            work = self._workloads[wid]
            freed = self._freed[work.spec.pool]
            if self._tried.get(wid) == freed:
                continue  # nothing freed in its pool since it last failed to fit
            placement = self._place(work.spec, self._fleet.pool(work.spec.pool))
            if placement is None:
                self._tried[wid] = freed
            else:
                self._queue.remove(wid)
                self._tried.pop(wid, None)
                self._take(work, placement)

    def _register(self, work: _Workload) -> None:
        self._workloads[work.spec.id] = work
        tier = work.spec.tier
        self._kind[work.spec.id] = (
            _FIRM_WORK if tier in _FIRM else _SPOT_WORK if tier.preemptible else _RESERVED_WORK
        )
        self._active.add(work.spec.id)

    def _touch(self, node: str) -> None:
        """Recount one node after its holders or claims changed (or a holder was noticed)."""
        holders, claims = self._holder[node], self._claim[node]
        kind = self._kind
        spot = noticed = 0
        tags = 0  # OWNER_NODE: firm work holds or claims a GPU; SPOT_NODE: spot holds one
        if claims.count(None) == len(claims):  # nothing claimed (the common case): count holders
            free = holders.count(None)
            idle = tuple([h is None for h in holders])
            if free < len(holders):
                for h in set(holders):
                    if h is None:
                        continue
                    k = kind[h]
                    if k == _SPOT_WORK:
                        tags |= SPOT_NODE
                        if self._workloads[h].state is WorkloadState.RUNNING:
                            spot += holders.count(h)
                        else:
                            noticed += holders.count(h)
                    elif k == _FIRM_WORK:
                        tags |= OWNER_NODE
        else:
            free = 0
            flags = []
            for h, c in zip(holders, claims, strict=True):
                if c is not None and kind[c] == _FIRM_WORK:
                    tags |= OWNER_NODE
                if h is None:
                    flags.append(c is None)
                    free += c is None
                    continue
                flags.append(False)
                k = kind[h]
                if k == _SPOT_WORK:
                    tags |= SPOT_NODE
                    if c is None:
                        if self._workloads[h].state is WorkloadState.RUNNING:
                            spot += 1
                        else:
                            noticed += 1
                elif k == _FIRM_WORK:
                    tags |= OWNER_NODE
            idle = tuple(flags)
        if node in self._down:  # out of service: nothing holds or claims it, none of it is idle
            free = spot = noticed = 0
            idle = (False,) * len(holders)
        pool = self._pool_key_of[node]
        spot_only, coming = self._spot_only[pool], self._coming[pool]
        if node in self._earmark:
            tags |= RESERVED_NODE
            spot_only.discard(node)
            coming.discard(node)
        elif (spot or noticed) and free + spot + noticed == len(holders):
            spot_only.add(node)
            if spot:
                coming.discard(node)
            else:
                coming.add(node)
        else:
            spot_only.discard(node)
            coming.discard(node)
        if free > self._node_free[node] or spot > self._node_spot[node]:
            self._freed[pool] += 1
        self._pool_free[pool] += free - self._node_free[node]
        self._pool_spot[pool] += spot - self._node_spot[node]
        self._node_free[node], self._node_spot[node] = free, spot
        self._node_noticed[node] = noticed
        self._placer[pool].update(node, idle, tags=tags)

    # -- the owner's work ---------------------------------------------------------------------

    def _warm_start(self, pool: Pool, owner: OwnerSource) -> None:
        """Open in the owner's steady state: replay the last ``WARM_UP`` seconds of arrivals
        and keep the jobs that would still be running (with what is left of them)."""
        job = owner.next_job(pool, self._now - WARM_UP)
        while job is not None and job.at < self._now:
            left = job.at + job.duration - self._now
            if left > 0:
                self._submit_owner_job(pool, OwnerJob(at=self._now, gpus=job.gpus, duration=left))
            job = owner.next_job(pool, job.at)
        self._expect(pool, job)

    def _schedule_owner_arrival(self, pool: Pool, after: float) -> None:
        assert self._owner is not None
        self._expect(pool, self._owner.next_job(pool, after))

    def _expect(self, pool: Pool, job: OwnerJob | None) -> None:
        """Set the pool's next owner arrival (none when the owner's jobs have run out)."""
        if job is None:
            self._next_owner_job.pop(pool.key, None)
            return
        self._seq += 1
        heapq.heappush(self._arrivals, (job.at, self._seq, pool.key))
        self._next_owner_job[pool.key] = job

    def _owner_arrives(self, pool: Pool) -> None:
        job = self._next_owner_job[pool.key]
        self._submit_owner_job(pool, job)
        self._schedule_owner_arrival(pool, job.at)

    def _submit_owner_job(self, pool: Pool, job: OwnerJob) -> None:
        self._owner_jobs += 1
        spec = WorkloadSpec(
            id=f"internal-{self._owner_jobs:07d}",
            tier=Tier.INTERNAL,
            pool=pool.key,
            gpus=job.gpus,
            owner="owner",
            duration=job.duration,
            queue=True,
        )
        work = _Workload(spec=spec, state=WorkloadState.PENDING, submitted_at=self._now)
        self._register(work)
        placement = self._place(spec, pool)
        if placement is None:
            work.state = WorkloadState.QUEUED
            self._queue.append(spec.id)
        else:
            self._take(work, placement)

    # -- reading ------------------------------------------------------------------------------

    def _pool(self, key: str) -> Pool:
        if not self._fleet.has_pool(key):
            raise NotFound(f"no pool {key!r}", field="pool")
        return self._fleet.pool(key)

    def _node(self, name: str) -> Pool:
        """The pool of node ``name``; ``NotFound`` if the fleet has no such node."""
        pool = self._pool_of.get(name)
        if pool is None:
            raise NotFound(f"no node {name!r}", field="node")
        return pool

    def _get(self, workload_id: str) -> _Workload:
        work = self._workloads.get(workload_id)
        if work is None:
            raise NotFound(f"no workload {workload_id!r}")
        return work

    def _pool_usage(self, pool: Pool) -> PoolUsage:
        by_tier: dict[Tier, int] = dict.fromkeys(Tier, 0)
        claimed = down = 0
        for node in pool.nodes:
            out = node.name in self._down  # none of it idle (nothing holds or claims it)
            for h, c in zip(self._holder[node.name], self._claim[node.name], strict=True):
                if h is not None:
                    by_tier[self._workloads[h].spec.tier] += 1
                elif c is not None:
                    claimed += 1
                elif out:
                    down += 1
        queued = sum(
            self._workloads[w].spec.gpus
            for w in self._queue
            if self._workloads[w].spec.pool == pool.key
        )
        return PoolUsage(
            pool=pool.key,
            total=pool.gpus,
            by_tier=by_tier,
            claimed=claimed,
            down=down,
            queued_gpus=queued,
        )

    def _emit(self, work: _Workload, kind: EventKind) -> None:
        self._events.append(
            EngineEvent(
                kind=kind,
                workload=work.spec.id,
                tier=work.spec.tier,
                at=self._now,
                allocation=work.allocation(),
                notice_at=work.notice_at,
                stop_at=work.stop_at,
                reason=work.reason,
                outcome=work.outcome,
                exit_code=work.exit_code,
                submitted_at=work.submitted_at,
                started_at=work.started_at,
            )
        )


def _whole(names: list[str], size: int) -> tuple[tuple[str, int], ...]:
    """Whole nodes as a placement's (node, GPUs) pairs, in node-name order."""
    return tuple((name, size) for name in sorted(names))
