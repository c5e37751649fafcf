"""Replicas: each deployment's engine servers, placed on the fleet, started, watched, replaced.

A replica is a workload on the fleet (``FleetEngine.submit``: its GPUs are held like any lease's,
at the deployment's tier) and an engine server: on the embedded default (``sim``, which only holds
GPUs) a local process that Backfill starts on a free port and supervises; on an engine that runs
workloads' commands (Slurm), the workload itself — the job runs the server on the node Slurm
chose, and the gateway reaches it at that node's address (``FleetEngine.address``). Each server
asks every request for a key of its own that only the gateway holds. One pass of ``reconcile``
brings every deployment to its replica count:

- a replica whose process exited, or whose workload the engine ended (preempted, a node down),
  is stopped on both sides and forgotten — a new one takes its place in the same pass;
- a new replica is placed first (no GPUs, no replica: it is tried again next pass); its server
  is started once the engine runs its workload (not while noticed spot still holds the GPUs),
  with ``CUDA_VISIBLE_DEVICES`` set to the GPUs it was given; it is *ready* once the server
  answers ``GET /health`` (both engines: 200 once the model is loaded), and only ready replicas
  get requests;
- the replicas of a deleted deployment are stopped.

The router picks, among a model's ready replicas, the one with the fewest requests in flight.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
from sqlalchemy import select

from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadSpec, WorkloadState
from backfill.errors import BackfillError, NotFound
from backfill.inference.workers import WorkerSpec, command, environment, script
from backfill.services.context import Context
from backfill.store.models import Deployment

log = logging.getLogger("backfill.inference")

PLACED, STARTING, READY = "placed", "starting", "ready"
"""placed: its workload waits for its GPUs (noticed spot still on them); starting: its server
was started; ready: it answered and takes requests."""
INFERENCE_OWNER = "inference"
"""The owner of public deployments' workloads (a private one's is its tenant)."""


@dataclass
class Replica:
    id: str
    """Its workload's id on the fleet engine."""
    deployment_id: str
    model: str
    process: subprocess.Popen[bytes] | None
    started: float
    state: str = STARTING
    worker: WorkerSpec | None = None
    host: str = ""
    port: int = 0
    in_flight: int = 0
    served: int = 0
    log_path: Path | None = None

    @property
    def url(self) -> str:
        """Where its server answers ("" until it is started)."""
        return f"http://{self.host}:{self.port}" if self.host else ""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def secret(self) -> str:
        """The key its server asks of every request (the gateway's alone)."""
        return self.worker.secret if self.worker is not None else ""


Launcher = Callable[[WorkerSpec, str, int, Path | None], subprocess.Popen[bytes]]


def launch(
    spec: WorkerSpec, host: str, port: int, log_path: Path | None
) -> subprocess.Popen[bytes]:
    """Start an engine server as its own process group (so stopping it stops its children)."""
    out = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            command(spec, host=host, port=port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment(spec),
            start_new_session=True,
        )
    finally:
        if log_path is not None and not isinstance(out, int):
            out.close()


