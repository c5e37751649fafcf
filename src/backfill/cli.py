"""``backfill``: the command line. Every command but ``serve`` and ``demo`` is an API client."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from backfill import terminal
from backfill.client import ApiError, BackfillClient
from backfill.domain.surplus import DEFAULT_CONFIDENCE, DEFAULT_HEADROOM

app = typer.Typer(
    help="Backfill: sell a private GPU fleet's idle hours, and keep the books.",
    no_args_is_help=True,
)
tenants_app = typer.Typer(help="Tenants and their API keys (operator).", no_args_is_help=True)
leases_app = typer.Typer(help="Leases of GPUs (tenant).", no_args_is_help=True)
fleet_app = typer.Typer(help="The fleet and its pools (operator).", no_args_is_help=True)
internal_app = typer.Typer(
    help="The owner's own work, submitted by hand as its teams would (operator).",
    no_args_is_help=True,
)
app.add_typer(tenants_app, name="tenants")
app.add_typer(leases_app, name="leases")
app.add_typer(fleet_app, name="fleet")
app.add_typer(internal_app, name="internal")
invoices_app = typer.Typer(
    help="Invoices: read yours (tenant); draft, finalize, correct (operator, --admin).",
    no_args_is_help=True,
)
app.add_typer(invoices_app, name="invoices")
prices_app = typer.Typer(help="The price book.", no_args_is_help=True)
app.add_typer(prices_app, name="prices")
keys_app = typer.Typer(help="Your own API keys (tenant).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
Admin = Annotated[bool, typer.Option("--admin", help="As the operator (every tenant's).")]
bench_app = typer.Typer(help="Benchmarks on real traces.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

# Keys and URLs must never be broken across lines; piped output gets room for whole tables.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
DATA_DIR = Path(os.environ.get("BACKFILL_DATA_DIR", ".backfill"))

ApiUrl = Annotated[
    str, typer.Option("--api-url", envvar="BACKFILL_API_URL", help="The Backfill API.")
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--key", envvar="BACKFILL_API_KEY", help="API key (default: the demo's saved key)."
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
DEFAULT_URL = "http://127.0.0.1:8000"


def _client(url: str, key: str | None, saved: str) -> BackfillClient:
    if key is None:
        path = DATA_DIR / saved
        if path.exists():
            key = path.read_text().strip()
    if not key:
        _fail("no API key: pass --key or set BACKFILL_API_KEY (or run `backfill demo` first)")
    return BackfillClient(url, key)


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(1)


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        where = f" (field: {exc.field})" if exc.field else ""
        _fail(f"{exc.message}{where} [{exc.code}]")


def _emit(data: Any, as_json: bool, render: Any) -> None:
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(render(data))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    database_url: Annotated[
        str | None, typer.Option("--db", envvar="BACKFILL_DATABASE_URL", help="SQLAlchemy URL.")
    ] = None,
    fleet_file: Annotated[
        str | None, typer.Option("--fleet", envvar="BACKFILL_FLEET", help="Fleet file or CSV.")
    ] = None,
    clock: Annotated[str, typer.Option(help="wall, or manual (moved by the API).")] = "wall",
    speed: Annotated[float, typer.Option(help="Sim clock speed-up over the wall clock.")] = 1.0,
    owner_workload: Annotated[
        bool, typer.Option(help="Run the owner's work as a seeded daily pattern.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the owner's workload.")] = 0,
    placement: Annotated[
        str, typer.Option(help="Placement policy: backfill, fgd, bestfit or random.")
    ] = "backfill",
    engine: Annotated[
        str, typer.Option(envvar="BACKFILL_ENGINE", help="sim (built in) or slurm.")
    ] = "sim",
    slurm_conf: Annotated[
        str | None,
        typer.Option(envvar="BACKFILL_SLURM_CONF", help="The Slurm cluster's slurm.conf."),
    ] = None,
    slurm_partition: Annotated[
        str | None,
        typer.Option(envvar="BACKFILL_SLURM_PARTITION", help="The Slurm partition to sell."),
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="Log every request (costs the gateway ~0.1 ms each).")
    ] = True,
) -> None:
    """Run the control plane and its API until stopped."""
    import uvicorn

    from backfill.api.app import create_asgi
    from backfill.errors import BackfillError
    from backfill.runtime import Runtime, Settings

    settings = Settings.from_env(
        database_url=database_url or f"sqlite:///{DATA_DIR / 'backfill.db'}",
        fleet_file=fleet_file,
        clock=clock,
        speed=speed,
        owner_workload=owner_workload,
        seed=seed,
        placement=placement,
        data_dir=DATA_DIR,
        engine=engine,
        slurm_conf=slurm_conf,
        slurm_partition=slurm_partition,
    )
    from backfill.placement.pool import ENGINE_POLICIES

    if placement not in ENGINE_POLICIES:
        _fail(f"--placement must be one of {', '.join(ENGINE_POLICIES)}, not {placement!r}")
    try:
        runtime = Runtime(settings)
    except (BackfillError, ValueError) as exc:  # a bad fleet file, engine or Slurm set-up
        _fail(str(exc))
    if runtime.new_operator_key:
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key_file = DATA_DIR / "operator.key"
        key_file.write_text(runtime.new_operator_key + "\n")
        key_file.chmod(0o600)
        console.print(f"new operator API key: [magenta]{runtime.new_operator_key}[/]")
    runtime.start()
    try:
        uvicorn.run(
            create_asgi(runtime), host=host, port=port, log_level="info", access_log=access_log
        )
    finally:
        runtime.close()


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    speed: Annotated[float, typer.Option(help="Sim clock speed-up (60: a day in 24 min).")] = 60.0,
    fleet_file: Annotated[
        str | None, typer.Option("--fleet", help="Fleet file or inventory CSV (default: demo).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the owner's work and the market.")] = 7,
    seconds: Annotated[
        float | None, typer.Option(help="Stop by itself after this many seconds.")
    ] = None,
    live: Annotated[bool, typer.Option(help="Live view (else a line every 5 s).")] = True,
) -> None:
    """A working GPU cloud on this machine: sim fleet, the owner's work, a tenant, a live view."""
    from backfill import demo as demo_module

    demo_module.run(
        host=host,
        port=port,
        speed=speed,
        data_dir=DATA_DIR,
        fleet_file=fleet_file,
        seed=seed,
        seconds=seconds,
        live=live and console.is_terminal,
        console=console,
    )


