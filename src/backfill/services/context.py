"""What every service function works with: the database, the fleet engine, and outside clients."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from backfill.engines.base import FleetEngine


@dataclass
class Context:
    sessions: sessionmaker[Session]
    engine: FleetEngine
    http: httpx.Client
    """For webhooks: an injectable client, so tests swap the transport, not the code."""
    price_interval: float = 60.0
    """Seconds of engine time between two re-pricings of spot."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    """Serialises changes that read the engine and the store together (admission, sync).

    One control-plane process drives one engine; the lock keeps admission decisions and the
    order of applied engine events consistent within it.
    """

    ingest_lock: threading.Lock = field(default_factory=threading.Lock)
    """Queues this process's usage-event writers on SQLite, which takes one writer at a time:
    waiting on a lock wakes at once, where SQLite's busy handler sleeps up to 100 ms between
    tries. PostgreSQL writes in parallel and does not take it."""

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """A session that is rolled back unless the caller commits it."""
        with self.sessions() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise

    def engine_now(self) -> datetime:
        """The engine's clock, truncated to the whole second (usage is billed per second)."""
        return to_datetime(self.engine.now())


def to_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=UTC)


def wall_now() -> datetime:
    return datetime.now(tz=UTC)
