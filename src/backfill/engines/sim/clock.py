"""Clocks for the sim engine: a manual one (tests, replay) and the wall clock, maybe sped up."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class ManualClock:
    """Time moves only when told to: ``advance`` or ``set``. Deterministic."""

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go back")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, at: float) -> float:
        """Move to ``at`` (epoch seconds), which must not be before now."""
        with self._lock:
            if at < self._now:
                raise ValueError(f"a clock cannot go back (from {self._now} to {at})")
            self._now = float(at)
            return self._now


class WallClock:
    """The wall clock, optionally ``speed`` times faster from the moment it is made."""

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start = time.time() if start is None else start
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._start + (time.monotonic() - self._origin) * self.speed
