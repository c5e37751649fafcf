"""Usage-event ingest, exactly once, over HTTP: events per second on SQLite and PostgreSQL.

    python bench/ingest.py [--events 200000] [--batch 1000] [--clients 1] [--repeat 3]
                           [--stores sqlite postgresql]

For each store it starts ``backfill serve`` as its own process (a real uvicorn server, one
worker, a fresh database), makes a tenant, and sends ``--events`` new token events in CloudEvents
batches of ``--batch`` (``application/cloudevents-batch+json``) from ``--clients`` connections at
once; then sends every batch again (all duplicates, which must add nothing). It checks that the
tenant's totals count each event exactly once, and prints events/s for both passes with the
latency of a batch. The client runs in this process, so on a 2-core machine the server has one
core and the client the other. Each store is measured ``--repeat`` times, each on a new
database; the table gives the median run and the range (shared VMs vary by ±15 % run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

OPERATOR = "bf_op_" + "i" * 40
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BATCH = "application/cloudevents-batch+json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    database_url: str, cwd: str | None = None, *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """``backfill serve`` on a manual clock as its own process (its state under ``cwd``)."""
    port = free_port()
    env = {**os.environ, "BACKFILL_OPERATOR_KEY": OPERATOR, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "backfill", "serve", "--db", database_url]
    command += ["--clock", "manual", "--port", str(port), *extra]
    # Its log to a file, not a pipe nobody reads: a full pipe (64 KiB of access log) would
    # stop the server in the middle of a run.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the server writes to it until it exits
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    log.seek(0)
    raise SystemExit(f"backfill serve did not start: {log.read().decode()[-2000:]}")


def batches(tenant: str, events: int, size: int) -> list[bytes]:
    out = []
    for start in range(0, events, size):
        out.append(
            json.dumps(
                [
                    {
                        "specversion": "1.0",
                        "id": f"req-{i:09d}",
                        "source": "/gateway/replica-1",
                        "type": "backfill.inference.tokens",
                        "subject": tenant,
                        "time": "2026-01-05T00:00:00Z",
                        "data": {"model": "smollm2-135m", "input_tokens": 31, "output_tokens": 97},
                    }
                    for i in range(start, min(events, start + size))
                ]
            ).encode()
        )
    return out


def send_all(url: str, bodies: list[bytes], clients: int, progress: Progress, label: str) -> dict:
    work: queue.Queue[bytes] = queue.Queue()
    for body in bodies:
        work.put(body)
    latencies: list[float] = []
    counts = {"accepted": 0, "duplicates": 0, "rejected": 0}
    lock = threading.Lock()
    task = progress.add_task(label, total=len(bodies))

    def client() -> None:
        headers = {"Authorization": f"Bearer {OPERATOR}", "Content-Type": BATCH}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                began = time.perf_counter()
                response = http.post("/v1/events", content=body)
                took = time.perf_counter() - began
                response.raise_for_status()
                result = response.json()
                with lock:
                    latencies.append(took)
                    counts["accepted"] += result["accepted"]
                    counts["duplicates"] += result["duplicates"]
                    counts["rejected"] += len(result["rejected"])
                progress.advance(task)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        **counts,
        "seconds": elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
    }


def run(store: str, events: int, size: int, clients: int, progress: Progress) -> list[dict]:
    cleanup = None
    if store == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        database_url = f"sqlite:///{folder / 'backfill.db'}"
    else:
        import psycopg

        name = "bench_ingest_" + secrets.token_hex(4)
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        database_url = f"{POSTGRES}/{name}"

        def cleanup() -> None:
            with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    process, url = start_server(database_url)
    try:
        operator = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {OPERATOR}"})
        tenant = operator.post("/v1/admin/tenants", json={"name": "bench"}).json()["tenant"]["id"]
        bodies = batches(tenant, events, size)
        rows = []
        for label in ("new", "resent"):
            result = send_all(url, bodies, clients, progress, f"{store}: {label}")
            rows.append({"store": store, "pass": label, **result})
        totals = operator.get(f"/v1/admin/tenants/{tenant}/meters").json()["data"]
        (total,) = totals
        assert total["events"] == events, f"{total['events']} events stored, not {events}"
        assert total["units"] == {"input_tokens": 31 * events, "output_tokens": 97 * events}
        assert rows[0]["accepted"] == events and rows[1]["duplicates"] == events
        operator.close()
        return rows
    finally:
        process.terminate()
        process.wait(timeout=30)
        if cleanup is not None:
            cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    console = Console(width=120)
    rows = []
    with Progress(console=console, transient=True) as progress:
        for store in args.stores:
            runs = [run(store, args.events, args.batch, args.clients, progress)
                    for _ in range(args.repeat)]  # fmt: skip
            for index in range(2):  # new, resent: the median run, and the range of all
                ranked = sorted((r[index] for r in runs), key=lambda row: row["seconds"])
                median = dict(ranked[len(ranked) // 2])
                median["range"] = (args.events / ranked[-1]["seconds"],
                                   args.events / ranked[0]["seconds"])  # fmt: skip
                rows.append(median)
    table = Table(
        title=f"{args.events:,} events in batches of {args.batch}, {args.clients} client(s), "
        f"median of {args.repeat}"
    )
    columns = ("store", "pass", "events/s", "range", "batch p50", "batch p99", "stored", "dups")
    for column in columns:
        table.add_column(column, justify="left" if column in ("store", "pass") else "right")
    for row in rows:
        table.add_row(
            row["store"],
            row["pass"],
            f"{args.events / row['seconds']:,.0f}",
            f"{row['range'][0]:,.0f}–{row['range'][1]:,.0f}",
            f"{row['p50'] * 1000:.1f} ms",
            f"{row['p99'] * 1000:.1f} ms",
            f"{row['accepted']:,}",
            f"{row['duplicates']:,}",
        )
    console.print(table)
    console.print("every event counted exactly once (totals checked after both passes)")


if __name__ == "__main__":
    main()
