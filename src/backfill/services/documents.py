"""The JSON documents a tenant sees: the API answers and the webhook bodies are the same."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backfill.store.models import Lease


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def lease_document(lease: Lease) -> dict[str, Any]:
    region, _, accelerator = lease.pool.partition("/")
    notice = None
    if lease.notice_at is not None:
        notice = {
            "notice_at": _iso(lease.notice_at),
            "stop_at": _iso(lease.stop_at),
            "reason": lease.notice_reason,
        }
    return {
        "id": lease.id,
        "object": "lease",
        "tenant_id": lease.tenant_id,
        "tier": lease.tier,
        "pool": lease.pool,
        "region": region,
        "accelerator": accelerator,
        "gpus": lease.gpus,
        "state": lease.state,
        "command": lease.command,
        "duration": lease.duration,
        "max_price": str(lease.max_price) if lease.max_price is not None else None,
        "start": _iso(lease.start_at),
        "end": _iso(lease.end_at),
        "created_at": _iso(lease.created_at),
        "started_at": _iso(lease.started_at),
        "ended_at": _iso(lease.ended_at),
        "notice": notice,
        "exit_code": lease.exit_code,
        "allocation": lease.allocation or {},
    }
