"""The FleetEngine port: the one interface between the control plane and a cluster.

The control plane decides *who may have what at what price*; an engine runs workloads and
enforces priority between tiers. Every engine (the built-in ``sim``, Slurm, Kubernetes) implements
this class and passes the same contract tests.

Time is seconds since the Unix epoch (UTC), as a float, on the engine's own clock: a real cluster's
wall clock, or the sim engine's virtual one. The control plane never reads another clock for
anything an engine did.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from backfill.domain.admission import PoolLoad
from backfill.domain.fleet import Fleet
from backfill.domain.tiers import Tier
from backfill.errors import QuotaExceeded


class WorkloadState(StrEnum):
    QUEUED = "queued"
    """Waiting in the queue for GPUs: internal work, or work whose claimed node went down."""
    PENDING = "pending"
    """Placed, waiting to start: for its start time (reserved) or for noticed holders to stop."""
    RUNNING = "running"
    NOTICED = "noticed"
    """Running, and told it will be stopped at ``stop_at``."""
    ENDED = "ended"


class Outcome(StrEnum):
    STOPPED = "stopped"
    """Stopped on request (by its owner or the control plane)."""
    PREEMPTED = "preempted"
    """Stopped by the engine at the end of its notice."""
    COMPLETED = "completed"
    """Its command ended with exit code 0 (or its period ended: reserved)."""
    FAILED = "failed"
    """Its command ended with a non-zero exit code, or the engine lost it."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    id: str
    tier: Tier
    pool: str
    gpus: int
    owner: str
    """The tenant (leases) or the team (internal work) it belongs to."""
    command: str | None = None
    duration: float | None = None
    """How long the command runs, in seconds: the sim engine's model of a command."""
    start_at: float | None = None
    """Reserved: when the period starts (None: now)."""
    end_at: float | None = None
    """Reserved: when the period ends, and the workload with it."""
    queue: bool = False
    """Wait in the owner's queue when it does not fit (internal work); else refuse at once."""
    keep_idle_nodes: int = 0
    """Refuse rather than leave fewer than this many of the pool's nodes wholly idle: the
    headroom a spot sale keeps for the owner's next jobs."""
    apart_from_owner: bool = False
    """Only on nodes that hold none of the owner's (internal) work: spot kept apart this way
    leaves the owner's own nodes' idle GPUs to its next small jobs, and taking it back frees
    whole nodes."""


@dataclass(frozen=True, slots=True)
class WorkloadView:
    spec: WorkloadSpec
    state: WorkloadState
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    allocation: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Node name → GPU indices on it (what ``CUDA_VISIBLE_DEVICES`` is set to there)."""
    notice_at: float | None = None
    stop_at: float | None = None
    reason: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None


class EventKind(StrEnum):
    STARTED = "started"
    NOTICED = "noticed"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class EngineEvent:
    kind: EventKind
    workload: str
    tier: Tier
    at: float
    allocation: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    notice_at: float | None = None
    stop_at: float | None = None
    reason: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    """When the workload was submitted and started (None: not yet), as sacct's Submit and
    Start: how long it waited, read from the event itself."""


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """One workload as the engine's own accounting records it (Slurm: ``sacct``)."""

    workload: str
    tier: Tier
    pool: str
    """The key of the pool whose GPUs it held."""
    owner: str
    gpus: int
    started_at: float | None
    ended_at: float | None
    """None: still running (or not started)."""
    state: str
    """The engine's own word for it (Slurm's job state: COMPLETED, PREEMPTED, NODE_FAIL...)."""
    engine_id: str
    """The engine's id of it (a Slurm job id)."""

    def gpu_seconds(self, since: float, until: float) -> int:
        """GPU-seconds it held within ``[since, until)`` (whole seconds)."""
        if self.started_at is None:
            return 0
        start = max(self.started_at, since)
        end = min(self.ended_at if self.ended_at is not None else until, until)
        return self.gpus * max(0, int(end - start))


@dataclass(frozen=True, kw_only=True)
class PoolUsage(PoolLoad):
    """A pool's load as an engine reports it."""

    pool: str
    queued_gpus: int = 0
    """GPUs asked for by queued work: the owner's, and reservations waiting for GPUs."""


