"""What the engine contract suite drives: an engine, the owner's own jobs, and the passing of time.

The same tests run against ``sim`` (virtual clock: waiting moves it) and ``slurm`` (a real cluster
started by ``scripts/slurm-up.sh``: waiting sleeps). Both fleets are one pool ``backfill/H100`` of
four 8-GPU nodes ``gpu01..gpu04`` with a 30 s notice.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from backfill.domain.fleet import Fleet, Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.engines.base import EngineEvent, EventKind, FleetEngine, WorkloadSpec
from backfill.engines.sim import ManualClock, SimEngine
from backfill.runtime import Settings
from tests.conftest import OPERATOR_KEY, Platform, serve

POOL = "backfill/H100"
TENANT = "tnt_contract"
NODES = ("gpu01", "gpu02", "gpu03", "gpu04")
NOTICE = 30
REPO = Path(__file__).resolve().parents[2]
SLURM_DIR = Path(os.environ.get("BACKFILL_SLURM_DIR", "/tmp/backfill-slurm"))
SLURM_CONF = SLURM_DIR / "slurm.conf"


@dataclass
class Harness:
    engine: FleetEngine
    owner_job: Callable[[int, float], str]
    """Submit the owner's own job (GPUs, seconds it runs) as its teams would; its workload id."""
    sleep: Callable[[float], object]
    """Let time pass: the sim's clock moves, a real cluster's wall clock is waited for."""
    log: list[EngineEvent] = field(default_factory=list)
    step: float = 1.0

    def read(self) -> list[EngineEvent]:
        self.log.extend(self.engine.poll())
        return self.log

    def until(self, what: str, predicate: Callable[[], bool], within: float) -> None:
        """Poll (and let time pass) until ``predicate`` holds, or fail saying ``what`` did not
        happen within ``within`` seconds of the engine's clock."""
        deadline = self.engine.now() + within
        while True:
            self.read()
            if predicate():
                return
            if self.engine.now() > deadline:
                raise AssertionError(f"{what} did not happen within {within:g} s")
            self.sleep(self.step)

    def events(self, workload: str, kind: EventKind | None = None) -> list[EngineEvent]:
        return [e for e in self.log if e.workload == workload and (kind is None or e.kind is kind)]

    def has(self, workload: str, kind: EventKind) -> bool:
        return bool(self.events(workload, kind))

    def one(self, workload: str, kind: EventKind) -> EngineEvent:
        found = self.events(workload, kind)
        assert len(found) == 1, f"{workload}: {kind} {len(found)} times: {found}"
        return found[0]

    run: str = field(default_factory=lambda: secrets.token_hex(3))
    """Made part of every lease id: a real cluster remembers the ids of earlier runs."""

    def reserve(self, name: str, gpus: int, start_at: float, end_at: float) -> str:
        """Submit a reserved lease for ``[start_at, end_at)``; its id."""
        id = f"{name}_{self.run}"
        spec = WorkloadSpec(
            id=id, tier=Tier.RESERVED, pool=POOL, gpus=gpus, owner=TENANT,
            start_at=start_at, end_at=end_at,
        )  # fmt: skip
        self.engine.submit(spec)
        return id

    def lease(self, name: str, tier: Tier, gpus: int) -> str:
        """Submit a lease; its id (``name`` and the run's token)."""
        id = f"{name}_{self.run}"
        self.engine.submit(WorkloadSpec(id=id, tier=tier, pool=POOL, gpus=gpus, owner=TENANT))
        return id


def sim_harness() -> Harness:
    prices = Prices(on_demand=Decimal("2.5"), reserved=Decimal("1.8"), spot_floor=Decimal("0.6"))
    nodes = tuple(Node(name, 8) for name in NODES)
    fleet = Fleet(name="backfill", pools=(Pool("backfill", "H100", nodes, prices, NOTICE),))
    clock = ManualClock(1_795_000_000.0)
    engine = SimEngine(fleet, clock)
    count = iter(range(1, 1_000_000))

    def owner_job(gpus: int, seconds: float) -> str:
        spec = WorkloadSpec(
            id=f"own-{next(count)}",
            tier=Tier.INTERNAL,
            pool=POOL,
            gpus=gpus,
            owner="research",
            duration=seconds,
            queue=True,
        )
        engine.submit(spec)
        return spec.id

    return Harness(engine, owner_job, clock.advance)


def slurm_env() -> dict[str, str]:
    return {**os.environ, "SLURM_CONF": str(SLURM_CONF)}


def slurm_up() -> str | None:
    """Start the test cluster (idempotent); None when it is up, else why it is not."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (scripts/slurm-up.sh starts Slurm's daemons)"
    done = subprocess.run(
        [str(REPO / "scripts/slurm-up.sh")], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        return f"scripts/slurm-up.sh failed: {done.stderr.strip()[-2000:]}"
    return None


def slurm_clear() -> None:
    """Cancel every job and wait until none holds GPUs: each test starts on an idle cluster."""
    env = slurm_env()
    subprocess.run(["scancel", "--user=root"], env=env, check=False, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-t", "PD,R,CG,S", "-o", "%i"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        if not out.strip():
            return
        time.sleep(0.25)
    raise AssertionError("the Slurm test cluster did not become idle within 60 s")


def slurm_owner_job(gpus: int, seconds: float) -> str:
    """A job of the owner's teams, sent with plain sbatch (Backfill does not submit it)."""
    done = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--account=research",
            f"--gres=gpu:h100:{min(gpus, 8)}",
            f"--nodes={max(1, gpus // 8)}",
            "--time=10",
            "--output=/dev/null",
            f"--wrap=sleep {int(seconds)}",
        ],
        env=slurm_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return f"slurm-{done.stdout.strip().split(';')[0]}"


def slurm_harness() -> Harness:
    from backfill.engines.slurm import SlurmConfig, SlurmEngine

    engine = SlurmEngine(SlurmConfig(conf=SLURM_CONF, notice_seconds=NOTICE))
    return Harness(engine, slurm_owner_job, time.sleep, step=0.25)


PRICES = {"on_demand": "2.99", "reserved": "2.39", "spot_floor": "0.95"}


@contextmanager
def control_plane(data: Path) -> Iterator[Platform]:
    """The control plane on the test cluster, its store in ``data`` (kept across restarts)."""
    fleet = data / "prices.yaml"  # with Slurm, a fleet file gives prices and notices only
    fleet.write_text(
        f"name: prices\nnotice_seconds: {NOTICE}\nregions:\n  - name: backfill\n    pools:\n"
        f"      - accelerator: H100\n        nodes: 1\n        gpus_per_node: 8\n"
        f"        prices: {{on_demand: '{PRICES['on_demand']}', reserved: '{PRICES['reserved']}',"
        f" spot_floor: '{PRICES['spot_floor']}'}}\n"
    )
    settings = Settings(
        database_url=f"sqlite:///{data / 'backfill.db'}",
        engine="slurm",
        slurm_conf=str(SLURM_CONF),
        fleet_file=str(fleet),
        operator_key=OPERATOR_KEY,
        tick_seconds=0.25,
        price_interval=3600.0,
        data_dir=data,
    )
    yield from serve(settings)
