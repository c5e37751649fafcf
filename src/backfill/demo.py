"""``backfill demo``: a working GPU cloud on the embedded default, with a live view.

The owner's own work follows a daily pattern on the built-in demo fleet (sim engine, wall clock
sped up), a demo tenant rents GPUs through the API as a small seeded market, and the terminal
shows every pool's use per tier, the spot price and the revenue, until Ctrl-C. When llama.cpp's
``llama-server`` and the small model's weights are on this machine (``scripts/llama-up.sh``), the
demo also serves SmolLM2-135M behind the OpenAI-compatible gateway: one on-demand replica, priced
per million tokens, that the market chats with now and then as the demo tenant.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.live import Live

from backfill import terminal
from backfill.client import ApiError, BackfillClient
from backfill.inference.workers import DEMO_MODEL, DEMO_WEIGHTS, llama_cpp_missing
from backfill.runtime import Runtime, Settings
from backfill.server import BackgroundServer

MODEL_PRICES = {"input": "0.05", "output": "0.20"}
"""The demo model's price per million tokens, so its use shows on the tenant's invoice."""
CHAT_EVERY = 20.0
"""Seconds (wall clock) between the market's chats with the demo model."""


class DemoMarket:
    """A demo tenant's demand, seeded: a reserved contract, an on-demand lease, spot churn."""

    def __init__(
        self,
        client: BackfillClient,
        *,
        sim_now: Callable[[], float],
        seed: int,
        interval: float,
    ) -> None:
        self.client = client
        self.sim_now = sim_now
        self.rng = random.Random(seed)
        self.interval = interval
        self.attempts = 1
        self.model: str | None = None
        """A model the tenant chats with now and then through the gateway (None: none)."""
        self._next_chat = 0.0
        self._chats = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-market", daemon=True)

    def start(self) -> None:
        """A reserved contract on the largest pool, on-demand leases on the next two."""
        pools = sorted(self.client.instance_types(), key=lambda p: (-p["gpus"], p["id"]))
        end = datetime.fromtimestamp(self.sim_now() + 30 * 86_400, tz=UTC).isoformat()
        self.attempts = max(1, sum(p["gpus"] for p in pools) // 400)
        for tier, pool, nodes in [
            ("reserved", pools[0], 2),
            *(("on_demand", p, 1) for p in pools[1:3]),
        ]:
            body = {"region": pool["region"], "accelerator": pool["accelerator"]}
            gpus = pool["gpus_per_node"] * nodes
            self._try(tier=tier, gpus=gpus, end=end if tier == "reserved" else None, **body)
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.ident is not None:  # started
            self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._chat()
            pools = [p for p in self.client.instance_types() if p["available"]["spot"] >= 2]
            for _ in range(self.attempts if pools else 0):
                pool = self.rng.choice(pools)
                gpus = self.rng.choice([1, 2, 4, 8])
                if gpus > pool["available"]["spot"]:
                    continue
                self._try(
                    tier="spot",
                    gpus=gpus,
                    region=pool["region"],
                    accelerator=pool["accelerator"],
                    duration=self.rng.randint(1_800, 6 * 3_600),
                )

    def _try(self, **body: Any) -> None:
        with contextlib.suppress(ApiError):  # no room now: a real tenant would retry later too
            self.client.create_lease(**body)

    def _chat(self) -> None:
        if self.model is None or time.monotonic() < self._next_chat:
            return
        questions = ("Name one colour.", "Say hello.", "Name a fruit.")  # not self.rng: the
        question = questions[self._chats % len(questions)]  # leases stay as seeded
        try:
            self.client.chat(
                model=self.model,
                messages=[{"role": "user", "content": question}],
                max_tokens=16,
            )
        except ApiError:  # the replica is not up yet (or is being replaced): soon again
            self._next_chat = time.monotonic() + CHAT_EVERY / 4
        else:
            self._chats += 1
            self._next_chat = time.monotonic() + CHAT_EVERY


def model_pool(pools: list[dict[str, Any]]) -> dict[str, Any]:
    """Where the demo model's replica runs: the cheapest on-demand GPU (a 135M-parameter model
    needs no more), in the largest such pool (where a GPU is free most often; the replica takes
    none from anyone, it waits for one). On the demo fleet: us-east/A100, where the market holds
    only its reservation, so the pool's one on-demand GPU in the live view is the model's."""
    return min(
        pools, key=lambda p: (Decimal(str(p["prices"]["on_demand"])), -int(p["gpus"]), p["id"])
    )


def serve_model(operator: BackfillClient, pool: str) -> str | None:
    """Price the demo model and deploy it (public, one on-demand replica in ``pool``); the
    replica comes up in the background. None, or why the API refused."""
    try:
        for dimension, price in MODEL_PRICES.items():
            operator.set_price(
                product="inference", item=DEMO_MODEL, dimension=dimension, price=price
            )
        operator.create_deployment(
            model=DEMO_MODEL,
            engine="llama.cpp",
            weights=DEMO_WEIGHTS,
            replicas=1,
            tier="on_demand",
            pool=pool,
            gpus=1,
        )
    except ApiError as exc:
        return exc.message
    return None


def snippet(url: str, key: str) -> str:
    """Python to paste: the demo model through the gateway with the official client."""
    return (
        "from openai import OpenAI  # pip install openai\n"
        f'ai = OpenAI(base_url="{url}/v1", api_key="{key}")\n'
        f'print(ai.chat.completions.create(model="{DEMO_MODEL}", max_tokens=20,\n'
        '      messages=[{"role": "user", "content": "Say hello"}]).choices[0].message.content)'
    )


def run(
    *,
    host: str,
    port: int,
    speed: float,
    data_dir: Path,
    fleet_file: str | None,
    seed: int,
    seconds: float | None,
    live: bool,
    console: Console,
) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    database = data_dir / "demo.db"
    for stale in data_dir.glob("demo.db*"):
        stale.unlink()
    settings = Settings.from_env(
        database_url=f"sqlite:///{database}",
        fleet_file=fleet_file,
        clock="wall",
        speed=speed,
        owner_workload=True,
        seed=seed,
        tick_seconds=0.5,
        data_dir=data_dir,
    )
    runtime = Runtime(settings)
    server = BackgroundServer(runtime, host=host, port=port)
    url = server.start()
    runtime.start()
    operator_key = runtime.new_operator_key or settings.operator_key
    _write_key(data_dir / "operator.key", operator_key)
    operator = BackfillClient(url, operator_key)
    created = operator.create_tenant(f"demo-{int(time.time())}")
    tenant_key = created["api_key"]
    _write_key(data_dir / "tenant.key", tenant_key)
    tenant = BackfillClient(url, tenant_key)
    market = DemoMarket(
        tenant, sim_now=runtime.clock.now, seed=seed, interval=max(0.5, 120 / speed)
    )

    console.print(f"[bold]Backfill demo[/] serving [cyan]{url}[/] (OpenAPI: {url}/docs)")
    console.print(f"tenant [bold]{created['tenant']['name']}[/] API key: [green]{tenant_key}[/]")
    console.print(f"operator API key: [magenta]{operator_key}[/]  (keys saved in {data_dir}/)")
    console.print(
        f"try:  curl -H 'Authorization: Bearer {tenant_key}' {url}/v1/instance-types",
        soft_wrap=True,
    )
    missing = llama_cpp_missing(DEMO_WEIGHTS)
    pool = None if missing else model_pool(tenant.instance_types())["id"]
    if pool is not None:
        console.print(
            f"model [bold]{DEMO_MODEL}[/] (one on-demand replica on {pool}, up in a few seconds)"
            " through the OpenAI-compatible gateway, in Python:"
        )
        console.print(snippet(url, tenant_key), style="cyan", soft_wrap=True, markup=False)
    else:
        console.print(
            f"model {DEMO_MODEL} not served: {missing}; run scripts/llama-up.sh once "
            "(~5 min) and start the demo again to chat with it through the gateway",
            style="yellow",
            soft_wrap=True,
        )
    console.print(f"sim clock runs {speed:g}x the wall clock; Ctrl-C stops the demo.", style="dim")

    stopping = threading.Event()

    def _on_term(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, _on_term)
    deadline = None if seconds is None else time.monotonic() + seconds
    try:  # from here on, Ctrl-C stops the model's replica too (runtime.close)
        if pool is not None:
            refused = serve_model(operator, pool)
            if refused is None:
                market.model = DEMO_MODEL
            else:
                console.print(f"model {DEMO_MODEL} not served: {refused}", style="yellow")
        market.start()
        if live:
            with Live(console=console, refresh_per_second=2, transient=False) as view:
                while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                    view.update(terminal.dashboard(operator.dashboard()))
                    stopping.wait(1.0)
        else:
            while not stopping.is_set() and (deadline is None or time.monotonic() < deadline):
                data = operator.dashboard()
                console.print(
                    f"{data['now']} idle={data['idle']} by_tier={data['by_tier']} "
                    f"revenue={data['revenue']}"
                )
                stopping.wait(5.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A second Ctrl-C must not leave the model's server running: it is its own process
        # group, so it would outlive the demo. Stopping takes a few seconds at most.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        console.print("stopping…", style="dim")
        market.stop()
        tenant.close()
        summary = operator.dashboard()
        operator.close()
        server.stop()
        runtime.close()
        signal.signal(signal.SIGINT, previous_int)
        console.print(
            f"stopped cleanly: revenue {summary['revenue']} over {summary['gpus']} GPUs "
            f"({summary['now']})"
        )


def _write_key(path: Path, key: str | None) -> None:
    if key is None:
        return
    path.write_text(key + "\n")
    path.chmod(0o600)
