"""Lease creation through the HTTP API: leases per second and latency, SQLite and PostgreSQL.

    python bench/api_leases.py [--leases 500] [--db sqlite|postgresql|both]

A real uvicorn server on a thread, a manual clock, one client creating and stopping spot leases
one after another (what a tenant's provisioning loop does).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress

from backfill.runtime import Runtime, Settings
from backfill.server import BackgroundServer

OPERATOR = "bf_op_" + "b" * 40


def run(database_url: str, leases: int, console: Console) -> tuple[float, float, float]:
    runtime = Runtime(Settings(database_url=database_url, clock="manual", operator_key=OPERATOR))
    server = BackgroundServer(runtime)
    url = server.start()
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            auth = {"Authorization": f"Bearer {OPERATOR}"}
            key = client.post("/v1/admin/tenants", json={"name": "bench"}, headers=auth).json()
            headers = {"Authorization": f"Bearer {key['api_key']}"}
            latencies = []
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(database_url.split(":")[0], total=leases)
                started = time.perf_counter()
                for i in range(leases):
                    t0 = time.perf_counter()
                    response = client.post(
                        "/v1/leases",
                        json={"tier": "spot", "gpus": 1},
                        headers={**headers, "Idempotency-Key": f"bench-{i}"},
                    )
                    latencies.append(time.perf_counter() - t0)
                    assert response.status_code == 201, response.text
                    client.delete(f"/v1/leases/{response.json()['id']}", headers=headers)
                    progress.advance(task)
                elapsed = time.perf_counter() - started
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        return leases / elapsed, p50, p99
    finally:
        server.stop()
        runtime.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leases", type=int, default=500)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    console = Console()
    urls = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            urls.append(f"sqlite:///{Path(tmp) / 'bench.db'}")
        name = None
        if args.db in ("postgresql", "both"):
            import psycopg

            name = "backfill_bench_" + secrets.token_hex(4)
            with psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            urls.append(f"postgresql://postgres@127.0.0.1:5432/{name}")
        try:
            for url in urls:
                rate, p50, p99 = run(url, args.leases, console)
                console.print(
                    f"{url.split(':')[0]:>10}: {rate:6.1f} create+stop cycles/s; "
                    f"create p50 {p50:.1f} ms, p99 {p99:.1f} ms ({args.leases} leases)"
                )
        finally:
            if name:
                with psycopg.connect(
                    "postgresql://postgres@127.0.0.1/postgres", autocommit=True
                ) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
