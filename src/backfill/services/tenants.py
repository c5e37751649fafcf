"""Tenants and API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from backfill.services.context import Context, wall_now
from backfill.services.ids import new_id
from backfill.store.models import ApiKey, Tenant

TENANT = "tenant"
OPERATOR = "operator"
METER = "meter"
"""An outside meter's key: it may only send usage events (``POST /v1/events``)."""
_PREFIX = {TENANT: "bf_live_", OPERATOR: "bf_op_", METER: "bf_meter_"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    role: str
    tenant_id: str | None
    key_id: str


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    secret: str
    """The key itself: shown once, never stored."""


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _issue(role: str, tenant_id: str | None, secret: str | None = None) -> tuple[ApiKey, str]:
    secret = secret or _PREFIX[role] + secrets.token_urlsafe(32)
    row = ApiKey(
        id=new_id("key"),
        tenant_id=tenant_id,
        role=role,
        prefix=secret[:12],
        key_hash=hash_key(secret),
        created_at=wall_now(),
    )
    return row, secret


def create(ctx: Context, *, name: str) -> tuple[Tenant, IssuedKey]:
    """A new tenant with its first API key."""
    if not _NAME.match(name):
        raise InvalidRequest(
            "tenant names are 1-64 characters: letters, digits, '.', '_' and '-'", field="name"
        )
    with ctx.unit_of_work() as session:
        if session.scalar(select(Tenant).where(Tenant.name == name)) is not None:
            raise Conflict(f"a tenant named {name!r} exists already", field="name")
        tenant = Tenant(id=new_id("ten"), name=name, created_at=wall_now())
        session.add(tenant)
        session.flush()
        key, secret = _issue(TENANT, tenant.id)
        session.add(key)
        try:
            session.commit()
        except IntegrityError:
            raise Conflict(f"a tenant named {name!r} exists already", field="name") from None
        return tenant, IssuedKey(key_id=key.id, secret=secret)


def existing(session: Session, tenant_id: str) -> Tenant:
    """The tenant ``tenant_id``, or NotFound."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    return tenant


def get_all(ctx: Context) -> list[Tenant]:
    with ctx.unit_of_work() as session:
        return list(session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.name)))


def get(ctx: Context, *, tenant_id: str) -> Tenant:
    with ctx.unit_of_work() as session:
        tenant = existing(session, tenant_id)
        return tenant


MAX_GPU_QUOTA = 1_000_000


def set_quota(ctx: Context, *, tenant_id: str, gpus: int | None) -> Tenant:
    """Hold the tenant's leases to ``gpus`` GPUs at once (None: no limit), in the engine and the
    store. Leases already over it keep running; new ones are refused."""
    if gpus is not None and not 0 <= gpus <= MAX_GPU_QUOTA:
        raise InvalidRequest(f"gpus must be 0..{MAX_GPU_QUOTA} or null", field="gpus")
    with ctx.lock, ctx.unit_of_work() as session:
        tenant = existing(session, tenant_id)
        ctx.engine.set_quota(tenant.id, gpus)  # first: a refusal there changes nothing here
        tenant.gpu_quota = gpus
        session.commit()
        return tenant


def apply_quotas(ctx: Context) -> int:
    """Give the engine every stored quota (at start-up); returns how many."""
    with ctx.unit_of_work() as session:
        quotas = session.execute(
            select(Tenant.id, Tenant.gpu_quota).where(Tenant.gpu_quota.is_not(None))
        ).all()
    for tenant_id, gpus in quotas:
        ctx.engine.set_quota(tenant_id, gpus)
    return len(quotas)


def create_key(ctx: Context, *, tenant_id: str) -> IssuedKey:
    with ctx.unit_of_work() as session:
        existing(session, tenant_id)
        key, secret = _issue(TENANT, tenant_id)
        session.add(key)
        session.commit()
        return IssuedKey(key_id=key.id, secret=secret)


def create_meter_key(ctx: Context) -> IssuedKey:
    """A key for an outside meter: it sends usage events for any tenant, and can do nothing else."""
    with ctx.unit_of_work() as session:
        key, secret = _issue(METER, None)
        session.add(key)
        session.commit()
        return IssuedKey(key_id=key.id, secret=secret)


def list_keys(ctx: Context, *, tenant_id: str) -> list[ApiKey]:
    with ctx.unit_of_work() as session:
        return list(
            session.scalars(
                select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)
            )
        )


def owned_key(session: Session, tenant_id: str, key_id: str) -> ApiKey:
    """The tenant's key ``key_id``; another tenant's key is not found, like a missing one."""
    key = session.get(ApiKey, key_id)
    if key is None or key.tenant_id != tenant_id:
        raise NotFound(f"no key {key_id!r}")
    return key


def revoke_key(ctx: Context, *, tenant_id: str, key_id: str) -> ApiKey:
    with ctx.unit_of_work() as session:
        key = owned_key(session, tenant_id, key_id)
        if key.revoked_at is None:
            key.revoked_at = wall_now()
            session.commit()
        return key


def revoke_own_key(ctx: Context, *, tenant_id: str, key_id: str) -> ApiKey:
    """A tenant revokes one of its keys itself; idempotent. Its last live key, which is the key
    it calls with, stays (Conflict): without it the tenant would be locked out.

    Under the lock, so two keys revoking each other at once cannot both go."""
    with ctx.lock, ctx.unit_of_work() as session:
        key = owned_key(session, tenant_id, key_id)
        if key.revoked_at is not None:
            return key
        another_live = session.scalar(
            select(ApiKey.id)
            .where(ApiKey.tenant_id == tenant_id, ApiKey.id != key.id, ApiKey.revoked_at.is_(None))
            .limit(1)
        )
        if another_live is None:
            raise Conflict(
                f"{key.id} is your last live key: revoking it would lock you out; "
                "create another key first (POST /v1/keys)",
                field="key_id",
            )
        key.revoked_at = wall_now()
        session.commit()
        return key


def ensure_operator_key(ctx: Context, *, secret: str | None = None) -> str | None:
    """Make sure an operator key exists; returns a new key's secret, or None if one was there.

    With ``secret`` (e.g. from ``BACKFILL_OPERATOR_KEY``), that key is registered if unknown.
    """
    with ctx.unit_of_work() as session:
        if secret is not None:
            if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))):
                return None
            key, _ = _issue(OPERATOR, None, secret)
            session.add(key)
            session.commit()
            return secret
        current = session.scalar(
            select(ApiKey).where(ApiKey.role == OPERATOR, ApiKey.revoked_at.is_(None))
        )
        if current is not None:
            return None
        key, new_secret = _issue(OPERATOR, None)
        session.add(key)
        session.commit()
        return new_secret


def authenticate(ctx: Context, *, secret: str) -> Principal:
    with ctx.unit_of_work() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
        if key is None or key.revoked_at is not None:
            raise Unauthorized("the API key is not valid")
        return Principal(role=key.role, tenant_id=key.tenant_id, key_id=key.id)
