from __future__ import annotations

from fastapi import APIRouter, Depends

from backfill.api.auth import context, tenant_id
from backfill.api.schemas import WebhookRead, WebhookSet
from backfill.services import webhooks as webhook_service
from backfill.services.context import Context

router = APIRouter(tags=["webhooks"])


@router.put("/v1/webhook", response_model=WebhookRead)
def set_webhook(
    body: WebhookSet, ctx: Context = Depends(context), tenant: str = Depends(tenant_id)
) -> WebhookRead:
    """Where lease notices and ends are POSTed, signed with the returned secret."""
    url, secret = webhook_service.set_endpoint(ctx, tenant_id=tenant, url=body.url)
    return WebhookRead(url=url, secret=secret)


@router.get("/v1/webhook", response_model=WebhookRead)
def get_webhook(ctx: Context = Depends(context), tenant: str = Depends(tenant_id)) -> WebhookRead:
    url, secret = webhook_service.get_endpoint(ctx, tenant_id=tenant)
    return WebhookRead(url=url, secret=secret)
