"""The owner's own work, as a seeded daily pattern: what the sim engine runs as ``internal``.

Each pool receives jobs as a Poisson process whose rate follows the hour of day, so that the
expected share of the pool's GPUs busy with internal work is

    load(t) = mean + amplitude × sin(2π (hour(t) − 9) / 24)

(highest mid-afternoon, lowest at night). Sizes are drawn from ``sizes`` (capped at what the
pool can hold), durations are exponential around ``mean_duration``. Same seed, same jobs.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Protocol

from backfill.domain.fleet import Pool
from backfill.domain.placement import ShapeError, check_shape
from backfill.traces import Trace

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class OwnerJob:
    at: float
    gpus: int
    duration: float


class OwnerWorkload:
    def __init__(
        self,
        *,
        seed: int = 0,
        mean: float = 0.45,
        amplitude: float = 0.2,
        mean_duration: float = 2 * 3600.0,
        sizes: tuple[int, ...] = (1, 2, 4, 8, 8, 16),
    ) -> None:
        if not (mean - amplitude >= 0 and mean + amplitude <= 1):
            raise ValueError("mean ± amplitude must stay within [0, 1]")
        self.seed = seed
        self.mean = mean
        self.amplitude = amplitude
        self.mean_duration = mean_duration
        self.sizes = sizes
        self._rngs: dict[str, random.Random] = {}
        self._sizes: dict[str, list[int]] = {}

    def load(self, t: float) -> float:
        """Expected share of a pool's GPUs busy with the owner's work at time ``t``."""
        hour = (t % DAY) / 3600.0
        return self.mean + self.amplitude * math.sin(2 * math.pi * (hour - 9.0) / 24.0)

    def next_job(self, pool: Pool, after: float) -> OwnerJob:
        """The pool's next job arriving after ``after`` (thinning of a non-homogeneous process)."""
        rng = self._rngs.setdefault(pool.key, random.Random(f"{self.seed}:{pool.key}"))
        sizes = self._sizes.get(pool.key)
        if sizes is None:
            sizes = self._sizes[pool.key] = [s for s in self.sizes if _fits(s, pool)] or [1]
        mean_size = sum(sizes) / len(sizes)
        peak = pool.gpus * (self.mean + self.amplitude) / (mean_size * self.mean_duration)
        t = after
        while True:
            t += rng.expovariate(peak)
            rate = pool.gpus * self.load(t) / (mean_size * self.mean_duration)
            if rng.random() * peak <= rate:
                gpus = rng.choice(sizes)
                duration = max(60.0, rng.expovariate(1.0 / self.mean_duration))
                return OwnerJob(at=t, gpus=gpus, duration=round(duration))


def _fits(gpus: int, pool: Pool) -> bool:
    size = pool.max_node_gpus
    if gpus <= size:
        return True
    whole = sum(1 for node in pool.nodes if node.gpus == size)
    return gpus % size == 0 and gpus // size <= max(1, whole // 4)


MIX_ENTRIES = 1000


class OwnerSource(Protocol):
    """Where the sim engine's internal work comes from: a pattern or a recorded trace."""

    @property
    def sizes(self) -> tuple[int, ...]:
        """The request sizes the owner usually submits (what placement keeps room for)."""
        ...

    def next_job(self, pool: Pool, after: float) -> OwnerJob | None:
        """The pool's next job arriving after ``after`` (None: no more)."""
        ...


class TraceOwner:
    """The owner's recorded jobs, replayed as they were submitted (``start`` + each ``submit``).

    Jobs without a pool go to ``default_pool``. A job that can never fit its pool's shape (more
    GPUs than a node and not a whole number of the pool's largest nodes, or more nodes than the
    pool has) is refused here, naming the job: a replay must not wait on it forever.
    """

    def __init__(
        self, trace: Trace, *, start: float, pools: tuple[Pool, ...], default_pool: str
    ) -> None:
        by_key = {pool.key: pool for pool in pools}
        if default_pool not in by_key:
            raise ValueError(f"default pool {default_pool!r} is not in the fleet")
        self._jobs: dict[str, list[OwnerJob]] = {key: [] for key in by_key}
        node_sizes = {key: [node.gpus for node in pool.nodes] for key, pool in by_key.items()}
        fitting: set[tuple[str, int]] = set()  # (pool, GPUs) shapes already checked
        counts: Counter[int] = Counter()
        for job in trace.jobs:
            key = job.pool or default_pool
            if key not in by_key:
                raise ValueError(f"job {job.id!r}: pool {key!r} is not in the fleet")
            if (key, job.gpus) not in fitting:
                try:
                    check_shape(job.gpus, node_sizes[key])
                except ShapeError as exc:
                    raise ValueError(f"job {job.id!r} cannot run in {key}: {exc}") from exc
                fitting.add((key, job.gpus))
            self._jobs[key].append(
                OwnerJob(at=start + job.submit, gpus=job.gpus, duration=job.duration)
            )
            counts[job.gpus] += 1
        self._next = dict.fromkeys(by_key, 0)
        # The mix by frequency, in at most ~1,000 entries (each size at least once).
        total = sum(counts.values())
        self._sizes = tuple(
            size
            for size, count in sorted(counts.items())
            for _ in range(max(1, round(MIX_ENTRIES * count / total)))
        ) or (1,)

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def next_job(self, pool: Pool, after: float) -> OwnerJob | None:
        jobs, i = self._jobs[pool.key], self._next[pool.key]
        if i >= len(jobs):
            return None
        self._next[pool.key] = i + 1
        return jobs[i]
