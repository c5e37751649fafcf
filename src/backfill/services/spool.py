"""A write-ahead spool for usage that must not wait for the database, nor be lost.

The gateway meters every request, but a database commit on the response path would double the
gateway's own latency. So a request's usage event is appended to a local file (one JSON line,
written and flushed before the tenant hears back: it survives the process being killed, as a
SQLite commit in WAL mode with ``synchronous=NORMAL`` does, and like it not a power cut), and a
thread moves the file's events into the store in batches through ``events.ingest``. Ingest is
exactly once per ``(tenant, source, id)``, so a file moved twice — after a crash between the
commit and the file's removal — adds nothing. A spool left by a stopped process is moved at the
next start; a torn last line (the process died while writing it, before answering) is skipped.
A spool directory belongs to one process (one control plane drives one engine, and has one data
directory): two processes rotating the same file could lose what one wrote after the other moved it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import orjson

from backfill.services import events
from backfill.services.context import Context

log = logging.getLogger("backfill.spool")

CURRENT = "current.jsonl"
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT
BATCH = 5_000


class UsageSpool:
    def __init__(self, ctx: Context, directory: Path, *, interval: float = 1.0) -> None:
        """``interval``: seconds between moves into the store. Each move has a fixed cost (a
        session, the tenants' check, a commit) that competes with the gateway for the CPU and
        the GIL: every 0.2 s it cost 0.24 ms of CPU a request more than every 1 s, measured
        under ``bench/gateway.py``'s load; usage is in the store within about a second."""
        self.ctx = ctx
        self.directory = directory
        self.interval = interval
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._serial = count()
        self._file: int | None = None
        """The current file's descriptor (written with os.write: no buffer to flush)."""
        self._pending = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def append(self, event: dict[str, Any]) -> None:
        """Write one event durably enough to answer the request; the store gets it shortly."""
        line = memoryview(orjson.dumps(event) + b"\n")
        with self._lock:
            if self._file is None:
                self._file = os.open(self.directory / CURRENT, _APPEND, 0o600)
            while line:  # one write(2) in practice: a kill leaves the whole line or a torn one
                line = line[os.write(self._file, line) :]
            self._pending += 1

    def start(self) -> None:
        self.drain()  # what a stopped process left
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="backfill-spool", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.drain()
            except Exception:  # keep going: the files stay until they are moved
                log.exception("moving spooled usage into the store failed")

    def drain(self) -> int:
        """Move every spooled event into the store; returns how many were new."""
        with self._drain_lock:
            self._rotate()
            stored = 0
            for path in sorted(self.directory.glob("moving-*.jsonl")):
                for batch in _batches(path):
                    result = events.ingest(self.ctx, batch)
                    stored += result.accepted
                    for refused in result.rejected:
                        log.error("spooled usage %s refused: %s", refused.id, refused.message)
                path.unlink()
            return stored

    def _rotate(self) -> None:
        """Set the current file aside for moving (also one a stopped process left)."""
        with self._lock:
            if self._file is not None:
                if self._pending == 0:
                    return
                os.close(self._file)
                self._file = None
                self._pending = 0
            current = self.directory / CURRENT
            if current.exists():
                current.rename(self.directory / self._moving_name())

    def _moving_name(self) -> str:
        existing = {p.name for p in self.directory.glob("moving-*.jsonl")}
        while True:
            name = f"moving-{next(self._serial):09d}.jsonl"
            if name not in existing:
                return name

    def close(self) -> None:
        """Stop the thread and move everything that is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.drain()
        finally:
            with self._lock:
                if self._file is not None:
                    os.close(self._file)
                    self._file = None


def _batches(path: Path) -> Iterator[list[Any]]:
    batch: list[Any] = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                batch.append(json.loads(line))
            except ValueError:
                log.warning(
                    "%s:%d: a torn line (written as the process died) is skipped", path, number
                )
                continue
            if len(batch) >= BATCH:
                yield batch
                batch = []
    if batch:
        yield batch
