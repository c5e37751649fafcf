"""The gateway's cost: latency it adds and tokens/s through it, against the engine called directly.

    python bench/gateway.py [--requests 300] [--stream-requests 20] [--max-tokens 128] [--plot F]

One run, one machine: ``backfill serve`` as its own process (SQLite, a manual clock) with one
deployment of SmolLM2-135M on llama.cpp's llama-server (scripts/llama-up.sh installs both). Then,
interleaved so that drift hits both alike:

- **latency**: ``--requests`` non-streamed chat completions of one token, each sent once straight
  to the replica and once through the gateway (same body, same client); the added latency is the
  difference of the percentiles;
- **throughput**: ``--stream-requests`` streamed completions of ``--max-tokens`` tokens each way,
  completion tokens per second of wall time.

Everything runs on this machine's 2 cores: the engine is pinned to one thread.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from ingest import OPERATOR, start_server  # bench/ingest.py: `backfill serve` as a process
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from backfill.inference.workers import DEMO_MODEL, DEMO_WEIGHTS, llama_server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--stream-requests", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--access-log", action="store_true", help="as `backfill serve` defaults")
    parser.add_argument(
        "--plot", type=Path, help="write the latency distributions here (PNG; needs matplotlib)"
    )
    args = parser.parse_args()
    console = Console()
    if llama_server() is None:
        raise SystemExit("llama-server is not installed: run scripts/llama-up.sh first")
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{Path(tmp) / 'bench.db'}"
        extra = () if args.access_log else ("--no-access-log",)
        process, url = start_server(database, tmp, *extra)
        try:
            run(console, url, args)
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run(console: Console, url: str, args: argparse.Namespace) -> None:
    op = {"Authorization": f"Bearer {OPERATOR}"}
    tenant = httpx.post(f"{url}/v1/admin/tenants", json={"name": "bench"}, headers=op).json()
    key = {"Authorization": f"Bearer {tenant['api_key']}"}
    body = {"model": DEMO_MODEL, "weights": DEMO_WEIGHTS, "replicas": 1}
    httpx.post(f"{url}/v1/admin/deployments", json=body, headers=op).raise_for_status()
    deadline = time.monotonic() + 120
    while True:
        (deployment,) = httpx.get(f"{url}/v1/admin/deployments", headers=op).json()["data"]
        ready = [r for r in deployment["running"] if r["state"] == "ready"]
        if ready:
            break
        if time.monotonic() > deadline:
            raise SystemExit("the replica did not come up")
        time.sleep(0.2)
    direct_url = f"{ready[0]['url']}/v1/chat/completions"
    # The replica asks for a key only the gateway has; the benchmark, on the same machine and
    # as the same user, reads it where the server did: its environment.
    environ = Path(f"/proc/{ready[0]['pid']}/environ").read_bytes().split(b"\0")
    (secret,) = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"LLAMA_API_KEY=")]
    replica_key = {"Authorization": f"Bearer {secret}"}
    gateway_url = f"{url}/v1/chat/completions"
    ask: dict[str, Any] = {
        "model": DEMO_MODEL,
        "messages": [{"role": "user", "content": "Say one word."}],
        "max_tokens": 1,
        "temperature": 0,
    }
    direct: list[float] = []
    through: list[float] = []
    resent = Counter[str]()
    # Idle connections dropped at 4 s: llama-server closes them at 5 s, httpx's default expiry,
    # and a request sent as it does fails ("Server disconnected without sending a response").
    limits = httpx.Limits(keepalive_expiry=4.0)
    with httpx.Client(timeout=60, limits=limits) as client, Progress(console=console) as progress:
        for _ in range(10):  # warm both paths (prompt cache, connections)
            client.post(direct_url, json=ask, headers=replica_key).raise_for_status()
            client.post(gateway_url, json=ask, headers=key).raise_for_status()
        task = progress.add_task("latency, one token", total=args.requests)
        for i in range(args.requests):
            order = [(direct, direct_url, replica_key), (through, gateway_url, key)]
            for sink, target, headers in order if i % 2 else order[::-1]:
                started = time.perf_counter()
                post(client, target, ask, headers, resent)
                sink.append((time.perf_counter() - started) * 1000)
            progress.advance(task)
        rates = {"direct": 0.0, "gateway": 0.0}
        tokens = {"direct": 0, "gateway": 0}
        seconds = {"direct": 0.0, "gateway": 0.0}
        task = progress.add_task("throughput, streamed", total=args.stream_requests)
        long_ask = {
            **ask,
            "max_tokens": args.max_tokens,
            "messages": [{"role": "user", "content": "Tell a long story about a lighthouse."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for i in range(args.stream_requests):
            legs = [("direct", direct_url, replica_key), ("gateway", gateway_url, key)]
            for name, target, headers in legs if i % 2 else legs[::-1]:
                started = time.perf_counter()
                tokens[name] += streamed(client, target, long_ask, headers, resent)
                seconds[name] += time.perf_counter() - started
            progress.advance(task)
        for name in rates:
            rates[name] = tokens[name] / seconds[name]
    table = Table(title="Gateway vs the engine directly (same run, same machine)")
    for column in ("", "direct", "gateway", "added / ratio"):
        table.add_column(column, justify="right")
    for label, q in (("p50 ms", 0.5), ("p99 ms", 0.99)):
        d, g = percentile(direct, q), percentile(through, q)
        table.add_row(label, f"{d:.2f}", f"{g:.2f}", f"{g - d:+.2f} ms")
    table.add_row(
        "mean ms",
        f"{statistics.mean(direct):.2f}",
        f"{statistics.mean(through):.2f}",
        f"{statistics.mean(through) - statistics.mean(direct):+.2f} ms",
    )
    table.add_row(
        "tokens/s (streamed)",
        f"{rates['direct']:.1f}",
        f"{rates['gateway']:.1f}",
        f"{100 * rates['gateway'] / rates['direct']:.1f} %",
    )
    console.print(table)
    if args.plot is not None:
        plot(direct, through, args.plot)
        console.print(f"latency distributions: {args.plot}")
    console.print(
        f"{args.requests} one-token requests each way; {args.stream_requests} streams "
        f"of {args.max_tokens} tokens each way; sent again after the server closed a kept-alive "
        f"connection: {resent[direct_url]} direct, {resent[gateway_url]} through the gateway "
        "(which resends its own to the replica inside its time)"
    )


def plot(direct: list[float], through: list[float], path: Path) -> None:
    """Both latency distributions, and what the gateway adds at each percentile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (cdf, added) = plt.subplots(1, 2, figsize=(12, 4.5))
    quantiles = [q / 1000 for q in range(1, 1000)]
    for label, values in (("direct to the engine", direct), ("through the gateway", through)):
        ordered = sorted(values)
        cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    cdf.set(xlabel="one-token chat completion (ms)", ylabel="fraction of requests")
    cdf.set_title("Latency, same run, same machine")
    cdf.legend(loc="lower right")
    gap = [percentile(through, q) - percentile(direct, q) for q in quantiles]
    added.plot([100 * q for q in quantiles], gap, color="tab:red")
    added.axhline(1.0, color="grey", linestyle="--", linewidth=0.8, label="goal at p50: 1 ms")
    added.axhline(5.0, color="grey", linestyle=":", linewidth=0.8, label="goal at p99: 5 ms")
    added.set(xlabel="percentile", ylabel="added by the gateway (ms)")
    added.set_title("What the gateway adds, by percentile")
    added.legend(loc="upper left")
    for axis in (cdf, added):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def post(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    resent: Counter[str],
) -> None:
    """One request; sent once more if the server closed the kept-alive connection as it was
    sent (llama-server closes some without warning; any HTTP/1.1 client must resend then)."""
    try:
        client.post(url, json=body, headers=headers).raise_for_status()
    except httpx.RemoteProtocolError:
        resent[url] += 1
        client.post(url, json=body, headers=headers).raise_for_status()


def streamed(
    client: httpx.Client,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    resent: Counter[str],
) -> int:
    """Completion tokens of one streamed request (its usage), resent as ``post`` does."""
    for attempt in (1, 2):
        count = 0
        try:
            with client.stream("POST", url, json=body, headers=headers) as answer:
                answer.raise_for_status()
                for line in answer.iter_lines():
                    if '"usage"' in line and '"completion_tokens"' in line:
                        count = int(line.split('"completion_tokens":')[1].split(",")[0])
            return count
        except httpx.RemoteProtocolError:
            if attempt == 2:
                raise
            resent[url] += 1
    raise AssertionError("unreachable")


if __name__ == "__main__":
    main()
