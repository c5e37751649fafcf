"""Leases through Backfill into a real Slurm cluster: leases/s and submit → running latency.

    python bench/slurm_leases.py [--nodes 4 16] [--leases 64]

For each size it starts its own cluster with scripts/slurm-up.sh (fake 8-GPU nodes, under
/tmp/backfill-slurm-bench-N, on ports of its own, so the test cluster is left alone), runs the
control plane on it (``engine=slurm``, a real uvicorn server, SQLite) and, as one tenant:

1. creates ``--leases`` one-GPU spot leases back to back (each POST returns once ``sbatch`` has
   taken the job): leases per second and POST latency;
2. stops them all, then creates leases one at a time and polls each until the API shows it
   running: the latency from the POST to the first GET that says ``running``, and from Slurm's
   submit to its start (``started_at - created_at``).

The cluster is stopped and wiped afterwards. Needs root (it starts Slurm's daemons).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backfill.runtime import Runtime, Settings
from backfill.server import BackgroundServer

REPO = Path(__file__).resolve().parents[1]
OPERATOR = "bf_op_" + "s" * 40


def cluster_env(nodes: int) -> dict[str, str]:
    return {
        **os.environ,
        "BACKFILL_SLURM_DIR": f"/tmp/backfill-slurm-bench-{nodes}",
        "BACKFILL_SLURM_NODES": str(nodes),
        "BACKFILL_SLURM_PORT": str(6900 + 10 * (nodes % 8)),
        "BACKFILL_SLURM_NODE_PORT": str(18001 + 100 * (nodes % 8)),
        "BACKFILL_SLURM_DB": f"slurm_acct_bench_{nodes}",
        "BACKFILL_SLURM_CLUSTER": f"bench{nodes}",
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def run(nodes: int, leases: int, console: Console) -> dict[str, float]:
    env = cluster_env(nodes)
    subprocess.run([str(REPO / "scripts/slurm-down.sh"), "--wipe"], env=env, check=False,
                   capture_output=True)  # fmt: skip
    up = subprocess.run(
        [str(REPO / "scripts/slurm-up.sh")], env=env, capture_output=True, text=True
    )
    if up.returncode != 0:
        raise SystemExit(f"scripts/slurm-up.sh failed: {up.stderr}")
    conf = Path(env["BACKFILL_SLURM_DIR"]) / "slurm.conf"
    data = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    settings = Settings(
        database_url=f"sqlite:///{data / 'backfill.db'}",
        engine="slurm",
        slurm_conf=str(conf),
        operator_key=OPERATOR,
        tick_seconds=0.25,
        data_dir=data,
    )
    runtime = Runtime(settings)
    runtime.start()
    server = BackgroundServer(runtime)
    url = server.start()
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            auth = {"Authorization": f"Bearer {OPERATOR}"}
            key = client.post("/v1/admin/tenants", json={"name": "bench"}, headers=auth).json()
            headers = {"Authorization": f"Bearer {key['api_key']}"}
            (pool,) = client.get("/v1/instance-types", headers=headers).json()["data"]
            body = {"tier": "spot", "gpus": 1, "region": pool["region"],
                    "accelerator": pool["accelerator"]}  # fmt: skip
            count = min(leases, nodes * 8)
            posts, ids = [], []
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"{nodes} nodes: creating", total=count)
                started = time.perf_counter()
                for _ in range(count):
                    t0 = time.perf_counter()
                    response = client.post("/v1/leases", json=body, headers=headers)
                    posts.append(time.perf_counter() - t0)
                    assert response.status_code == 201, response.text
                    ids.append(response.json()["id"])
                    progress.advance(task)
                out["leases_per_s"] = count / (time.perf_counter() - started)
                out["post_p50_ms"] = statistics.median(posts) * 1000
                out["post_p99_ms"] = percentile(posts, 0.99) * 1000
                for lease in ids:
                    client.delete(f"/v1/leases/{lease}", headers=headers)
                seen, slurm = [], []
                task = progress.add_task(f"{nodes} nodes: submit → running", total=count)
                for _ in range(count):
                    t0 = time.perf_counter()
                    lease = client.post("/v1/leases", json=body, headers=headers).json()
                    while lease["state"] != "running":
                        time.sleep(0.02)
                        lease = client.get(f"/v1/leases/{lease['id']}", headers=headers).json()
                    seen.append(time.perf_counter() - t0)
                    created = datetime.fromisoformat(lease["created_at"])
                    slurm.append(
                        (datetime.fromisoformat(lease["started_at"]) - created).total_seconds()
                    )
                    progress.advance(task)
                out["running_p50_s"] = statistics.median(seen)
                out["running_p99_s"] = percentile(seen, 0.99)
                out["slurm_start_p50_s"] = statistics.median(slurm)
                out["leases"] = count
    finally:
        server.stop()
        runtime.close()
        subprocess.run([str(REPO / "scripts/slurm-down.sh"), "--wipe"], env=env, check=False,
                       capture_output=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--leases", type=int, default=64)
    args = parser.parse_args()
    console = Console()
    table = Table(title="Leases through Backfill into Slurm (one tenant, one client)")
    for column in ("nodes", "leases", "leases/s", "POST p50", "POST p99", "running p50",
                   "running p99", "Slurm start p50"):  # fmt: skip
        table.add_column(column, justify="right")
    for nodes in args.nodes:
        r = run(nodes, args.leases, console)
        table.add_row(
            str(nodes), f"{r['leases']:.0f}", f"{r['leases_per_s']:.1f}",
            f"{r['post_p50_ms']:.0f} ms", f"{r['post_p99_ms']:.0f} ms",
            f"{r['running_p50_s']:.2f} s", f"{r['running_p99_s']:.2f} s",
            f"{r['slurm_start_p50_s']:.1f} s",
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
