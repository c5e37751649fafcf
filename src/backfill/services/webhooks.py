"""Webhooks to tenants: recorded in an outbox with the change that caused them, then sent.

Every delivery is signed like Stripe's: the header

    Backfill-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

lets the receiver check the body came from us and is fresh (``verify_signature``). A delivery
that fails is retried with exponential back-off, up to ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from backfill.errors import InvalidRequest, NotFound
from backfill.services.context import Context, wall_now
from backfill.services.ids import new_id
from backfill.store.models import Tenant, WebhookDelivery

SIGNATURE_HEADER = "Backfill-Signature"
MAX_ATTEMPTS = 8
TIMEOUT_SECONDS = 5.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance: int = 300, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("the webhook URL must be an absolute http(s) URL", field="url")
    if len(url) > 2048:
        raise InvalidRequest("the webhook URL is longer than 2048 characters", field="url")
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return url
    if address.is_unspecified or address.is_multicast:
        raise InvalidRequest("the webhook URL must name a reachable host", field="url")
    return url


def set_endpoint(ctx: Context, *, tenant_id: str, url: str) -> tuple[str, str]:
    """Point the tenant's webhooks at ``url``; returns (url, signing secret)."""
    url = check_url(url)
    with ctx.unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("no such tenant")
        tenant.webhook_url = url
        if tenant.webhook_secret is None:
            tenant.webhook_secret = "whsec_" + secrets.token_urlsafe(32)
        secret = tenant.webhook_secret
        session.commit()
        return url, secret


def get_endpoint(ctx: Context, *, tenant_id: str) -> tuple[str | None, str | None]:
    with ctx.unit_of_work() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound("no such tenant")
        return tenant.webhook_url, tenant.webhook_secret


def enqueue(session: Session, *, tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
    """Record a webhook in the caller's unit of work (no commit here)."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None or not tenant.webhook_url:
        return
    now = wall_now()
    delivery_id = new_id("evt")
    payload = {"id": delivery_id, "type": event_type, "created": now.isoformat(), "data": data}
    session.add(
        WebhookDelivery(
            id=delivery_id,
            tenant_id=tenant_id,
            event_type=event_type,
            url=tenant.webhook_url,
            payload=json.dumps(payload, separators=(",", ":"), sort_keys=True),
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


def deliver_due(ctx: Context, *, limit: int = 100) -> int:
    """Send the deliveries that are due; returns how many succeeded."""
    now = wall_now()
    with ctx.unit_of_work() as session:
        due = list(
            session.scalars(
                select(WebhookDelivery)
                .where(
                    WebhookDelivery.delivered_at.is_(None),
                    WebhookDelivery.attempts < MAX_ATTEMPTS,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
                .limit(limit)
            )
        )
        secrets_by_tenant = {
            t.id: t.webhook_secret
            for t in session.scalars(
                select(Tenant).where(Tenant.id.in_({d.tenant_id for d in due}))
            )
        }
    sent = 0
    for delivery in due:
        secret = secrets_by_tenant.get(delivery.tenant_id) or ""
        error = _post(ctx.http, delivery, secret)
        with ctx.unit_of_work() as session:
            row = session.get(WebhookDelivery, delivery.id)
            assert row is not None
            row.attempts += 1
            if error is None:
                row.delivered_at = wall_now()
                sent += 1
            else:
                row.last_error = error[:500]
                row.next_attempt_at = wall_now() + timedelta(seconds=2**row.attempts)
            session.commit()
    return sent


def _post(http: httpx.Client, delivery: WebhookDelivery, secret: str) -> str | None:
    body = delivery.payload.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        "Backfill-Event-Id": delivery.id,
        "User-Agent": "backfill-webhooks/1",
    }
    try:
        response = http.post(delivery.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if response.status_code >= 300:
        return f"HTTP {response.status_code}"
    return None
