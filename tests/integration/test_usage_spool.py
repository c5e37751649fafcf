"""The usage spool: what the gateway writes before answering reaches the store exactly once,
even when the process dies before moving it (a new process moves what the old one left)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backfill.runtime import Runtime, Settings
from backfill.services import events, tenants
from backfill.services.spool import CURRENT, UsageSpool


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        database_url=database_url,
        clock="manual",
        data_dir=tmp_path / "state",
        operator_key="bf_op_" + "s" * 40,
    )
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def event(tenant: str, n: int) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": f"req-{n}",
        "source": "/backfill/gateway",
        "type": "backfill.inference.tokens",
        "subject": tenant,
        "time": "2026-01-05T00:00:00Z",
        "data": {"model": "m", "input_tokens": n, "output_tokens": 1},
    }


def test_a_spool_left_by_a_dead_process_is_moved_once_and_a_torn_line_skipped(
    runtime: Runtime, tmp_path: Path
) -> None:
    tenant, _ = tenants.create(runtime.ctx, name="acme")
    directory = tmp_path / "spool"
    dead = UsageSpool(runtime.ctx, directory)
    for n in range(1, 101):
        dead.append(event(tenant.id, n))
    dead.drain()  # the first 100 reached the store ...
    for n in range(101, 151):
        dead.append(event(tenant.id, n))  # ... these 50 had not when the process died
    assert dead._file is not None
    os.close(dead._file)  # the process died: its open file went with it, unmoved
    with open(directory / CURRENT, "a", encoding="utf-8") as spool:
        spool.write(json.dumps(event(tenant.id, 999))[:40])  # died while writing this one
    # A copy of a file already moved, as if the process died between the commit and the unlink.
    (directory / "moving-000000777.jsonl").write_text(
        "".join(json.dumps(event(tenant.id, n)) + "\n" for n in range(1, 11))
    )

    fresh = UsageSpool(runtime.ctx, directory)
    fresh.start()
    fresh.close()
    (total,) = events.totals(runtime.ctx, tenant_id=tenant.id)
    assert total.events == 150
    assert total.units == {"input_tokens": sum(range(1, 151)), "output_tokens": 150}
    assert list(directory.iterdir()) == []