@dataclass
class ReplicaSupervisor:
    ctx: Context
    host: str = "127.0.0.1"
    start_timeout: float = 180.0
    """Seconds a replica may take to answer before it is given up and replaced."""
    interval: float = 0.5
    log_dir: Path | None = None
    launcher: Launcher = launch
    _replicas: dict[str, Replica] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=1.0))
    _not_before: dict[str, float] = field(default_factory=dict)
    """Per deployment: no new replica before this (monotonic) time, after one failed."""
    _delay: dict[str, float] = field(default_factory=dict)

    # -- what the gateway asks --------------------------------------------------------------

    def ready(self, model: str) -> list[Replica]:
        with self._lock:
            return [r for r in self._replicas.values() if r.model == model and r.state == READY]

    def replicas(self, deployment_id: str | None = None) -> list[Replica]:
        with self._lock:
            return [
                r
                for r in self._replicas.values()
                if deployment_id is None or r.deployment_id == deployment_id
            ]

    def acquire(self, model: str, exclude: set[str]) -> Replica | None:
        """The ready replica of ``model`` with the fewest requests in flight (then the fewest
        served), not in ``exclude``; counted in flight until ``release``."""
        with self._lock:
            choices = [
                r
                for r in self._replicas.values()
                if r.model == model and r.state == READY and r.id not in exclude
            ]
            if not choices:
                return None
            best = min(choices, key=lambda r: (r.in_flight, r.served, r.id))
            best.in_flight += 1
            best.served += 1
            return best

    def release(self, replica: Replica) -> None:
        with self._lock:
            replica.in_flight = max(0, replica.in_flight - 1)

    def failed(self, replica: Replica) -> None:
        """The gateway could not reach it: no more requests until a pass checks it again."""
        with self._lock:
            if replica.state == READY:
                replica.state = STARTING
                replica.started = time.monotonic()

    # -- keeping them running ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="backfill-replicas", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reconcile()
            except Exception:  # keep supervising: one bad pass must not stop the replicas
                log.exception("replica pass failed")

    def reconcile(self) -> None:
        """One pass: replace what died, start what is missing, stop what is no longer wanted."""
        with self.ctx.unit_of_work() as session:
            wanted = {d.id: d for d in session.scalars(select(Deployment))}
        for replica in self.replicas():
            deployment = wanted.get(replica.deployment_id)
            if deployment is None or not self._alive(replica):
                if deployment is not None and replica.state == STARTING:
                    self._back_off(deployment.id)  # it never came up
                self._retire(replica)
        for deployment in wanted.values():
            if time.monotonic() < self._not_before.get(deployment.id, 0.0):
                continue  # one failed lately: wait before the next try
            have = len(self.replicas(deployment.id))
            for _ in range(max(0, deployment.replicas - have)):
                if not self._place(deployment):
                    break
            extra = self.replicas(deployment.id)[deployment.replicas :]
            for replica in extra:
                self._retire(replica)
        for replica in self.replicas():
            if replica.state == PLACED:
                self._launch(replica)
            elif replica.state == STARTING:
                self._check(replica)

    def _alive(self, replica: Replica) -> bool:
        if replica.process is not None and replica.process.poll() is not None:
            log.warning("replica %s exited with %s", replica.id, replica.process.returncode)
            return False
        try:
            state = self.ctx.engine.workload(replica.id).state
        except NotFound:
            return False
        if state is WorkloadState.ENDED:
            log.warning("replica %s lost its GPUs", replica.id)
            return False
        if replica.state != READY and time.monotonic() - replica.started > self.start_timeout:
            log.warning("replica %s did not come up in %.0f s", replica.id, self.start_timeout)
            return False
        return True

    def _place(self, deployment: Deployment) -> bool:
        replica_id = f"{deployment.id}.r{next(self._ids)}"
        worker = WorkerSpec(
            engine=deployment.engine,
            weights=deployment.weights,
            model=deployment.model,
            context_length=deployment.context_length,
            secret=secrets.token_urlsafe(24),
        )
        port, run = 0, f"{deployment.engine} serve {deployment.model}"  # a label: we run it
        if self.ctx.engine.runs_commands:  # the engine runs the server, on the replica's node
            port = _free_port(self.host)  # taken there? the server exits and is replaced
            try:
                run = script(worker, port=port)
            except BackfillError as exc:
                log.warning("replica of %s cannot start: %s", deployment.model, exc)
                self._back_off(deployment.id)
                return False
        spec = WorkloadSpec(
            id=replica_id,
            tier=Tier(deployment.tier),
            pool=deployment.pool,
            gpus=deployment.gpus,
            owner=deployment.tenant_id or INFERENCE_OWNER,
            command=run,
        )
        try:
            self.ctx.engine.submit(spec)
        except BackfillError as exc:
            log.warning("no GPUs for a replica of %s: %s", deployment.model, exc)
            self._back_off(deployment.id)
            return False
        replica = Replica(
            id=replica_id,
            deployment_id=deployment.id,
            model=deployment.model,
            process=None,
            started=time.monotonic(),
            state=PLACED,
            worker=worker,
            port=port,
        )
        with self._lock:
            self._replicas[replica_id] = replica
        return self._launch(replica)

    def _launch(self, replica: Replica) -> bool:
        """Start the server of a placed replica once its workload runs (False: not yet, or it
        could not start and was retired)."""
        view = self.ctx.engine.workload(replica.id)
        if view.state not in (WorkloadState.RUNNING, WorkloadState.NOTICED):
            return False
        assert replica.worker is not None
        if self.ctx.engine.runs_commands:  # its server starts with the workload, on its node
            if not view.allocation:
                return False  # running, its nodes not yet known: next pass
            host = self.ctx.engine.address(next(iter(view.allocation)))
            with self._lock:
                replica.host = host
                replica.state = STARTING
                replica.started = time.monotonic()
            return True
        devices = tuple(i for indices in view.allocation.values() for i in indices)
        worker = replace(replica.worker, devices=devices if len(view.allocation) == 1 else ())
        port = _free_port(self.host)
        log_path = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{replica.id}.log"
        try:
            process = self.launcher(worker, self.host, port, log_path)
        except (OSError, BackfillError) as exc:
            log.warning("replica %s did not start: %s", replica.id, exc)
            self._retire(replica)
            self._back_off(replica.deployment_id)
            return False
        with self._lock:
            replica.process = process
            replica.port = port
            replica.host = self.host
            replica.log_path = log_path
            replica.state = STARTING
            replica.started = time.monotonic()
        return True

    def _check(self, replica: Replica) -> None:
        try:
            answered = self._http.get(f"{replica.url}/health").status_code == 200
        except httpx.HTTPError:
            answered = False
        if answered:
            with self._lock:
                replica.state = READY
            self._delay.pop(replica.deployment_id, None)

    def _back_off(self, deployment_id: str) -> None:
        """Wait 1 s before the next try, doubling up to a minute while tries keep failing."""
        delay = min(60.0, self._delay.get(deployment_id, 0.5) * 2)
        self._delay[deployment_id] = delay
        self._not_before[deployment_id] = time.monotonic() + delay

    def _retire(self, replica: Replica) -> None:
        with self._lock:
            self._replicas.pop(replica.id, None)
        _terminate(replica.process)
        with contextlib.suppress(NotFound):
            self.ctx.engine.stop(replica.id)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for replica in self.replicas():
            self._retire(replica)
        self._http.close()


def _terminate(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        signal_group(process.pid, signal.SIGTERM)
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        signal_group(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal a replica's whole process group (it was started as its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
