"""The Slurm engine: the FleetEngine port on a real Slurm cluster, with Slurm enforcing the tiers.

How the tiers become Slurm's own mechanisms (``SlurmEngine.setup`` makes them, idempotently):

- **spot** runs under QOS ``bf_spot_<N>s`` (N: the pool's notice period), ``PreemptMode=cancel``
  and ``GraceTime=N``. The owner's QOS (``normal`` unless told otherwise) and the on-demand QOS
  list it in their ``Preempt``: when the owner's job needs the GPUs, Slurm marks the spot job
  (its ``preempt_time``), sends it SIGTERM, and cancels it N seconds later. The engine reads the
  notice from the job itself (``preempt_time`` and the end time Slurm sets), so a notice is
  reported however it was caused: an owner's job sent with plain ``sbatch`` is enough.
- **on_demand** runs under QOS ``bf_on_demand``: it may preempt spot, and nothing preempts it.
- **internal** is whatever the owner's teams run under their own accounts and QOS: observed, not
  submitted (``submit`` with ``Tier.INTERNAL`` sends a job to the owner's account, for tests and
  replays that play the owner).
- **tenants** become accounts ``bf_<tenant>`` under a parent account ``backfill``, made at a
  tenant's first lease; ``set_quota`` sets ``GrpTRES=gres/gpu=N`` on one.
- **a lease is a job** named after the lease, holding its GPUs on the pool's partition and GPU
  type: running the tenant's command, or a holder that sleeps until stopped (a bare-GPU lease).

What Slurm does not do for us, the engine does:

- A Backfill notice (a spot price above a lease's ``max_price``, a tenant's credit run out; spot
  or on-demand): the engine signals the job's steps as a preemption does (SIGTERM) and shortens
  its time limit to the notice's end, so Slurm ends it even if Backfill is down; the engine
  itself cancels it at the second.
- A node taken out of service (``set_node_down``) is set ``DRAIN`` (nothing new starts on it)
  and then ``DOWN`` (Slurm kills its jobs: ``NODE_FAIL``); the drain outlives its slurmd
  registering again (with ``ReturnToService=2`` a down node is back in service at once), until
  ``set_node_up`` resumes it. A lease's job that a lost node ended (however it was lost) ends
  ``failed``, its reason the node's as Slurm records it. ``usage`` counts the GPUs no job holds
  on a node Slurm starts nothing on (however it got so) ``down``, not idle.
- Slurm checks grace periods every 30 s or so, so a preempted job ends up to that much late; the
  engine cancels a noticed job as soon as its notice has run out, so the owner's job waits no
  longer than the notice.

Events come from comparing each refresh of ``squeue --json`` with the last: a job seen running is
``started`` (at Slurm's start time), one with a ``preempt_time`` is ``noticed``, one that left the
running states has ``ended`` (at Slurm's end time). A job that left the queue before it was seen
ending (Backfill was down longer than ``MinJobAge``) is read from ``sacct``.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from backfill.domain.fleet import DEFAULT_NOTICE_SECONDS, Fleet, Node, Pool, Prices
from backfill.domain.placement import (
    Holding,
    NodeState,
    Placement,
    ShapeError,
    check_shape,
    place,
)
from backfill.domain.tiers import Tier
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
from backfill.engines.slurm.cli import (
    SlurmCLI,
    SlurmRefused,
    expand_hostlist,
    job_allocation,
    per_node_gpus,
    scontrol_records,
    tres_gpus,
)
from backfill.errors import (
    BackfillError,
    Conflict,
    EngineUnavailable,
    InsufficientCapacity,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    ShapeNotPlaceable,
)

PARENT_ACCOUNT = "backfill"
ON_DEMAND_QOS = "bf_on_demand"
RESERVED_QOS = "bf_reserved"
DEFAULT_PRICES = Prices(
    on_demand=Decimal("2.5"), reserved=Decimal("1.8"), spot_floor=Decimal("0.6")
)
DENY = "Flags=DenyOnLimit"
"""A job over its account's limits is refused at ``sbatch`` (a clear error), not left pending."""
REFRESH_SECONDS = 0.5
"""How stale a read of the queue may be before ``poll``/``usage`` read it again."""
NODES_SECONDS = 5.0
"""How stale a read of the nodes' states may be before ``usage`` reads them again (placement
always reads them; ``set_node_down`` and ``set_node_up`` make the next ``usage`` read them)."""
RETRY_SECONDS = 5.0
"""After Slurm failed to answer, reads fail at once for this long (a client's own timeout with an
unreachable controller is ~9 s: the API should not hang that long on every request)."""
ACCOUNTING_LOOKBACK = 90 * 86400.0
"""How far back ``sacct`` is searched for a lease's job that left the queue while Backfill was
away."""

_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "CONFIGURING", "SIGNALING"}
_WAITING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "RESIZING"}
_ENDED_OUTCOME = {
    "COMPLETED": Outcome.COMPLETED,
    "PREEMPTED": Outcome.PREEMPTED,
    "CANCELLED": Outcome.STOPPED,
    "FAILED": Outcome.FAILED,
    "TIMEOUT": Outcome.FAILED,
    "NODE_FAIL": Outcome.FAILED,
    "OUT_OF_MEMORY": Outcome.FAILED,
    "BOOT_FAIL": Outcome.FAILED,
    "DEADLINE": Outcome.FAILED,
    "REVOKED": Outcome.FAILED,
}
_NAME_OK = re.compile(r"[^a-z0-9_]")
_EXTERNAL = {tier.value for tier in Tier if tier.external}
_UNUSABLE = {"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING", "NOT_RESPONDING",
             "POWERED_DOWN", "POWER_DOWN", "POWERING_DOWN", "REBOOT_REQUESTED", "FUTURE",
             "MAINTENANCE", "UNKNOWN"}  # fmt: skip

