"""The ingest process killed with SIGKILL mid-stream: after a restart and a resend of everything,
every event is counted exactly once (a real ``backfill serve`` process, on both databases)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

OPERATOR = "bf_op_" + "k" * 40
BATCH = "application/cloudevents-batch+json"
BATCHES = 60
PER_BATCH = 500


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(database_url: str, cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKFILL_")}
    env.update(BACKFILL_OPERATOR_KEY=OPERATOR, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "backfill", "serve", "--db", database_url, "--clock", "manual",
         "--port", str(port)],
        cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            assert process.stderr is not None
            raise AssertionError(process.stderr.read().decode()[-3000:])
        assert time.monotonic() < deadline, "backfill serve did not come up"
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.stderr is not None
    process.stderr.close()


def _batches(tenant: str) -> list[bytes]:
    return [
        json.dumps(
            [
                {
                    "specversion": "1.0",
                    "id": f"req-{b}-{i}",
                    "source": "/gateway/replica-1",
                    "type": "backfill.inference.tokens",
                    "subject": tenant,
                    "time": "2026-01-05T00:00:00Z",
                    "data": {"model": "smollm2-135m", "input_tokens": b, "output_tokens": i},
                }
                for i in range(PER_BATCH)
            ]
        ).encode()
        for b in range(BATCHES)
    ]


def _totals(url: str, tenant: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    rows = httpx.get(f"{url}/v1/admin/tenants/{tenant}/meters", headers=headers).json()["data"]
    return rows[0] if rows else {"events": 0, "units": {"input_tokens": 0, "output_tokens": 0}}


@pytest.mark.slow
def test_sigkill_mid_stream_then_resend_counts_every_event_once(
    database_url: str, tmp_path: Path
) -> None:
    process, url = _serve(database_url, tmp_path)
    headers = {"Authorization": f"Bearer {OPERATOR}"}
    try:
        created = httpx.post(f"{url}/v1/admin/tenants", json={"name": "acme"}, headers=headers)
        tenant = created.json()["tenant"]["id"]
        bodies = _batches(tenant)
        acked: list[int] = []
        failed: list[str] = []

        def stream() -> None:
            with httpx.Client(base_url=url, headers={**headers, "Content-Type": BATCH}) as http:
                for index, body in enumerate(bodies):
                    try:
                        response = http.post("/v1/events", content=body, timeout=30)
                    except httpx.TransportError as exc:
                        failed.append(f"batch {index}: {exc!r}")
                        return
                    assert response.status_code == 200, response.text
                    acked.append(index)

        sender = threading.Thread(target=stream)
        sender.start()
        deadline = time.monotonic() + 120
        while len(acked) < BATCHES // 3:
            assert time.monotonic() < deadline and sender.is_alive(), "the stream stalled"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)  # mid-stream: the next batch is on its way
        process.wait(timeout=30)
        sender.join(timeout=60)
    finally:
        _stop(process, signal.SIGKILL)
    assert failed, "the stream was meant to be cut by the kill"
    assert BATCHES // 3 <= len(acked) < BATCHES

    process, url = _serve(database_url, tmp_path)
    try:
        survived = _totals(url, tenant)["events"]
        # Everything acknowledged was durable; at most the batch in flight went in unanswered.
        assert len(acked) * PER_BATCH <= survived <= (len(acked) + 1) * PER_BATCH
        accepted = duplicates = 0
        with httpx.Client(base_url=url, headers={**headers, "Content-Type": BATCH}) as http:
            for body in bodies:  # the sender does not know what went in: it resends it all
                result = http.post("/v1/events", content=body, timeout=60).json()
                assert result["rejected"] == []
                accepted += result["accepted"]
                duplicates += result["duplicates"]
        assert accepted == BATCHES * PER_BATCH - survived
        assert duplicates == survived
        total = _totals(url, tenant)
        assert total["events"] == BATCHES * PER_BATCH
        # By hand: batch b carries b input tokens per event, event i carries i output tokens.
        assert total["units"] == {
            "input_tokens": PER_BATCH * sum(range(BATCHES)),
            "output_tokens": BATCHES * sum(range(PER_BATCH)),
        }
    finally:
        _stop(process, signal.SIGINT)
