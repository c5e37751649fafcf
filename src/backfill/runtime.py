"""Wiring: settings → fleet, engine, store, context; and the ticker that keeps them in step."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from backfill.domain.fleet import DEFAULT_NOTICE_SECONDS, Fleet
from backfill.engines.base import FleetEngine
from backfill.engines.sim import ManualClock, OwnerWorkload, SimEngine, WallClock
from backfill.errors import Conflict
from backfill.inference.gateway import Gateway
from backfill.inference.replicas import ReplicaSupervisor
from backfill.inventory import demo_fleet_path, load_fleet
from backfill.services import budgets, recovery, tenants, webhooks
from backfill.services.context import Context
from backfill.services.spool import UsageSpool
from backfill.services.sync import sync
from backfill.store.db import connect, migrate, sessions

log = logging.getLogger("backfill")

DEFAULT_MANUAL_START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


@dataclass
class Settings:
    database_url: str = "sqlite:///.backfill/backfill.db"
    fleet_file: str | None = None
    """A fleet file (YAML/TOML) or inventory CSV; None is the built-in demo fleet."""
    clock: str = "wall"
    """``wall`` (optionally sped up) or ``manual`` (moved only by the operator's advance call)."""
    speed: float = 1.0
    start: float | None = None
    owner_workload: bool = False
    """Run the owner's own work as a seeded daily pattern (the demo does)."""
    seed: int = 0
    placement: str = "backfill"
    """The placement policy of the sim engine (``backfill``, ``fgd``, ``bestfit``, ``random``)."""
    engine: str = "sim"
    """``sim`` (built in) or ``slurm`` (a real cluster, reached with Slurm's clients)."""
    slurm_conf: str | None = None
    """The Slurm cluster's ``slurm.conf`` (None: the clients' default, or ``SLURM_CONF``)."""
    slurm_partition: str | None = None
    """The partition whose nodes are sold (None: the cluster's default partition)."""
    tick_seconds: float = 1.0
    price_interval: float = 60.0
    operator_key: str | None = None
    max_body_bytes: int = 64 * 1024
    requests_per_minute: int | None = None
    """The gateway's default per-tenant limit of requests per minute (None: none)."""
    tokens_per_minute: int | None = None
    """The gateway's default per-tenant limit of tokens per minute (None: none)."""
    data_dir: Path = field(default_factory=lambda: Path(".backfill"))

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``BACKFILL_*`` variables, then ``overrides`` (those not None)."""
        env = os.environ
        settings = cls(
            database_url=env.get("BACKFILL_DATABASE_URL", cls.database_url),
            fleet_file=env.get("BACKFILL_FLEET") or None,
            operator_key=env.get("BACKFILL_OPERATOR_KEY") or None,
            engine=env.get("BACKFILL_ENGINE") or cls.engine,
            slurm_conf=env.get("BACKFILL_SLURM_CONF") or None,
            slurm_partition=env.get("BACKFILL_SLURM_PARTITION") or None,
        )
        for name, value in overrides.items():
            if value is not None:
                setattr(settings, name, value)
        return settings


class Runtime:
    """One running control plane: its engine, store and background ticker."""

    def __init__(self, settings: Settings, *, http: httpx.Client | None = None) -> None:
        self.settings = settings
        if settings.engine not in ("sim", "slurm"):
            raise ValueError(f"engine must be 'sim' or 'slurm', not {settings.engine!r}")
        if settings.engine == "slurm" and (settings.clock != "wall" or settings.speed != 1.0):
            raise ValueError("a Slurm cluster runs on the wall clock: no manual clock, no speed-up")
        fleet = self._load_fleet(settings) if settings.engine == "sim" else None
        if settings.clock == "manual":
            self.clock: ManualClock | WallClock = ManualClock(
                settings.start if settings.start is not None else DEFAULT_MANUAL_START
            )
        elif settings.clock == "wall":
            self.clock = WallClock(speed=settings.speed, start=settings.start)
        else:
            raise ValueError(f"clock must be 'wall' or 'manual', not {settings.clock!r}")
        self.engine: FleetEngine = self._engine(settings, fleet, self.clock)
        self.fleet = self.engine.fleet()
        if settings.database_url.startswith("sqlite:///"):
            path = Path(settings.database_url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(settings.database_url)
        migrate(self.db)
        self.ctx = Context(
            sessions=sessions(self.db),
            engine=self.engine,
            http=http or httpx.Client(),
            price_interval=settings.price_interval,
        )
        self.new_operator_key = tenants.ensure_operator_key(self.ctx, secret=settings.operator_key)
        tenants.apply_quotas(self.ctx)
        self.restored = recovery.restore(self.ctx)
        sync(self.ctx)
        self.supervisor = ReplicaSupervisor(self.ctx, log_dir=settings.data_dir / "replicas")
        self.spool = UsageSpool(self.ctx, settings.data_dir / "usage-spool")
        self.gateway = Gateway(
            self.ctx,
            self.supervisor,
            self.spool,
            default_rpm=settings.requests_per_minute,
            default_tpm=settings.tokens_per_minute,
        )
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @staticmethod
    def _load_fleet(settings: Settings) -> Fleet:
        return load_fleet(settings.fleet_file or demo_fleet_path())

    @staticmethod
    def _engine(
        settings: Settings, fleet: Fleet | None, clock: ManualClock | WallClock
    ) -> FleetEngine:
        if settings.engine == "sim":
            assert fleet is not None
            owner = OwnerWorkload(seed=settings.seed) if settings.owner_workload else None
            return SimEngine(fleet, clock, owner=owner, placement=settings.placement)
        from backfill.engines.slurm import SlurmConfig, SlurmEngine

        prices, notice = {}, {}
        if settings.fleet_file:  # list prices and notice periods per accelerator
            for pool in load_fleet(settings.fleet_file).pools:
                prices[pool.accelerator] = pool.prices
                notice[pool.accelerator] = pool.notice_seconds
        config = SlurmConfig(
            conf=Path(settings.slurm_conf) if settings.slurm_conf else None,
            partition=settings.slurm_partition,
            prices=prices,
            notice_seconds=min(notice.values(), default=DEFAULT_NOTICE_SECONDS),
            output_dir=settings.data_dir / "slurm-output",
        )
        return SlurmEngine(config)

    def tick(self) -> None:
        """Apply what the engine did, re-price spot, notice the leases of tenants whose credit is
        spent (and apply those notices), send due webhooks."""
        sync(self.ctx)
        if budgets.enforce_credit(self.ctx):
            sync(self.ctx)
        webhooks.deliver_due(self.ctx)

    def advance(self, seconds: float) -> float:
        """Move a manual clock forward (tests, what-ifs) and tick. Returns the new time."""
        if not isinstance(self.clock, ManualClock):
            raise Conflict("only a manual clock can be advanced", field="seconds")
        with self.ctx.lock:
            self.clock.advance(seconds)
            self.tick()
            return self.clock.now()

    def start(self) -> None:
        """Start the model replicas' supervisor, and the ticker (wall clocks only: a manual
        clock moves only when told)."""
        self.spool.start()
        self.supervisor.start()
        if self._ticker is not None or isinstance(self.clock, ManualClock):
            return
        self._ticker = threading.Thread(target=self._run, name="backfill-ticker", daemon=True)
        self._ticker.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.tick_seconds):
            try:
                self.tick()
            except Exception:  # keep ticking: one bad tick must not stop the control plane
                log.exception("tick failed")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
        self.supervisor.close()
        self.spool.close()
        self.engine.close()
        self.ctx.http.close()
        self.db.dispose()
