"""The command line as a user runs it: real processes, real sockets."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BACKFILL = [sys.executable, "-m", "backfill.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env.update(BACKFILL_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Lines of the process's output up to the first that matches ``pattern``."""
    seen = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)}")


@pytest.mark.slow
def test_demo_serves_the_catalog_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*BACKFILL, "demo", "--port", str(port), "--no-live", "--speed", "600"],
        cwd=tmp_path,
        env=_env(tmp_path / "state"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = _read_until(process, r"API key: bf_live_\S+", timeout=60)
        key = re.search(r"API key: (bf_live_\S+)", output)
        assert key is not None
        response = httpx.get(
            f"http://127.0.0.1:{port}/v1/instance-types",
            headers={"Authorization": f"Bearer {key.group(1)}"},
        )
        assert response.status_code == 200
        pools = response.json()["data"]
        assert {p["region"] for p in pools} == {"us-east", "eu-west"}
        assert {p["accelerator"] for p in pools} == {"H100", "H200", "A100"}
        assert all(set(p["prices"]) == {"reserved", "on_demand", "spot"} for p in pools)
        time.sleep(2)  # let the owner's work and the market run a little
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, rest
    assert "stopped cleanly" in rest
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.slow
def test_demo_serves_the_small_model_to_the_official_client(tmp_path: Path) -> None:
    from backfill.inference.workers import LLAMA_SERVER_ENV
    from tests.inference import MODEL, llama_up

    openai = pytest.importorskip("openai")
    reason = llama_up()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = _env(tmp_path / "state")
    if os.environ.get(LLAMA_SERVER_ENV):  # where llama_up found it
        env[LLAMA_SERVER_ENV] = os.environ[LLAMA_SERVER_ENV]
    process = subprocess.Popen(
        [*BACKFILL, "demo", "--port", str(port), "--no-live", "--speed", "600"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    pid = None
    try:
        output = _read_until(process, r"Ctrl-C stops the demo", timeout=60)
        found = re.search(r"API key: (bf_live_\S+)", output)
        assert found is not None
        key = found.group(1)
        assert f'OpenAI(base_url="{url}/v1", api_key="{key}")' in output  # the snippet
        tenant = {"Authorization": f"Bearer {key}"}
        operator_key = (tmp_path / "state" / "operator.key").read_text().strip()
        operator = {"Authorization": f"Bearer {operator_key}"}

        ai = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        deadline = time.monotonic() + 120
        while True:  # deployed (not waited for) as the demo starts
            models = httpx.get(f"{url}/v1/models", headers=tenant).json()["data"]
            if MODEL in [m["id"] for m in models]:
                break
            assert time.monotonic() < deadline, "the demo did not deploy its model"
            time.sleep(0.2)
        while True:  # listed at once; answering once its replica is up (about a second)
            try:
                chat = ai.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "Name one colour."}],
                    max_tokens=8,
                )
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 503 and time.monotonic() < deadline, exc
                time.sleep(0.5)
        assert chat.choices[0].message.content
        assert 0 < chat.usage.completion_tokens <= 8

        (deployment,) = httpx.get(f"{url}/v1/admin/deployments", headers=operator).json()["data"]
        assert (deployment["model"], deployment["tier"]) == (MODEL, "on_demand")
        assert deployment["pool"] == "us-east/A100"
        (replica,) = [r for r in deployment["running"] if r["state"] == "ready"]
        pid = replica["pid"]
        assert "llama-server" in Path(f"/proc/{pid}/cmdline").read_text()
        prices = httpx.get(f"{url}/v1/prices", params={"product": "inference"}, headers=tenant)
        assert {(p["item"], p["dimension"]) for p in prices.json()["data"]} >= {
            (MODEL, "input"),
            (MODEL, "output"),
        }
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            rest, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            rest, _ = process.communicate()
    assert process.returncode == 0, rest
    assert "stopped cleanly" in rest
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # the model's server stopped with the demo
    os.killpg(pid, signal.SIGKILL)
    raise AssertionError(f"the demo left its model's server (pid {pid}) running")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """``backfill serve`` on a manual clock, as its own process."""
    port = _free_port()
    env = _env(tmp_path / "state")
    process = subprocess.Popen(
        [*BACKFILL, "serve", "--port", str(port), "--clock", "manual"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "backfill serve did not come up"
            time.sleep(0.2)
        yield url, {**env, "BACKFILL_API_URL": url}, tmp_path
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BACKFILL, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.slow
def test_cli_drives_the_api(served: tuple[str, dict[str, str], Path]) -> None:
    url, env, cwd = served
    operator_key = (cwd / "state" / "operator.key").read_text().strip()
    created = _cli(env, cwd, "tenants", "create", "acme")
    assert created.returncode == 0, created.stdout + created.stderr
    key = re.search(r"(bf_live_\S+)", created.stdout)
    assert key is not None
    tenant_env = {**env, "BACKFILL_API_KEY": key.group(1)}

    lease = _cli(tenant_env, cwd, "leases", "create", "--tier", "spot", "--gpus", "2", "--json")
    assert lease.returncode == 0, lease.stdout + lease.stderr
    lease_id = json.loads(lease.stdout)["id"]
    listed = json.loads(_cli(tenant_env, cwd, "leases", "list", "--json").stdout)
    assert [x["id"] for x in listed] == [lease_id]
    assert "acme" in _cli(env, cwd, "tenants", "list").stdout

    advanced = httpx.post(
        f"{url}/v1/admin/clock/advance",
        json={"seconds": 45},
        headers={"Authorization": f"Bearer {operator_key}"},
    )
    assert advanced.status_code == 200
    stopped = _cli(tenant_env, cwd, "leases", "stop", lease_id, "--json")
    assert json.loads(stopped.stdout)["state"] == "stopped"

    usage = json.loads(_cli(tenant_env, cwd, "usage", "--json").stdout)
    assert [(s["lease_id"], s["seconds"]) for s in usage["segments"]] == [(lease_id, 45)]

    fleet = _cli(env, cwd, "fleet", "show")
    assert fleet.returncode == 0 and "us-east/H100" in fleet.stdout
    status = json.loads(_cli(env, cwd, "fleet", "status", "--json").stdout)
    assert status["gpus"] == 192

    job = json.loads(
        _cli(
            env,
            cwd,
            "internal",
            "submit",
            "--gpus",
            "8",
            "--region",
            "eu-west",
            "--accelerator",
            "A100",
            "--json",
        ).stdout
    )
    assert job["state"] == "running" and job["pool"] == "eu-west/A100"
    assert job["id"] in _cli(env, cwd, "internal", "list").stdout
    ended = json.loads(_cli(env, cwd, "internal", "end", job["id"], "--json").stdout)
    assert ended["state"] == "ended"

    bad = _cli(tenant_env, cwd, "leases", "create", "--tier", "spot", "--gpus", "-1")
    assert bad.returncode == 1
    assert "gpus" in bad.stdout and "invalid_request" in bad.stdout
    nobody = _cli({**env, "BACKFILL_API_KEY": "bf_live_nope"}, cwd, "leases", "list")
    assert nobody.returncode == 1 and "unauthorized" in nobody.stdout


@pytest.mark.slow
def test_cli_prices_bills_and_corrects_a_month(served: tuple[str, dict[str, str], Path]) -> None:
    url, env, cwd = served
    operator_key = (cwd / "state" / "operator.key").read_text().strip()
    created = _cli(env, cwd, "tenants", "create", "acme")
    key = re.search(r"(bf_live_\S+)", created.stdout)
    assert key is not None
    tenant_env = {**env, "BACKFILL_API_KEY": key.group(1)}
    priced = _cli(
        env,
        cwd,
        "prices",
        "set",
        "--product",
        "tool",
        "--item",
        "search",
        "--dimension",
        "calls",
        "--price",
        "0.002",
        "--json",
    )
    assert priced.returncode == 0, priced.stdout + priced.stderr
    book = _cli(tenant_env, cwd, "prices", "list")
    assert "search" in book.stdout and "us-east/H100" in book.stdout
    lease = _cli(
        tenant_env,
        cwd,
        "leases",
        "create",
        "--tier",
        "on_demand",
        "--gpus",
        "8",
        "--region",
        "us-east",
        "--accelerator",
        "H100",
        "--json",
    )
    assert lease.returncode == 0, lease.stdout + lease.stderr
    # The manual clock starts 2026-01-05 00:00 UTC: ten hours of 8 H100s, then February.
    operator = {"Authorization": f"Bearer {operator_key}"}
    httpx.post(f"{url}/v1/admin/clock/advance", json={"seconds": 36_000}, headers=operator)
    _cli(tenant_env, cwd, "leases", "stop", json.loads(lease.stdout)["id"])
    httpx.post(f"{url}/v1/admin/clock/advance", json={"seconds": 27 * 86_400}, headers=operator)

    drafted = json.loads(_cli(env, cwd, "invoices", "draft", "--month", "2026-01", "--json").stdout)
    (invoice,) = drafted
    assert invoice["total"] == "239.20"  # 80 GPU-hours at 2.99
    final = _cli(env, cwd, "invoices", "finalize", invoice["id"])
    assert final.returncode == 0 and "BF-202601-000001" in final.stdout
    assert "239.20" in final.stdout and "ON_DEMAND" not in final.stdout
    shown = _cli(tenant_env, cwd, "invoices", "show", invoice["id"])
    assert "On-demand GPU time" in shown.stdout and "80 GPU-h" in shown.stdout
    assert invoice["id"] in _cli(tenant_env, cwd, "invoices", "list").stdout
    note = _cli(
        env,
        cwd,
        "invoices",
        "credit-note",
        invoice["id"],
        "--amount",
        "9.20",
        "--reason",
        "goodwill",
        "--line",
        "1",
    )
    assert note.returncode == 0 and "CN-000001" in note.stdout, note.stdout
    out = cwd / "jan.focus.csv"
    exported = _cli(
        tenant_env, cwd, "invoices", "export", invoice["id"], "--format", "focus", "-o", str(out)
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert out.read_text().startswith("AvailabilityZone,BilledCost,")
    again = _cli(
        env, cwd, "invoices", "draft", "--month", "2026-01", "--tenant", invoice["tenant_id"]
    )
    assert again.returncode == 1 and "credit note" in again.stdout
    other = _cli(tenant_env, cwd, "invoices", "export", "inv_nope")
    assert other.returncode == 1 and "not_found" in other.stdout


def test_fleet_check_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text(
        "name: f\nregions:\n  - name: r1\n    pools:\n      - accelerator: H100\n"
        "        nodes: 2\n        gpus_per_node: 8\n        prices:\n"
        "          on_demand: -1\n          reserved: 1\n          spot_floor: 0.5\n"
    )
    result = _cli(_env(tmp_path), tmp_path, "fleet", "check", str(bad))
    assert result.returncode == 1
    assert f"{bad}:9" in result.stdout
    assert "regions[0].pools[0].prices.on_demand" in result.stdout
    good = _cli(_env(tmp_path), tmp_path, "fleet", "check", "--help")
    assert good.returncode == 0


def test_serve_refuses_a_bad_fleet_file_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.toml"
    bad.write_text('name = "f"\n[[regions]]\nname = "r1"\n')
    result = _cli(_env(tmp_path / "state"), tmp_path, "serve", "--fleet", str(bad))
    assert result.returncode == 1
    assert f"{bad}" in result.stdout and "regions[0].pools" in result.stdout
    assert not (tmp_path / "state").exists()


def test_serve_refuses_an_unknown_placement_policy_and_creates_nothing(tmp_path: Path) -> None:
    result = _cli(_env(tmp_path / "state"), tmp_path, "serve", "--placement", "gpuclustering")
    assert result.returncode == 1
    assert "--placement must be one of backfill, fgd, bestfit, random" in result.stdout
    assert not (tmp_path / "state").exists()


def test_bench_placement_writes_json_and_a_plot(tmp_path: Path) -> None:
    nodes = tmp_path / "nodes.csv"
    nodes.write_text(
        "sn,cpu_milli,memory_mib,gpu,model\n"
        + "".join(f"n{i},32000,131072,{2 + 2 * (i % 2)},T4\n" for i in range(6))
    )
    trace = tmp_path / "pods.csv"
    trace.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
        + "".join(f"p{i:02d},4000,8192,1,{(300, 500, 1000)[i % 3]},\n" for i in range(12))
        + "p90,2000,4096,0,0,\np91,8000,8192,2,1000,T4\n"
    )
    out, plot = tmp_path / "out.json", tmp_path / "out.png"
    result = _cli(
        _env(tmp_path),
        tmp_path,
        "bench",
        "placement",
        "--trace",
        str(trace),
        "--nodes",
        str(nodes),
        "--policy",
        "fgd",
        "--policy",
        "bestfit",
        "--seeds",
        "1-3",
        "--json",
        str(out),
        "--plot",
        str(plot),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(out.read_text())
    assert [r["policy"] for r in document["results"]] == ["fgd", "bestfit"]
    for r in document["results"]:
        assert r["trace"] == "pods.csv" and r["seeds"] == [1, 2, 3]
        assert len(r["alloc_by_arrived"]) == 131
        assert 0 < r["alloc_at_100"] <= 100
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = _cli(
        _env(tmp_path),
        tmp_path,
        "bench",
        "placement",
        "--trace",
        str(trace),
        "--nodes",
        str(nodes),
        "--policy",
        "nope",
    )
    assert bad.returncode == 1 and "unknown policy" in bad.stdout
    bad_seeds = _cli(
        _env(tmp_path),
        tmp_path,
        "bench",
        "placement",
        "--trace",
        str(trace),
        "--nodes",
        str(nodes),
        "--seeds",
        "9-1",
    )
    assert bad_seeds.returncode == 1 and "empty" in bad_seeds.stdout


def test_replay_writes_the_json_and_html_report(tmp_path: Path) -> None:
    from backfill.traces import write_csv
    from tests.integration.test_replay import synthetic_trace

    trace = tmp_path / "owner.csv"
    write_csv(synthetic_trace(nodes=8), trace)
    out, page = tmp_path / "report.json", tmp_path / "report.html"
    result = _cli(
        _env(tmp_path), tmp_path, "replay", str(trace), "--format", "csv", "--nodes", "8",
        "--no-sweep", "--json", str(out), "--html", str(page),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    for key in (
        "idle_gpu_hours_baseline",
        "sold_gpu_hours",
        "sold_gpu_hours_by_tier",
        "revenue",
        "revenue_by_tier",
        "internal_wait_p50",
        "internal_wait_p90",
        "internal_wait_p99",
        "internal_wait_p50_baseline",
        "internal_wait_p90_baseline",
        "internal_wait_p99_baseline",
        "spot_notices",
        "spot_stops",
        "notice_violations",
        "sla_breaches",
        "replay_seconds",
    ):
        assert key in data, key
    assert set(data["runs"]) == {"no_leasing", "spot", "full"}
    assert data["sold_gpu_hours"] > 0 and data["notice_violations"] == 0
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "--format must be one of itp, csv, sacct"),
        (["--policy", "greedy"], "--policy must be one of full, spot, none"),
        (["--format", "csv"], "say how big the fleet is"),
        (["--nodes", "4", "--market", "missing.toml"], "missing.toml: cannot read"),
        (["--nodes", "4", "--confidence", "1.5"], "confidence must be between 0 and 1"),
        (["--nodes", "4", "--on-demand", "two"], "--on-demand: 'two' is not a price"),
        (["--nodes", "4", "--spot-floor", "9"], "spot_floor must not exceed the on_demand price"),
    ],
)
def test_replay_refuses_bad_input_saying_what(
    tmp_path: Path, args: list[str], message: str
) -> None:
    trace = tmp_path / "cluster99.csv"
    trace.write_text("job_id,submission_time,duration,num_gpu\nj1,0,60,1\n")
    json_out = tmp_path / "out.json"
    result = _cli(_env(tmp_path), tmp_path, "replay", str(trace), *args, "--json", str(json_out))
    assert result.returncode == 1
    assert message in result.stdout
    assert not json_out.exists()


def test_replay_names_the_bad_line_of_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "owner.csv"
    trace.write_text("submit,duration,gpus\n0,60,1\n10,-5,1\n")
    result = _cli(_env(tmp_path), tmp_path, "replay", str(trace), "--format", "csv", "--nodes", "2")
    assert result.returncode == 1
    assert f"{trace}:3" in result.stdout and "duration" in result.stdout


@pytest.mark.slow
def test_cli_shows_the_owners_books_and_reconciles(
    served: tuple[str, dict[str, str], Path],
) -> None:
    url, env, cwd = served
    operator = {"Authorization": f"Bearer {(cwd / 'state' / 'operator.key').read_text().strip()}"}
    key = re.search(r"(bf_live_\S+)", _cli(env, cwd, "tenants", "create", "acme").stdout)
    assert key is not None
    tenant_env = {**env, "BACKFILL_API_KEY": key.group(1)}
    where = ("--region", "us-east", "--accelerator", "H100")
    leased = _cli(tenant_env, cwd, "leases", "create", "--tier", "on_demand", "--gpus", "8", *where)
    assert leased.returncode == 0, leased.stdout + leased.stderr
    internal = ("internal", "submit", "--gpus", "8", "--team", "research")
    job = _cli(env, cwd, *internal, "--region", "eu-west", "--accelerator", "A100")
    assert job.returncode == 0, job.stdout + job.stderr
    httpx.post(f"{url}/v1/admin/clock/advance", json={"seconds": 3600}, headers=operator)

    books = json.loads(_cli(env, cwd, "revenue", "--json").stdout)
    assert [(r["pool"], r["tier"], r["amount"]) for r in books["revenue"]] == [
        ("us-east/H100", "on_demand", "23.920000")  # 8 GPU-hours at 2.99
    ]
    assert [(s["team"], s["amount"]) for s in books["showback"]] == [("research", "14.320000")]
    table = _cli(env, cwd, "revenue")
    assert table.returncode == 0, table.stdout + table.stderr
    assert all(word in table.stdout for word in ("us-east/H100", "acme", "research", "23.92"))

    checked = json.loads(_cli(env, cwd, "reconcile", "--json").stdout)
    assert checked["differences"] == [] and checked["metered_gpu_seconds"] == 8 * 3600
    shown = _cli(env, cwd, "reconcile", "--since", "2026-01-05T00:00:00Z")
    assert shown.returncode == 0 and "no differences" in shown.stdout, shown.stdout
    assert _cli(tenant_env, cwd, "revenue").returncode == 1  # the operator's only
