"""Reading Slurm's outputs, and Slurm's failures turned into Backfill errors (no cluster needed)."""

from __future__ import annotations

import pytest

from backfill.engines.slurm.cli import (
    SlurmCLI,
    SlurmRefused,
    expand_hostlist,
    gpu_indices,
    job_allocation,
    per_node_gpus,
    scontrol_records,
    tres_gpus,
)
from backfill.engines.slurm.engine import _epoch, _exit_code, account_for, qos_for_spot
from backfill.errors import EngineUnavailable


@pytest.mark.parametrize(
    ("hostlist", "names"),
    [
        ("", []),
        ("gpu01", ["gpu01"]),
        ("gpu[01-03]", ["gpu01", "gpu02", "gpu03"]),
        ("gpu[01-02,07],cpu5", ["gpu01", "gpu02", "gpu07", "cpu5"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("a[1,3],b[09-10]", ["a1", "a3", "b09", "b10"]),
    ],
)
def test_host_lists_expand_as_slurm_writes_them(hostlist: str, names: list[str]) -> None:
    assert expand_hostlist(hostlist) == names


def test_gpu_indices_and_counts() -> None:
    assert gpu_indices("0-1,4") == (0, 1, 4)
    assert gpu_indices("N/A") == ()
    assert tres_gpus("cpu=1,node=1,billing=1,gres/gpu=8,gres/gpu:h100=8") == 8
    assert tres_gpus("cpu=1,mem=4G") == 0
    assert per_node_gpus("gres:gpu:h100:4") == 4
    assert per_node_gpus("gres:gpu:2") == 2
    assert per_node_gpus("") == 0


def test_a_jobs_allocation_per_node() -> None:
    job = {"nodes": "gpu[02-03]", "gres_detail": ["gpu:h100:8(IDX:0-7)", "gpu:h100:8(IDX:0-7)"]}
    assert job_allocation(job) == {"gpu02": tuple(range(8)), "gpu03": tuple(range(8))}
    assert job_allocation({"nodes": "gpu01", "gres_detail": ["gpu:2(IDX:3,5)"]}) == {
        "gpu01": (3, 5)
    }
    assert job_allocation({"nodes": "", "gres_detail": []}) == {}


def test_scontrol_one_liners() -> None:
    line = (
        "NodeName=gpu03 Arch=x86_64 Gres=gpu:h100:8 NodeAddr=localhost State=MIXED "
        "OS=Linux 6.1 #1 SMP Partitions=gpu CfgTRES=cpu=32,gres/gpu=8"
    )
    (record,) = scontrol_records(line + "\n\n")
    assert record["NodeName"] == "gpu03" and record["Gres"] == "gpu:h100:8"
    assert record["State"] == "MIXED" and record["OS"] == "Linux 6.1 #1 SMP"
    assert record["CfgTRES"] == "cpu=32,gres/gpu=8"


def test_names_and_values() -> None:
    assert qos_for_spot(120) == "bf_spot_120s"
    assert account_for("tnt_AbC-9.x") == "bf_tnt_abc_9_x"
    assert len(account_for("t" * 200)) <= 63
    assert _epoch(0) is None and _epoch(None) is None and _epoch(1795379555) == 1795379555.0
    assert _epoch({"set": True, "number": 5}) == 5.0 and _epoch({"set": False, "number": 5}) is None
    assert _exit_code(256) == 1 and _exit_code(0) == 0 and _exit_code(None) is None


def test_failures_become_clear_backfill_errors() -> None:
    cli = SlurmCLI(timeout=5)
    with pytest.raises(EngineUnavailable, match="not installed"):
        cli.run("no-such-slurm-client")
    with pytest.raises(SlurmRefused, match="Invalid account") as refused:
        cli.run(
            "sh", "-c", "echo 'sbatch: error: Invalid account or account/partition' >&2; exit 1"
        )
    assert refused.value.code == "slurm_refused"
    with pytest.raises(EngineUnavailable, match="cannot be reached"):
        cli.run(
            "sh", "-c", "echo 'Unable to contact slurm controller (connect failure)' >&2; exit 1"
        )
    with pytest.raises(EngineUnavailable, match=r"within 0\.2 s"):
        cli.run("sleep", "5", timeout=0.2)
    with pytest.raises(EngineUnavailable, match="did not print JSON"):
        cli.json("echo", "not json")
    empty = '{"errors": [{"description": "Nothing found"}], "jobs": []}'
    assert cli.json("sh", "-c", f"echo '{empty}'")["jobs"] == []  # sacct's empty answer
    with pytest.raises(EngineUnavailable, match="Failed while looking for jobs"):
        cli.json(
            "sh", "-c",
            'echo \'{"errors": [{"description": "Failed while looking for jobs"}], "jobs": []}\'',
        )  # fmt: skip