HOLDER = """#!/bin/sh
# Backfill: holds a bare-GPU lease's GPUs until the lease is stopped{until}.
exec sleep {seconds}
"""
"""Slurm signals a preempted job's steps (not its batch script) at the notice, so the holder hears
nothing until the notice's end, when Slurm's SIGTERM ends it at once."""


def qos_for_spot(notice_seconds: int) -> str:
    return f"bf_spot_{notice_seconds}s"


def account_for(tenant: str) -> str:
    """The Slurm account of a tenant: ``bf_`` and its id in Slurm's alphabet (lower case)."""
    return "bf_" + _NAME_OK.sub("_", tenant.lower())[:60]


@dataclass(slots=True)
class _Job:
    """What the engine knows of one workload (a Slurm job)."""

    spec: WorkloadSpec
    job_id: int | None
    state: WorkloadState
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    allocation: dict[str, tuple[int, ...]] = field(default_factory=dict)
    notice_at: float | None = None
    stop_at: float | None = None
    reason: str | None = None
    outcome: Outcome | None = None
    exit_code: int | None = None
    stop_requested: bool = False
    expired: bool = False
    """A reserved lease's period ran out (the engine ended it)."""

    def view(self) -> WorkloadView:
        return WorkloadView(
            spec=self.spec,
            state=self.state,
            submitted_at=self.submitted_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            allocation=dict(self.allocation),
            notice_at=self.notice_at,
            stop_at=self.stop_at,
            reason=self.reason,
            outcome=self.outcome,
            exit_code=self.exit_code,
        )


@dataclass(frozen=True)
class SlurmConfig:
    conf: Path | None = None
    """The cluster's ``slurm.conf`` (``SLURM_CONF``); None: the clients' default."""
    partition: str | None = None
    """Where leases run and whose nodes make the pools; None: the cluster's default partition."""
    region: str | None = None
    """The pools' region; None: the cluster's name."""
    internal_qos: tuple[str, ...] = ("normal",)
    """The owner's QOS: they preempt spot."""
    internal_account: str = "research"
    """Where ``submit`` sends internal work (jobs played for the owner)."""
    prices: Mapping[str, Prices] = field(default_factory=dict)
    """List prices per accelerator (``H100``); others get ``DEFAULT_PRICES``."""
    notice_seconds: int = DEFAULT_NOTICE_SECONDS
    user: str = field(default_factory=getpass.getuser)
    """The Unix user jobs run as (Backfill's own), made a user of every tenant account."""
    output_dir: Path | None = None
    """Where a lease's command writes its output (``<lease>.out``); None: nowhere."""


