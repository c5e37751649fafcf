"""A replica's server command, environment and script (for an engine that runs it itself)."""

from __future__ import annotations

import shlex

import pytest

from backfill.errors import InvalidRequest
from backfill.inference.workers import WorkerSpec, environment, script, worker_environment

VLLM = WorkerSpec(engine="vllm", weights="/models/llama", model="llama-8b", secret="s3cr'et x")


def test_the_script_exports_the_key_quoted_and_serves_on_every_address_of_its_node() -> None:
    text = script(VLLM, port=23456)
    lines = text.splitlines()
    assert "export VLLM_API_KEY='s3cr'\"'\"'et x'" in lines  # shell-quoted: no injection
    assert "export OMP_NUM_THREADS=1" in lines
    run = shlex.split(lines[-1])
    assert run[:3] == ["exec", "vllm", "serve"]
    assert run[run.index("--host") + 1] == "0.0.0.0"
    assert run[run.index("--port") + 1] == "23456"
    assert "s3cr" not in lines[-1]  # the key is not an argument (the process list shows those)


def test_the_key_goes_where_each_engine_reads_it_and_nowhere_without_one() -> None:
    assert worker_environment(VLLM)["VLLM_API_KEY"] == "s3cr'et x"
    keyless = WorkerSpec(engine="vllm", weights="/w", model="m")
    assert "VLLM_API_KEY" not in worker_environment(keyless)
    assert environment(keyless)["OMP_NUM_THREADS"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in worker_environment(keyless)
    on_gpus = WorkerSpec(engine="vllm", weights="/w", model="m", devices=(2, 5))
    assert worker_environment(on_gpus)["CUDA_VISIBLE_DEVICES"] == "2,5"
    assert "secret" not in repr(VLLM) and "s3cr" not in repr(VLLM)


def test_an_unknown_engine_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        script(WorkerSpec(engine="tgi", weights="/w", model="m"), port=1)
    assert refused.value.field == "engine"
