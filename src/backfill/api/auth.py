"""Bearer API keys: a tenant key for tenant routes, an operator key for /v1/admin."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backfill.errors import Forbidden, Unauthorized
from backfill.services import tenants
from backfill.services.context import Context
from backfill.services.tenants import Principal

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer bf_…`")


def context(request: Request) -> Context:
    ctx: Context = request.app.state.runtime.ctx
    return ctx


def principal(
    ctx: Context = Depends(context),
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    if len(credentials.credentials) > 256:
        raise Unauthorized("the API key is not valid")
    return tenants.authenticate(ctx, secret=credentials.credentials)


def tenant_id(who: Principal = Depends(principal)) -> str:
    if who.role != tenants.TENANT or who.tenant_id is None:
        raise Forbidden("this endpoint takes a tenant's API key")
    return who.tenant_id


def key_owner(who: Principal = Depends(principal)) -> str:
    """The tenant managing its own keys (``/v1/keys``); the operator has routes of its own."""
    if who.role != tenants.TENANT or who.tenant_id is None:
        raise Forbidden(
            "this endpoint takes a tenant's API key and manages that tenant's own keys; "
            "the operator manages a tenant's keys at /v1/admin/tenants/{tenant_id}/keys"
        )
    return who.tenant_id


def operator(who: Principal = Depends(principal)) -> Principal:
    if who.role != tenants.OPERATOR:
        raise Forbidden("this endpoint takes an operator's API key")
    return who


def metering(who: Principal = Depends(principal)) -> Principal:
    """Who reports usage and reserves spend: the operator, or a meter's key."""
    if who.role not in (tenants.OPERATOR, tenants.METER):
        raise Forbidden("this endpoint takes an operator's or a meter's API key")
    return who