class SlurmEngine(FleetEngine):
    name = "slurm"
    runs_commands = True

    def __init__(
        self,
        config: SlurmConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        cli: SlurmCLI | None = None,
        setup: bool = True,
    ) -> None:
        self.config = config or SlurmConfig()
        if self.config.conf is not None and not self.config.conf.is_file():
            raise InvalidRequest(
                f"no Slurm configuration at {self.config.conf}", field="slurm_conf"
            )
        self.cli = cli or SlurmCLI(conf=self.config.conf)
        self._clock = clock
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._by_job_id: dict[int, str] = {}
        self._events: list[EngineEvent] = []
        self._snapshot: list[dict[str, Any]] = []
        self._read_at = -math.inf
        self._accounts: set[str] = set()
        self._quota: dict[str, int] = {}
        self._down: tuple[float, EngineUnavailable] | None = None
        self._lost_read_at = -math.inf
        self._down_reason: dict[str, str] = {}  # node → why set_node_down took it out of service
        self._out_of_service: set[str] = set()  # nodes Slurm starts nothing on, as last read
        self._nodes_read_at = -math.inf
        self._addresses: dict[str, str] = {}
        self._fleet, self._partition = self._inventory()
        if self.config.output_dir is not None:
            self.config.output_dir.mkdir(parents=True, exist_ok=True)
        self._pool_of_node = {n.name: p for p in self._fleet.pools for n in p.nodes}
        self._spot_qos = {qos_for_spot(p.notice_seconds) for p in self._fleet.pools}
        self._ours = self._spot_qos | {ON_DEMAND_QOS, RESERVED_QOS}
        if setup:
            self.setup()
        self._refresh(force=True)  # what happened while Backfill was away arrives as events

    # -- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Make the tiers' QOS and the tenants' parent account (idempotent)."""
        existing = {r["name"] for r in self._show("qos", fields="name")}
        for pool in self._fleet.pools:
            spot = qos_for_spot(pool.notice_seconds)
            if spot not in existing:
                self._sacctmgr("add", "qos", spot)
            grace = f"GraceTime={pool.notice_seconds}"
            self._sacctmgr(
                "modify", "qos", spot, "set", "Priority=0", "PreemptMode=cancel", grace, DENY
            )
        spots = ",".join(sorted(self._spot_qos))
        for qos in (ON_DEMAND_QOS, RESERVED_QOS):
            if qos not in existing:
                self._sacctmgr("add", "qos", qos)
            self._sacctmgr("modify", "qos", qos, "set", "Priority=50", f"Preempt={spots}", DENY)
        for qos in self.config.internal_qos:
            if qos not in existing:
                raise InvalidRequest(
                    f"the owner's QOS {qos!r} does not exist in Slurm", field="internal_qos"
                )
            preempt = self._show("qos", qos, fields="name,preempt")[0]["preempt"]
            current = {name for name in preempt.split(",") if name}
            if not self._spot_qos <= current:
                wanted = ",".join(sorted(current | self._spot_qos))
                self._sacctmgr("modify", "qos", qos, "set", f"Preempt={wanted}")
        accounts = {r["account"] for r in self._show("account", fields="account")}
        if PARENT_ACCOUNT not in accounts:
            self._sacctmgr("add", "account", PARENT_ACCOUNT, "Description=Backfill's tenants")

    def ensure_tenant(self, tenant: str) -> str:
        """The tenant's Slurm account, made (with Backfill's user in it) if it is new."""
        account = account_for(tenant)
        if account in self._accounts:
            return account
        if not self._show("account", account, fields="account"):
            self._sacctmgr(
                "add", "account", account, f"Parent={PARENT_ACCOUNT}", f"Description={tenant}"
            )
        user = self.config.user
        if not self._show("assoc", f"account={account}", f"user={user}", fields="user"):
            qos = ",".join(sorted(self._ours))
            default = sorted(self._spot_qos)[0]
            self._sacctmgr(
                "add", "user", user, f"Account={account}", f"QOS={qos}", f"DefaultQOS={default}"
            )
        self._accounts.add(account)
        return account

    def set_quota(self, owner: str, gpus: int | None) -> None:
        """Slurm's ``GrpTRES=gres/gpu=N`` on the tenant's account: Slurm itself holds any job of
        the account past it, Backfill's or not. Slurm counts only running jobs and leaves a job
        past the limit pending, so ``submit`` also refuses a lease that would pass it, counting
        the leases Slurm has not started yet."""
        with self._lock:
            account = self.ensure_tenant(owner)
            value = "gres/gpu=-1" if gpus is None else f"gres/gpu={int(gpus)}"
            self._sacctmgr("modify", "account", account, "set", f"GrpTRES={value}")
            if gpus is None:
                self._quota.pop(owner, None)
            else:
                self._quota[owner] = int(gpus)

    def _show(self, entity: str, *filters: str, fields: str) -> list[dict[str, str]]:
        return self.cli.records(
            "sacctmgr", "-n", "-P", "show", entity, *filters, f"format={fields}"
        )

    def _sacctmgr(self, *args: str) -> None:
        try:
            self.cli.run("sacctmgr", "-i", *args)
        except Conflict as exc:
            if "Nothing new added" in exc.message or "Nothing modified" in exc.message:
                return
            raise

    # -- inventory ----------------------------------------------------------------------------

    def _inventory(self) -> tuple[Fleet, str]:
        config = self.config
        partitions = scontrol_records(self.cli.run("scontrol", "-o", "show", "partition"))
        if not partitions:
            raise EngineUnavailable("Slurm lists no partitions")
        if config.partition is None:
            chosen = next((p for p in partitions if p.get("Default") == "YES"), partitions[0])
        else:
            chosen = next((p for p in partitions if p["PartitionName"] == config.partition), {})
            if not chosen:
                names = ", ".join(p["PartitionName"] for p in partitions)
                raise InvalidRequest(
                    f"Slurm has no partition {config.partition!r} (it has {names})",
                    field="partition",
                )
        partition = chosen["PartitionName"]
        members = set(expand_hostlist(chosen.get("Nodes", "")))
        region = (
            config.region
            or self.cli.run("scontrol", "show", "config")
            .split("ClusterName", 1)[1]
            .split("=", 1)[1]
            .split()[0]
        )
        by_type: dict[str, list[Node]] = {}
        for record in scontrol_records(self.cli.run("scontrol", "-o", "show", "node")):
            name = record.get("NodeName", "")
            if name not in members:
                continue
            self._addresses[name] = record.get("NodeAddr") or name
            for gres in record.get("Gres", "").split(","):
                bits = gres.split("(")[0].split(":")
                if len(bits) == 3 and bits[0] == "gpu":
                    by_type.setdefault(bits[1].upper(), []).append(Node(name, int(bits[2])))
        if not by_type:
            raise InvalidRequest(
                f"partition {partition!r} has no node with typed GPUs (Gres=gpu:<type>:<n>)",
                field="partition",
            )
        pools = tuple(
            Pool(
                region,
                accelerator,
                tuple(sorted(nodes, key=lambda n: n.name)),
                config.prices.get(accelerator, DEFAULT_PRICES),
                notice_seconds=config.notice_seconds,
            )
            for accelerator, nodes in sorted(by_type.items())
        )
        return Fleet(name=region, pools=pools), partition

    # -- the port -----------------------------------------------------------------------------

    def fleet(self) -> Fleet:
        return self._fleet

    def address(self, node: str) -> str:
        """The node's ``NodeAddr`` (Slurm's own way to reach it; its name by default)."""
        return self._addresses.get(node, node)

    def now(self) -> float:
        return self._clock()

    def submit(self, spec: WorkloadSpec) -> WorkloadView:
        with self._lock:
            if spec.id in self._jobs:
                raise Conflict(f"workload {spec.id} was already submitted", field="id")
            pool = self._pool(spec.pool)
            try:
                check_shape(spec.gpus, [node.gpus for node in pool.nodes])
            except ShapeError as exc:
                raise ShapeNotPlaceable(str(exc), field="gpus") from None
            if spec.tier is Tier.RESERVED and spec.end_at is None:
                raise InvalidRequest("a reserved lease needs the end of its period", field="end")
            if spec.tier.external:  # one fresh read of the queue for the checks below
                self._refresh(force=True)
            if spec.owner in self._quota and spec.tier.external:
                held = sum(
                    job.spec.gpus
                    for job in self._jobs.values()
                    if job.spec.owner == spec.owner
                    and job.spec.tier.external
                    and job.state is not WorkloadState.ENDED
                )
                check_quota(spec, self._quota[spec.owner], held)
            if spec.tier is Tier.INTERNAL:
                account, qos = self.config.internal_account, None
            else:
                account = self.ensure_tenant(spec.owner)
                qos = {Tier.SPOT: qos_for_spot(pool.notice_seconds), Tier.ON_DEMAND: ON_DEMAND_QOS,
                       Tier.RESERVED: RESERVED_QOS}[spec.tier]  # fmt: skip
            extra: list[str] = []
            if spec.tier is Tier.RESERVED:
                extra = self._reserve(spec, pool, account)
            elif not spec.queue and self._place(spec, pool) is None:
                raise InsufficientCapacity(
                    f"{spec.gpus} {pool.accelerator} GPUs cannot be had in {pool.key} now",
                    field="gpus",
                )
            size = max(node.gpus for node in pool.nodes)
            nodes, per_node = (1, spec.gpus) if spec.gpus <= size else (spec.gpus // size, size)
            args = [
                "sbatch",
                "--parsable",
                f"--job-name={spec.id}",
                f"--account={account}",
                f"--partition={self._partition}",
                f"--nodes={nodes}",
                f"--gres=gpu:{pool.accelerator.lower()}:{per_node}",
                "--no-requeue",
                f"--output={self._output(spec)}",
                f"--comment=backfill {spec.tier.value} {spec.owner}",  # read back after a restart
            ]
            if qos is not None:
                args.append(f"--qos={qos}")
            if spec.duration is not None and spec.command is None:
                args.append(f"--time={_minutes(spec.duration + 60)}")
            args += extra
            script = _script(spec)
            submitted = self._clock()
            try:
                out = self.cli.run(*args, input=script)
            except SlurmRefused as exc:
                if spec.tier is Tier.RESERVED:
                    self._unreserve(spec.id)
                if "accounting/QOS policy" in exc.message:
                    raise QuotaExceeded(
                        f"Slurm refused the job past {spec.owner}'s limits: {exc.message}",
                        field="gpus",
                    ) from None
                raise
            except BaseException:
                if spec.tier is Tier.RESERVED:
                    self._unreserve(spec.id)
                raise
            job_id = int(out.strip().split(";")[0])
            job = _Job(
                spec=spec, job_id=job_id, state=WorkloadState.PENDING, submitted_at=submitted
            )
            self._jobs[spec.id] = job
            self._by_job_id[job_id] = spec.id
            with contextlib.suppress(EngineUnavailable):  # it is submitted: say so regardless
                self._refresh(force=True)
            return job.view()

    def stop(self, workload_id: str) -> None:
        with self._lock:
            job = self._get(workload_id)
            if job.state is WorkloadState.ENDED:
                return
            job.stop_requested = True
            self.cli.run("scancel", str(job.job_id))
            if job.spec.tier is Tier.RESERVED:
                self._unreserve(job.spec.id)
            with contextlib.suppress(EngineUnavailable):  # the next read sees the end
                self._refresh(force=True)

    def notice(self, workload_id: str, *, reason: str) -> None:
        with self._lock:
            self._refresh()
            job = self._get(workload_id)
            if job.state is WorkloadState.NOTICED:
                return
            if job.spec.tier not in NOTICEABLE or job.state is not WorkloadState.RUNNING:
                raise Conflict(
                    f"workload {workload_id} is not a running spot or on-demand workload"
                )
            now = self._clock()
            pool = self._pool(job.spec.pool)
            stop_at = math.ceil(now) + pool.notice_seconds  # Slurm's clock counts whole seconds
            # Slurm ends the job at its time limit even if Backfill is down by then (rounded up
            # to Slurm's minute); the engine cancels it at the second itself.
            assert job.started_at is not None
            limit = _minutes(stop_at - job.started_at)
            self.cli.run("scontrol", "update", f"JobId={job.job_id}", f"TimeLimit={limit}")
            self.cli.run("scancel", "--signal=TERM", str(job.job_id))  # its steps, as Slurm does
            job.state = WorkloadState.NOTICED
            job.notice_at, job.stop_at, job.reason = now, stop_at, reason
            self._emit(job, EventKind.NOTICED, now)

    def set_node_down(self, node: str, *, reason: str) -> None:
        with self._lock:
            self._node(node)
            if node in self._down_reason and node not in self._usable_nodes():
                return  # down already: the first reason stands
            self._down_reason[node] = reason
            said = 'Reason="' + reason.replace('"', "'") + '"'  # scontrol splits it unquoted
            for state in ("DRAIN", "DOWN"):  # no new job on it, then its jobs killed
                self.cli.run("scontrol", "update", f"NodeName={node}", f"State={state}", said)
            self._nodes_read_at = -math.inf  # the next usage reads the nodes afresh
            with contextlib.suppress(EngineUnavailable):  # the next read sees the jobs end
                self._refresh(force=True)

    def set_node_up(self, node: str) -> None:
        with self._lock:
            self._node(node)
            try:
                self.cli.run("scontrol", "update", f"NodeName={node}", "State=RESUME")
            except SlurmRefused as exc:  # "Invalid node state": it is in service already
                if "Invalid node state" not in exc.message:
                    raise
            self._down_reason.pop(node, None)
            self._nodes_read_at = -math.inf  # the next usage reads the nodes afresh

    def poll(self) -> list[EngineEvent]:
        with self._lock:
            self._refresh()
            events, self._events = self._events, []
            events.sort(key=lambda e: e.at)
            return events

    def usage(self) -> list[PoolUsage]:
        with self._lock:
            self._refresh()
            by_pool: dict[str, dict[Tier, int]] = {p.key: {} for p in self._fleet.pools}
            queued: dict[str, int] = {p.key: 0 for p in self._fleet.pools}
            out = self._nodes_out_of_service()
            down = {  # the GPUs of nodes out of service ...
                p.key: sum(n.gpus for n in p.nodes if n.name in out) for p in self._fleet.pools
            }
            for job in self._jobs.values():
                if job.state in (WorkloadState.RUNNING, WorkloadState.NOTICED):
                    tiers = by_pool[job.spec.pool]
                    tiers[job.spec.tier] = tiers.get(job.spec.tier, 0) + job.spec.gpus
                    for node, gpus in job.allocation.items():  # ... but those work holds still
                        if node in out:
                            down[job.spec.pool] -= len(gpus)
                elif job.state is WorkloadState.QUEUED or (
                    job.state is WorkloadState.PENDING and job.spec.tier is Tier.INTERNAL
                ):
                    queued[job.spec.pool] += job.spec.gpus
            return [
                PoolUsage(
                    pool=p.key,
                    total=p.gpus,
                    by_tier=by_pool[p.key],
                    down=max(0, down[p.key]),
                    queued_gpus=queued[p.key],
                )
                for p in self._fleet.pools
            ]

    def workload(self, workload_id: str) -> WorkloadView:
        with self._lock:
            self._refresh()
            return self._get(workload_id).view()

    def workloads(self, *, tier: Tier | None = None, active: bool = True) -> list[WorkloadView]:
        with self._lock:
            self._refresh()
            return [
                job.view()
                for job in self._jobs.values()
                if (tier is None or job.spec.tier is tier)
                and not (active and job.state is WorkloadState.ENDED)
            ]

    def accounting(self, since: float, until: float) -> list[AccountRecord]:
        """``sacct``: every job with GPUs that ran within the window on the fleet's nodes,
        Backfill's and the owner's (jobs on nodes of other partitions are not the fleet's)."""
        window = ("-S", _utc(since), "-E", _utc(until))
        document = self.cli.json("sacct", "-X", "--allusers", *window)
        records = []
        for job in document.get("jobs", []):
            gpus = _sacct_gpus(job)
            times = job.get("time", {})
            start, end = _epoch(times.get("start")), _epoch(times.get("end"))
            if gpus <= 0 or start is None or start >= until or (end is not None and end <= since):
                continue
            nodes = expand_hostlist(str(job.get("nodes") or ""))
            pool = next((self._pool_of_node[n] for n in nodes if n in self._pool_of_node), None)
            if pool is None:
                continue
            lease = self._lease_of(job)
            state = str(job.get("state", {}).get("current", ""))
            records.append(
                AccountRecord(
                    workload=str(job.get("name")) if lease else f"slurm-{job['job_id']}",
                    tier=lease[0] if lease else Tier.INTERNAL,
                    pool=pool.key,
                    owner=lease[1] if lease else str(job.get("account") or ""),
                    gpus=gpus,
                    started_at=start,
                    ended_at=end if state not in _RUNNING else None,
                    state=state,
                    engine_id=str(job["job_id"]),
                )
            )
        return records

    # -- reading the cluster ------------------------------------------------------------------

    def _refresh(self, *, force: bool = False) -> None:
        """Read the queue (at most every ``REFRESH_SECONDS`` unless forced) and turn what changed
        into events; cancel noticed jobs whose notice has run out."""
        now = time.monotonic()
        if not force and now - self._read_at < REFRESH_SECONDS:
            return
        if self._down is not None and now - self._down[0] < RETRY_SECONDS:
            raise self._down[1]  # answer at once rather than wait out Slurm's own timeouts again
        try:
            document = self.cli.json("squeue", "--all")
        except EngineUnavailable as exc:
            self._down = (time.monotonic(), exc)
            raise
        self._down = None
        self._read_at = now
        seen: set[int] = set()
        for record in document.get("jobs", []):
            job_id = int(record["job_id"])
            seen.add(job_id)
            self._observe(record)
        lost = [
            job
            for job in self._jobs.values()
            if job.job_id not in seen and job.state is not WorkloadState.ENDED
        ]
        if lost and now - self._lost_read_at >= RETRY_SECONDS:  # sacct may lag: ask now and then
            self._lost_read_at = now
            self._read_accounting(lost)
        self._enforce_notices()

    def _observe(self, record: Mapping[str, Any]) -> None:
        job_id = int(record["job_id"])
        workload_id = self._by_job_id.get(job_id)
        if workload_id is None:
            spec = self._spec_of(record)
            if spec is None:
                return
            workload_id = spec.id
            job = self._jobs.get(workload_id)
            if job is None or job.job_id != job_id:
                job = _Job(
                    spec=spec,
                    job_id=job_id,
                    state=WorkloadState.PENDING,
                    submitted_at=float(record.get("submit_time") or self._clock()),
                )
                self._jobs[workload_id] = job
            self._by_job_id[job_id] = workload_id
        job = self._jobs[workload_id]
        if job.state is WorkloadState.ENDED:
            return
        state = str(record.get("job_state", ""))
        start = _epoch(record.get("start_time"))
        end = _epoch(record.get("end_time"))
        preempted = _epoch(record.get("preempt_time"))
        ran = state in _RUNNING or (state in _ENDED_OUTCOME and bool(record.get("nodes")))
        if ran and job.started_at is None and start is not None:
            job.started_at = start
            job.allocation = job_allocation(record)
            job.state = WorkloadState.RUNNING
            self._emit(job, EventKind.STARTED, start)
        if preempted is not None and job.notice_at is None and job.started_at is not None:
            job.state = WorkloadState.NOTICED
            job.notice_at = preempted
            job.stop_at = end if end is not None else preempted + self._notice_of(job)
            job.reason = "the owner's work needs the GPUs"
            self._emit(job, EventKind.NOTICED, preempted)
        if state == "COMPLETING" or state in _ENDED_OUTCOME:
            self._end(job, state, end, _exit_code(record.get("exit_code")))
        elif state in _WAITING and job.spec.tier is Tier.INTERNAL:
            job.state = WorkloadState.QUEUED

    def _end(self, job: _Job, state: str, end: float | None, exit_code: int | None) -> None:
        lost = any(node in self._down_reason for node in job.allocation)
        if state == "COMPLETING" and lost and not job.stop_requested:
            state = "NODE_FAIL"  # killed by set_node_down, seen before Slurm says how
        if state == "NODE_FAIL":
            job.reason, exit_code = self._node_failure(job), None
        outcome = _ENDED_OUTCOME.get(state, Outcome.FAILED)
        if job.expired or (state == "TIMEOUT" and job.spec.end_at is not None):
            outcome = Outcome.COMPLETED  # a reserved period ran out
        elif state in ("CANCELLED", "COMPLETING"):
            if job.stop_requested:
                outcome = Outcome.STOPPED
            elif job.notice_at is not None:
                outcome = Outcome.PREEMPTED
            elif state == "COMPLETING":
                outcome = Outcome.COMPLETED if not exit_code else Outcome.FAILED
        if outcome is Outcome.PREEMPTED and job.stop_requested and job.notice_at is None:
            outcome = Outcome.STOPPED
        job.state = WorkloadState.ENDED
        job.ended_at = end if end is not None else self._clock()
        if job.started_at is not None and job.ended_at < job.started_at:
            job.ended_at = job.started_at
        job.outcome = outcome
        job.exit_code = exit_code
        self._emit(job, EventKind.ENDED, job.ended_at)

    def _read_accounting(self, jobs: list[_Job]) -> None:
        """Jobs that left the queue unseen: their end as ``sacct`` recorded it."""
        ids = ",".join(str(job.job_id) for job in jobs)
        document = self.cli.json("sacct", "-X", "-j", ids)
        found = {int(r["job_id"]): r for r in document.get("jobs", [])}
        for job in jobs:
            record = found.get(job.job_id or -1)
            if record is None:
                continue  # not yet in the accounting database: next refresh
            times = record.get("time", {})
            state = str(record.get("state", {}).get("current", "FAILED"))
            start = _epoch(times.get("start"))
            if job.started_at is None and start is not None:
                job.started_at = start
                self._emit(job, EventKind.STARTED, start)
            if state in _ENDED_OUTCOME:
                code = record.get("exit_code", {}).get("return_code")
                self._end(job, state, _epoch(times.get("end")), code)

    def _find_in_accounting(self, name: str) -> _Job | None:
        """A lease's job that left the queue while Backfill was away (longer than Slurm's
        ``MinJobAge``): adopted from ``sacct``, with its start and end as events."""
        since = _utc(self._clock() - ACCOUNTING_LOOKBACK)
        document = self.cli.json("sacct", "-X", f"--name={name}", "-S", since)
        found = [r for r in document.get("jobs", []) if self._lease_of(r) is not None]
        if not found:
            return None
        record = max(found, key=lambda r: int(r["job_id"]))
        tier, owner = self._lease_of(record) or (Tier.SPOT, "")
        gpus = _sacct_gpus(record)
        pool = self._pool_for({"nodes": record.get("nodes") or ""}, "")
        if pool is None or gpus <= 0:
            return None
        spec = WorkloadSpec(id=name, tier=tier, pool=pool.key, gpus=gpus, owner=owner)
        times = record.get("time", {})
        job = _Job(
            spec, int(record["job_id"]), WorkloadState.PENDING,
            submitted_at=_epoch(times.get("submission")) or self._clock(),
        )  # fmt: skip
        self._jobs[name] = job
        self._by_job_id[int(record["job_id"])] = name
        self._read_accounting([job])
        return job

    def _enforce_notices(self) -> None:
        """End what must end now: noticed spot at its notice's end, reserved at its period's end
        (Slurm's own checks come up to ~30 s late)."""
        now = self._clock()
        for job in self._jobs.values():
            if (
                job.spec.tier is Tier.RESERVED
                and job.spec.end_at is not None
                and now >= math.ceil(job.spec.end_at)  # Slurm records whole seconds
                and job.state is WorkloadState.RUNNING
                and not job.expired
            ):
                job.expired = True
                with contextlib.suppress(Conflict):
                    self.cli.run("scancel", str(job.job_id))
                self._unreserve(job.spec.id)
            if (
                job.state is WorkloadState.NOTICED
                and job.stop_at is not None
                and now >= job.stop_at
                and not job.stop_requested
            ):
                with contextlib.suppress(Conflict):  # it ended meanwhile: the next read says how
                    self.cli.run("scancel", str(job.job_id))

    def _spec_of(self, record: Mapping[str, Any]) -> WorkloadSpec | None:
        """A job Backfill did not submit (or submitted before a restart): what it is."""
        gres = str(record.get("tres_per_node") or "")
        gpus = tres_gpus(str(record.get("tres_alloc_str") or "")) or (
            per_node_gpus(gres) * max(1, int(record.get("node_count") or 1))
        )
        if gpus <= 0:
            return None  # no GPUs: not ours to count
        pool = self._pool_for(record, gres)
        if pool is None:
            return None
        lease = self._lease_of(record)
        if lease is not None:
            tier, owner = lease
            return WorkloadSpec(
                id=str(record.get("name")), tier=tier, pool=pool.key, gpus=gpus, owner=owner
            )
        return WorkloadSpec(
            id=f"slurm-{record['job_id']}",
            tier=Tier.INTERNAL,
            pool=pool.key,
            gpus=gpus,
            owner=str(record.get("account") or ""),
            queue=True,
        )

    def _lease_of(self, record: Mapping[str, Any]) -> tuple[Tier, str] | None:
        """(tier, tenant) of a job Backfill submitted for a lease, from the comment it gave the
        job (``backfill <tier> <tenant>``); on a cluster whose accounting keeps no comments, from
        its QOS and lease-like name. None: not a lease (the owner's work)."""
        comment = record.get("comment")
        if isinstance(comment, dict):  # sacct: {"job": ..., "administrator": ..., "system": ...}
            comment = comment.get("job")
        words = str(comment or "").split()
        if len(words) == 3 and words[0] == "backfill" and words[1] in _EXTERNAL:
            return Tier(words[1]), words[2]
        qos, name = str(record.get("qos") or ""), str(record.get("name") or "")
        if qos not in self._ours or not name.startswith("lse_"):
            return None
        tier = {RESERVED_QOS: Tier.RESERVED, ON_DEMAND_QOS: Tier.ON_DEMAND}.get(qos, Tier.SPOT)
        return tier, str(record.get("account") or "")

    def _pool_for(self, record: Mapping[str, Any], gres: str) -> Pool | None:
        for node in expand_hostlist(str(record.get("nodes") or "")):
            if node in self._pool_of_node:
                return self._pool_of_node[node]
        bits = gres.split(":")
        if len(bits) >= 4:
            wanted = bits[2].upper()
            return next((p for p in self._fleet.pools if p.accelerator == wanted), None)
        return self._fleet.pools[0] if len(self._fleet.pools) == 1 else None

    def _reserve(self, spec: WorkloadSpec, pool: Pool, account: str) -> list[str]:
        """A Slurm reservation for a reserved lease: whole nodes of the pool that nothing runs on,
        for the tenant's account, over the lease's period; the sbatch flags that run in it.

        Slurm 22.05 reserves nodes, not GPU counts: a lease of fewer GPUs than a node still keeps
        the whole node from other work over its period (the tenant's other jobs may use it)."""
        assert spec.end_at is not None  # the queue as submit has just read it
        now = self._clock()
        start = max(now, spec.start_at or now)
        size = max(node.gpus for node in pool.nodes)
        count = math.ceil(spec.gpus / size)
        busy = {node for job in self._jobs.values() if job.state is not WorkloadState.ENDED
                for node in job.allocation}  # fmt: skip
        reserved = {
            node
            for record in scontrol_records(self.cli.run("scontrol", "-o", "show", "reservation"))
            for node in expand_hostlist(record.get("Nodes", ""))
        }
        usable = self._usable_nodes() - busy - reserved
        free = [n.name for n in pool.nodes if n.gpus == size and n.name in usable]
        if len(free) < count:
            raise InsufficientCapacity(
                f"{count} whole {pool.accelerator} nodes cannot be set aside in {pool.key} now",
                field="gpus",
            )
        begin = max(0, math.ceil(start - now))
        seconds = max(60, math.ceil(spec.end_at - now))
        try:
            self.cli.run(
                "scontrol", "create", "reservation", f"ReservationName={spec.id}",
                f"StartTime=now+{begin}seconds", f"EndTime=now+{seconds}seconds",
                f"Nodes={','.join(free[:count])}", f"Accounts={account}",
                f"PartitionName={self._partition}",
            )  # fmt: skip
        except Conflict as exc:
            raise InsufficientCapacity(
                f"the nodes cannot be set aside in {pool.key}: {exc.message}", field="gpus"
            ) from None
        limit = _minutes(spec.end_at - start)
        return [f"--reservation={spec.id}", f"--begin=now+{begin}", f"--time={limit}"]

    def _usable_nodes(self) -> set[str]:
        """Nodes Slurm would start work on now: not down, drained, failing or unreachable."""
        out = self.cli.run("scontrol", "-o", "show", "node")
        usable: set[str] = set()
        unusable: set[str] = set()
        for record in scontrol_records(out):
            flags = set(record.get("State", "").replace("*", "+NOT_RESPONDING").split("+"))
            (unusable if flags & _UNUSABLE else usable).add(record.get("NodeName", ""))
        self._out_of_service, self._nodes_read_at = unusable, time.monotonic()
        return usable

    def _nodes_out_of_service(self) -> set[str]:
        """The nodes Slurm starts nothing on (down, drained, failing, unreachable), as the last
        read of the nodes had them if it is at most ``NODES_SECONDS`` old, else read now."""
        if time.monotonic() - self._nodes_read_at >= NODES_SECONDS:
            self._usable_nodes()
        return self._out_of_service

    def _unreserve(self, name: str) -> None:
        with contextlib.suppress(Conflict):  # gone already (its period ended)
            self.cli.run("scontrol", "delete", "reservation", name)

    def _place(self, spec: WorkloadSpec, pool: Pool) -> Placement | None:
        """Where ``spec`` would go now, counting the leases Slurm has not started yet as placed
        (Slurm starts a job a moment after ``sbatch``): so two quick leases never count the same
        idle GPUs."""
        held: dict[str, int] = {}
        spot: dict[str, list[Holding]] = {}
        now = self._clock()
        waiting: list[WorkloadSpec] = []
        for job in self._jobs.values():
            if job.spec.pool != pool.key:
                continue
            if job.state is WorkloadState.PENDING and job.spec.tier.external:
                waiting.append(job.spec)
            if job.state not in (WorkloadState.RUNNING, WorkloadState.NOTICED):
                continue
            for node, gpus in job.allocation.items():
                held[node] = held.get(node, 0) + len(gpus)
                if job.spec.tier is Tier.SPOT and job.state is WorkloadState.RUNNING:
                    lost = (now - (job.started_at or now)) * len(gpus)
                    spot.setdefault(node, []).append(Holding(job.spec.id, len(gpus), lost))
        size = max(n.gpus for n in pool.nodes)
        usable = self._usable_nodes()
        for earlier in [*waiting, spec]:
            states = [
                NodeState(
                    n.name,
                    n.gpus,
                    max(0, n.gpus - held.get(n.name, 0)),
                    tuple(spot.get(n.name, ())),
                )
                for n in pool.nodes
                if n.name in usable
            ]
            placement = place(
                earlier.gpus, states, may_preempt=earlier.tier is Tier.ON_DEMAND, node_size=size
            )
            if placement is None:
                if earlier is spec:
                    return None
                continue
            for node, taken in placement.nodes:
                held[node] = held.get(node, 0) + taken
            for node in spot:
                spot[node] = [h for h in spot[node] if h.workload not in placement.victims]
            if earlier is spec:
                return placement
        return None

    def _node_failure(self, job: _Job) -> str:
        """Why a lost node ended ``job``: the reason given to ``set_node_down``, else the one
        Slurm records for the first of its nodes that is out of service."""
        nodes = sorted(job.allocation)
        for node in nodes:
            if node in self._down_reason:
                return node_failure(node, self._down_reason[node])
        try:
            out = self.cli.run("scontrol", "-o", "show", "node", ",".join(nodes)) if nodes else ""
        except BackfillError:
            out = ""  # unreachable now: say what is known
        for record in scontrol_records(out):
            flags = set(record.get("State", "").replace("*", "+NOT_RESPONDING").split("+"))
            if flags & _UNUSABLE:
                said = record.get("Reason", "").split(" [")[0].strip()  # drop "[user@time]"
                return node_failure(record.get("NodeName", ""), said or "failed")
        return node_failure(",".join(nodes) or "unknown", "failed")

    def _notice_of(self, job: _Job) -> float:
        return float(self._pool(job.spec.pool).notice_seconds)

    def _output(self, spec: WorkloadSpec) -> str:
        if self.config.output_dir is None:
            return "/dev/null"
        return str(self.config.output_dir / f"{spec.id}.out")

    def _emit(self, job: _Job, kind: EventKind, at: float) -> None:
        self._events.append(
            EngineEvent(
                kind=kind,
                workload=job.spec.id,
                tier=job.spec.tier,
                at=at,
                allocation=dict(job.allocation),
                notice_at=job.notice_at,
                stop_at=job.stop_at,
                reason=job.reason,
                outcome=job.outcome,
                exit_code=job.exit_code,
                submitted_at=job.submitted_at,
                started_at=job.started_at,
            )
        )

    def _pool(self, key: str) -> Pool:
        try:
            return self._fleet.pool(key)
        except KeyError:
            raise NotFound(f"no pool {key!r}", field="pool") from None

    def _node(self, name: str) -> None:
        """``NotFound`` unless ``name`` is a node of the pools (the partition's GPU nodes)."""
        if name not in self._pool_of_node:
            raise NotFound(f"no node {name!r}", field="node")

    def _get(self, workload_id: str) -> _Job:
        job = self._jobs.get(workload_id)
        if job is None and not workload_id.startswith("slurm-"):
            job = self._find_in_accounting(workload_id)
        if job is None:
            raise NotFound(f"no workload {workload_id!r}")
        return job


def _script(spec: WorkloadSpec) -> str:
    if spec.command is not None:
        return "#!/bin/sh\n" + spec.command + "\n"
    if spec.duration is not None:
        seconds = max(1, math.ceil(spec.duration))
        return HOLDER.format(until=f" or for {seconds} s", seconds=seconds)
    return HOLDER.format(until="", seconds="infinity")


def _sacct_gpus(record: Mapping[str, Any]) -> int:
    """GPUs a job in ``sacct --json`` held (or, if it never started, asked for)."""
    tres = record.get("tres", {})
    return sum(
        int(t.get("count") or 0)
        for t in tres.get("allocated", []) or tres.get("requested", [])
        if t.get("type") == "gres" and t.get("name") == "gpu"
    )


def _utc(at: float) -> str:
    """An instant as sacct reads it (local time: the engine runs Slurm's clients with TZ=UTC)."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _minutes(seconds: float) -> int:
    """Slurm's time limits are whole minutes: round up."""
    return max(1, math.ceil(seconds / 60))


def _epoch(value: object) -> float | None:
    """Slurm's epoch seconds; 0 (or nothing) means "not set"."""
    if isinstance(value, dict):  # newer data parsers: {"set": true, "number": N}
        value = value.get("number") if value.get("set", True) else None
    if value is None or isinstance(value, bool):
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if number > 0 else None


def _exit_code(value: object) -> int | None:
    if isinstance(value, dict):
        value = value.get("return_code", value.get("number"))
    if value is None or isinstance(value, bool):
        return None
    code = int(str(value))
    return code >> 8 if code > 255 else code