@tenants_app.command("create")
def tenants_create(name: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None) -> None:
    """Create a tenant and print its API key (shown once)."""
    with _client(api_url, key, "operator.key") as client:
        created = _call(client.create_tenant, name)
    console.print(f"tenant {created['tenant']['name']} ({created['tenant']['id']})")
    console.print(f"API key (shown once): [green]{created['api_key']}[/]")


@tenants_app.command("list")
def tenants_list(
    api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    with _client(api_url, key, "operator.key") as client:
        rows = _call(client.tenants)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    for row in rows:
        console.print(f"{row['id']}  {row['name']}  {row['created_at']}")


@leases_app.command("create")
def leases_create(
    tier: Annotated[str, typer.Option(help="on_demand, spot or reserved.")],
    gpus: Annotated[int, typer.Option(help="How many GPUs.")],
    region: Annotated[str | None, typer.Option()] = None,
    accelerator: Annotated[str | None, typer.Option()] = None,
    max_price: Annotated[str | None, typer.Option(help="spot: most per GPU-hour.")] = None,
    start: Annotated[str | None, typer.Option(help="reserved: RFC 3339 start.")] = None,
    end: Annotated[str | None, typer.Option(help="reserved: RFC 3339 end.")] = None,
    command: Annotated[str | None, typer.Option(help="Command to run on the GPUs.")] = None,
    duration: Annotated[int | None, typer.Option(help="sim: seconds the command runs.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry-safe key.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Lease GPUs."""
    with _client(api_url, key, "tenant.key") as client:
        lease = _call(
            client.create_lease,
            idempotency_key=idempotency_key,
            tier=tier,
            gpus=gpus,
            region=region,
            accelerator=accelerator,
            max_price=max_price,
            start=start,
            end=end,
            command=command,
            duration=duration,
        )
    _emit(lease, as_json, lambda data: terminal.leases([data]))


@leases_app.command("list")
def leases_list(
    state: Annotated[str | None, typer.Option(help="Only leases in this state.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    with _client(api_url, key, "tenant.key") as client:
        rows = _call(client.leases, state=state)
    _emit(rows, as_json, terminal.leases)


@leases_app.command("show")
def leases_show(
    lease_id: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = True
) -> None:
    with _client(api_url, key, "tenant.key") as client:
        lease = _call(client.lease, lease_id)
    _emit(lease, as_json, lambda data: terminal.leases([data]))


@leases_app.command("stop")
def leases_stop(
    lease_id: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """Stop a lease now (billing stops now)."""
    with _client(api_url, key, "tenant.key") as client:
        lease = _call(client.stop_lease, lease_id)
    _emit(lease, as_json, lambda data: terminal.leases([data]))


@keys_app.command("list")
def keys_list(api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False) -> None:
    """Your API keys, revoked ones too (never their secrets)."""
    with _client(api_url, key, "tenant.key") as client:
        rows = _call(client.keys)
    _emit(rows, as_json, terminal.keys)


@keys_app.command("create")
def keys_create(
    api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """A new API key for you; it is shown once."""
    with _client(api_url, key, "tenant.key") as client:
        created = _call(client.create_key)
    if as_json:
        console.print_json(json.dumps(created))
        return
    console.print(f"key {created['id']}")
    console.print(f"API key (shown once): [green]{created['api_key']}[/]")


@keys_app.command("revoke")
def keys_revoke(
    key_id: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """Revoke one of your keys now; your last live key stays."""
    with _client(api_url, key, "tenant.key") as client:
        revoked = _call(client.revoke_key, key_id)
    _emit(revoked, as_json, lambda data: terminal.keys([data]))


@app.command()
def usage(api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False) -> None:
    """Usage per lease segment, per second, with its cost so far (tenant)."""
    with _client(api_url, key, "tenant.key") as client:
        data = _call(client.usage)
    _emit(data, as_json, terminal.usage)


Since = Annotated[
    str | None, typer.Option(help="Start, RFC 3339 (default: the start of this month, UTC).")
]
Until = Annotated[str | None, typer.Option(help="End, RFC 3339 (default: now).")]


@app.command()
def revenue(
    since: Since = None,
    until: Until = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Revenue per pool, tier and tenant; idle GPU-hours sold and left; showback (operator)."""
    with _client(api_url, key, "operator.key") as client:
        data = _call(client.revenue, since=since, until=until)
    _emit(data, as_json, terminal.revenue)


@app.command()
def reconcile(
    since: Since = None,
    until: Until = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Metered usage against the engine's own accounting, lease by lease (operator)."""
    from datetime import UTC, datetime

    with _client(api_url, key, "operator.key") as client:
        if since is None:  # the month of the engine's clock, which may not be the wall clock's
            now = datetime.fromisoformat(_call(client.clock)["now"].replace("Z", "+00:00"))
            start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            since = start.isoformat()
        data = _call(client.reconciliation, since=since, until=until)
    _emit(data, as_json, terminal.reconciliation)


@invoices_app.command("list")
def invoices_list(
    month: Annotated[str | None, typer.Option(help="YYYY-MM (operator).")] = None,
    admin: Admin = False,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Invoices, newest month first."""
    with _client(api_url, key, "operator.key" if admin else "tenant.key") as client:
        rows = _call(client.invoices, admin=admin, month=month)
    _emit(rows, as_json, terminal.invoices)


@invoices_app.command("show")
def invoices_show(
    invoice_id: str,
    admin: Admin = False,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """One invoice: lines by product, SLA credits with their evidence, credit notes."""
    with _client(api_url, key, "operator.key" if admin else "tenant.key") as client:
        data = _call(client.invoice, invoice_id, admin=admin)
    _emit(data, as_json, terminal.invoice)


@invoices_app.command("export")
def invoices_export(
    invoice_id: str,
    format: Annotated[str, typer.Option("--format", help="json, csv or focus.")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", help="File (default: stdout).")] = None,
    admin: Admin = False,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
) -> None:
    """Export an invoice as JSON, CSV or FinOps FOCUS."""
    with _client(api_url, key, "operator.key" if admin else "tenant.key") as client:
        text = _call(client.export_invoice, invoice_id, format=format, admin=admin)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {output}")


@invoices_app.command("draft")
def invoices_draft(
    month: Annotated[str, typer.Option(help="YYYY-MM (UTC).")],
    tenant: Annotated[str | None, typer.Option(help="One tenant's id (default: all).")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Draft (or draft again) a month's invoices (operator)."""
    with _client(api_url, key, "operator.key") as client:
        rows = _call(client.draft_invoices, month=month, tenant_id=tenant)
    _emit(rows, as_json, terminal.invoices)


@invoices_app.command("finalize")
def invoices_finalize(
    invoice_id: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """Number and freeze an invoice once its month is over (operator)."""
    with _client(api_url, key, "operator.key") as client:
        data = _call(client.finalize_invoice, invoice_id)
    _emit(data, as_json, terminal.invoice)


@invoices_app.command("credit-note")
def invoices_credit_note(
    invoice_id: str,
    amount: Annotated[str, typer.Option(help="How much to credit.")],
    reason: Annotated[str, typer.Option(help="Why.")],
    line: Annotated[int | None, typer.Option(help="The line it corrects.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
) -> None:
    """Correct a finalized invoice (operator)."""
    with _client(api_url, key, "operator.key") as client:
        note = _call(
            client.credit_note, invoice_id, amount=amount, reason=reason, line_position=line
        )
    console.print(f"credit note {note['number']}: -{note['amount']} on {invoice_id}")


@prices_app.command("list")
def prices_list(
    product: Annotated[str | None, typer.Option(help="gpu, inference, finetune or tool.")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Every price and its versions."""
    with _client(api_url, key, "tenant.key") as client:
        rows = _call(client.prices, product=product)
    _emit(rows, as_json, terminal.prices)


@prices_app.command("set")
def prices_set(
    product: Annotated[str, typer.Option(help="gpu, inference, finetune or tool.")],
    item: Annotated[str, typer.Option(help="The pool, model or tool.")],
    dimension: Annotated[str, typer.Option(help="on_demand, input, calls, ...")],
    price: Annotated[str, typer.Option(help="Per GPU-hour, per million tokens, per call.")],
    effective_from: Annotated[str | None, typer.Option(help="RFC 3339 (default: now).")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Schedule a price (operator)."""
    with _client(api_url, key, "operator.key") as client:
        row = _call(
            client.set_price,
            product=product,
            item=item,
            dimension=dimension,
            price=price,
            effective_from=effective_from,
        )
    _emit([row], as_json, terminal.prices)


@fleet_app.command("show")
def fleet_show(api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False) -> None:
    """Pools, prices and sellable floors."""
    with _client(api_url, key, "operator.key") as client:
        data = _call(client.fleet)
    _emit(data, as_json, terminal.fleet)


@fleet_app.command("status")
def fleet_status(
    api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """Use per tier per pool now: the live view, once."""
    with _client(api_url, key, "operator.key") as client:
        data = _call(client.dashboard)
    _emit(data, as_json, terminal.dashboard)


@fleet_app.command("check")
def fleet_check(path: Path) -> None:
    """Validate a fleet file (YAML/TOML) or inventory CSV, offline."""
    from backfill.errors import InvalidFleetFile
    from backfill.inventory import load_fleet

    try:
        fleet = load_fleet(path)
    except InvalidFleetFile as exc:
        _fail(str(exc))
    console.print(
        f"[green]ok[/] {fleet.name}: {len(fleet.pools)} pools, {fleet.node_count} nodes, "
        f"{fleet.gpus} GPUs in {', '.join(fleet.regions)}"
    )


@internal_app.command("submit")
def internal_submit(
    gpus: Annotated[int, typer.Option(help="How many GPUs.")],
    region: Annotated[str | None, typer.Option()] = None,
    accelerator: Annotated[str | None, typer.Option()] = None,
    duration: Annotated[int | None, typer.Option(help="sim: seconds it runs.")] = None,
    team: Annotated[str, typer.Option(help="The owner's team it belongs to.")] = "owner",
    api_url: ApiUrl = DEFAULT_URL,
    key: ApiKey = None,
    as_json: JsonOut = False,
) -> None:
    """Submit internal work: it takes GPUs first (spot gets its notice) or queues."""
    with _client(api_url, key, "operator.key") as client:
        job = _call(
            client.submit_internal,
            gpus=gpus,
            region=region,
            accelerator=accelerator,
            duration=duration,
            team=team,
        )
    _emit(job, as_json, terminal.internal_jobs_line)


@internal_app.command("list")
def internal_list(
    api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    with _client(api_url, key, "operator.key") as client:
        jobs = _call(client.internal_jobs)
    _emit(jobs, as_json, terminal.internal_jobs)


@internal_app.command("end")
def internal_end(
    job_id: str, api_url: ApiUrl = DEFAULT_URL, key: ApiKey = None, as_json: JsonOut = False
) -> None:
    """End internal work now."""
    with _client(api_url, key, "operator.key") as client:
        job = _call(client.end_internal, job_id)
    _emit(job, as_json, terminal.internal_jobs_line)


@bench_app.command("placement")
def bench_placement(
    trace: Annotated[Path, typer.Option(help="An openb pod list CSV.")],
    nodes: Annotated[Path, typer.Option(help="An openb node list CSV.")],
    policy: Annotated[
        list[str] | None, typer.Option(help="Policy to run (repeat for several; default: all).")
    ] = None,
    seeds: Annotated[str, typer.Option(help="Seeds: 42-51, or 42,43.")] = "42-51",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results here.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG here.")] = None,
) -> None:
    """The FGD paper's placement protocol: share of GPUs allocated as pods arrive."""
    from backfill.errors import InvalidFile
    from backfill.placement import bench
    from backfill.placement.policies import POLICIES

    try:
        seed_list = bench.parse_seeds(seeds)
        summaries = bench.benchmark(
            trace=trace,
            nodes_file=nodes,
            policies=policy or list(POLICIES),
            seeds=seed_list,
            console=console,
        )
    except (ValueError, InvalidFile) as exc:
        _fail(str(exc))
    console.print(bench.table(summaries))
    if json_out is not None:
        bench.write_json(summaries, json_out)
        console.print(f"wrote {json_out}")
    if plot_out is not None:
        bench.plot(summaries, plot_out)
        console.print(f"wrote {plot_out}")


@app.command("replay")
def replay_trace(
    trace: Annotated[Path, typer.Argument(help="The owner's job history.")],
    fmt: Annotated[str, typer.Option("--format", help="itp, csv or sacct.")] = "itp",
    nodes: Annotated[
        int | None, typer.Option(help="Nodes of the fleet (ITP clusterNN: its known size).")
    ] = None,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node.")] = 8,
    market_file: Annotated[
        Path | None, typer.Option("--market", help="Market model (TOML); default: built in.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Market seed (overrides the file's).")] = None,
    policy: Annotated[
        str, typer.Option(help="spot (the default), full or none: the policy reported.")
    ] = "spot",
    headroom: Annotated[
        float, typer.Option(help="Share of nodes kept idle for the owner.")
    ] = DEFAULT_HEADROOM,
    confidence: Annotated[
        float, typer.Option(help="Forecast quantile the floor sells under.")
    ] = DEFAULT_CONFIDENCE,
    notice: Annotated[int, typer.Option(help="Spot notice, in seconds.")] = 120,
    on_demand: Annotated[str, typer.Option(help="On-demand price per GPU-hour.")] = "2.00",
    reserved: Annotated[str, typer.Option(help="Reserved price per GPU-hour.")] = "1.50",
    spot_floor: Annotated[str, typer.Option(help="Spot floor price per GPU-hour.")] = "0.50",
    sweep: Annotated[bool, typer.Option(help="Sweep headroom and confidence.")] = True,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON here.")] = None,
    html_out: Annotated[Path | None, typer.Option("--html", help="Write the HTML here.")] = None,
) -> None:
    """What leasing the idle GPUs would have sold and cost the owner, on a recorded trace."""
    from dataclasses import replace
    from decimal import Decimal, InvalidOperation

    from rich.progress import Progress

    from backfill.domain.fleet import Fleet, InvalidFleetValue, Node, Pool, Prices
    from backfill.domain.surplus import FULL, NO_LEASING, SPOT_ONLY
    from backfill.errors import InvalidTrace
    from backfill.replay import report
    from backfill.replay.market import DEFAULT_MARKET, InvalidMarket, load_market
    from backfill.traces import ITP_NODES, ITP_START, load_csv, load_itp, load_sacct

    loaders = {"itp": load_itp, "csv": load_csv, "sacct": load_sacct}
    if fmt not in loaders:
        _fail(f"--format must be one of {', '.join(loaders)}, not {fmt!r}")
    policies = {"full": FULL, "spot": SPOT_ONLY, "none": NO_LEASING}
    if policy not in policies:
        _fail(f"--policy must be one of {', '.join(policies)}, not {policy!r}")
    if nodes is None:
        nodes = ITP_NODES.get(trace.stem) if fmt == "itp" else None
        if nodes is None:
            _fail("say how big the fleet is: --nodes N (and --gpus-per-node G)")
    try:
        chosen = replace(policies[policy], headroom=headroom, confidence=confidence)
        amounts = {}
        for option, text in (
            ("--on-demand", on_demand),
            ("--reserved", reserved),
            ("--spot-floor", spot_floor),
        ):
            try:
                amounts[option] = Decimal(text)
            except InvalidOperation:
                _fail(f"{option}: {text!r} is not a price (write it like 2.00)")
        prices = Prices(*amounts.values())
        pool_nodes = tuple(Node(f"n{i:05d}", gpus_per_node) for i in range(nodes))
        pool = Pool("replay", "GPU", pool_nodes, prices, notice_seconds=notice)
        fleet = Fleet(name=trace.stem, pools=(pool,))
        market = DEFAULT_MARKET if market_file is None else load_market(market_file)
        if seed is not None:
            market = market.with_seed(seed)
        loaded = loaders[fmt](trace)
    except (InvalidFleetValue, InvalidMarket, InvalidTrace, ValueError) as exc:
        _fail(str(exc) or type(exc).__name__)
    if not len(loaded):
        _fail(f"{trace}: no jobs to replay")
    start = int(loaded.start.timestamp()) if loaded.start is not None else ITP_START
    runs = 3 + (len(report.sweep_points(chosen)) if sweep else 0)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("replay", total=runs)
        finished: list[str] = []

        def show(label: str, share: float) -> None:
            if share >= 1.0:
                finished.append(label)
            bar.update(task, completed=len(finished) + min(share, 0.999), description=label)

        try:
            result = report.compare(
                loaded,
                fleet,
                market,
                start=start,
                policy=chosen,
                sweep=sweep,
                name=trace.name,
                progress=show,
            )
        except ValueError as exc:
            _fail(str(exc))
    for line in report.describe([result.runs["spot"], result.runs["full"]], result.baseline):
        console.print(line)
    data = report.to_json(result)
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {json_out}")
    if html_out is not None:
        report.write_html(result, html_out)
        console.print(f"wrote {html_out}")
    if json_out is None and html_out is None:
        console.print_json(data=data)


if __name__ == "__main__":  # pragma: no cover
    app()
