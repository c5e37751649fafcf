"""A tenant's own API keys, as OpenAI's project keys: list, create, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, status

from backfill.api.auth import context, key_owner
from backfill.api.schemas import KeyCreated, KeyList, KeyRead
from backfill.services import tenants as tenant_service
from backfill.services.context import Context
from backfill.store.models import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"])

KeyId = Annotated[
    str,
    Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$", description="a key's id"),
]


def key_read(key: ApiKey) -> KeyRead:
    return KeyRead(
        id=key.id, prefix=key.prefix, created_at=key.created_at, revoked_at=key.revoked_at
    )


@router.get("", response_model=KeyList)
def list_keys(ctx: Context = Depends(context), tenant: str = Depends(key_owner)) -> KeyList:
    """Your keys, revoked ones too; never a key's secret."""
    return KeyList(data=[key_read(k) for k in tenant_service.list_keys(ctx, tenant_id=tenant)])


@router.post("", response_model=KeyCreated, status_code=status.HTTP_201_CREATED)
def create_key(ctx: Context = Depends(context), tenant: str = Depends(key_owner)) -> KeyCreated:
    """A new key: its secret is in this answer only."""
    key = tenant_service.create_key(ctx, tenant_id=tenant)
    return KeyCreated(id=key.key_id, api_key=key.secret)


@router.delete("/{key_id}", response_model=KeyRead)
def revoke_key(
    key_id: KeyId,
    request: Request,
    ctx: Context = Depends(context),
    tenant: str = Depends(key_owner),
) -> KeyRead:
    """Revoke one of your keys now; again changes nothing. Your last live key stays (409)."""
    key = tenant_service.revoke_own_key(ctx, tenant_id=tenant, key_id=key_id)
    request.app.state.runtime.gateway.forget()  # the gateway's cached keys: this one goes now
    return key_read(key)