class FleetEngine(ABC):
    """What every engine does. Methods are safe to call from several threads."""

    name: ClassVar[str]
    runs_commands: ClassVar[bool] = False
    """Whether a workload's ``command`` runs on the nodes it was given (Slurm runs it as the
    job's script), or the engine only holds the GPUs (``sim``) and the caller runs the work
    itself, on this machine."""

    def address(self, node: str) -> str:
        """Where a process that a workload runs on ``node`` is reached over the network."""
        return "127.0.0.1"

    @abstractmethod
    def fleet(self) -> Fleet:
        """The inventory: regions, pools, nodes and GPUs the engine manages."""

    @abstractmethod
    def now(self) -> float:
        """The engine's clock, in epoch seconds (UTC)."""

    @abstractmethod
    def submit(self, spec: WorkloadSpec) -> WorkloadView:
        """Start ``spec`` now (or at ``start_at``), taking GPUs from lower tiers with notice.

        Enforces the tier rule: work of a higher tier may take a preemptible (spot) holder's
        GPUs; the holder is noticed at once and stopped at the end of the pool's notice period,
        and the claimant waits (``pending``) until then. Nothing takes GPUs from internal,
        reserved or on-demand work.

        Raises ``ShapeNotPlaceable`` when the request can never fit the pool's nodes,
        ``InsufficientCapacity`` when it cannot be had now and ``spec.queue`` is false,
        ``QuotaExceeded`` when it would take its owner past its quota (``set_quota``),
        ``NotFound`` for an unknown pool and ``Conflict`` for an id already submitted.
        """

    @abstractmethod
    def set_quota(self, owner: str, gpus: int | None) -> None:
        """At most ``gpus`` GPUs held at once by ``owner``'s leases (every external tier, running
        or waiting to start); None lifts the limit. ``submit`` raises ``QuotaExceeded`` past it."""

    @abstractmethod
    def stop(self, workload_id: str) -> None:
        """Stop a workload at once and free its GPUs. Idempotent: stopping an ended one is a no-op.

        Raises ``NotFound`` for an id the engine never saw.
        """

    @abstractmethod
    def notice(self, workload_id: str, *, reason: str) -> None:
        """Give a running spot or on-demand workload its notice: it is stopped after the pool's
        notice period and ends ``PREEMPTED`` (the control plane notices spot whose price passed
        its ``max_price``, and spot or on-demand whose tenant's prepaid credit ran out).

        Idempotent: a workload already noticed keeps its first notice. Raises ``Conflict`` for a
        reserved or internal workload or one that is not running, ``NotFound`` for an unknown id.
        """

    @abstractmethod
    def set_node_down(self, node: str, *, reason: str) -> None:
        """The node fails, or is taken out of service: every workload holding GPUs on it ends at
        once, ``FAILED`` with ``exit_code`` None, its ``ENDED`` event's ``reason`` naming the node
        (``node <node> down: <reason>``). Its GPUs go to no work until ``set_node_up``; work that
        was only waiting (queued, or pending for GPUs) keeps waiting. ``usage`` counts them
        ``down``, not idle.

        Idempotent: a node already down stays down. Raises ``NotFound`` for an unknown node.
        """

    @abstractmethod
    def set_node_up(self, node: str) -> None:
        """Put a node back in service: its GPUs may be given to work again (waiting work first).

        Idempotent: a node that is up stays up. Raises ``NotFound`` for an unknown node.
        """

    @abstractmethod
    def poll(self) -> list[EngineEvent]:
        """Every event since the last poll, in time order; each event is returned exactly once."""

    @abstractmethod
    def usage(self) -> list[PoolUsage]:
        """GPUs per tier in every pool, now; those of nodes out of service as ``down``."""

    @abstractmethod
    def workload(self, workload_id: str) -> WorkloadView:
        """One workload; ``NotFound`` if unknown."""

    @abstractmethod
    def workloads(self, *, tier: Tier | None = None, active: bool = True) -> list[WorkloadView]:
        """Workloads (only those not ended when ``active``), optionally of one tier."""

    @abstractmethod
    def accounting(self, since: float, until: float) -> list[AccountRecord]:
        """Every workload that held GPUs within ``[since, until)``, as the engine's own
        accounting records it: what metered usage is reconciled against."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the engine holds (connections, threads). Idempotent."""


NOTICEABLE = frozenset({Tier.SPOT, Tier.ON_DEMAND})
"""The tiers the control plane may give a notice (``FleetEngine.notice``)."""


def node_failure(node: str, reason: str) -> str:
    """The ``reason`` of the ``ENDED`` event of work that a node's failure ended."""
    return f"node {node} down: {reason}"


def check_quota(spec: WorkloadSpec, quota: int, held: int) -> None:
    """Raise ``QuotaExceeded`` unless ``spec`` fits its owner's ``quota`` beside ``held`` GPUs."""
    if held + spec.gpus > quota:
        raise QuotaExceeded(
            f"{spec.owner} may hold {quota} GPUs at once; it holds {held} and asks for "
            f"{spec.gpus} more",
            field="gpus",
        )
