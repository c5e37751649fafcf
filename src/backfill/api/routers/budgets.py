"""Budgets and spend holds: prepaid credit, per-key caps, reserve before work and settle after."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from backfill.api.auth import context, metering, operator, tenant_id
from backfill.api.schemas import (
    BudgetList,
    BudgetRead,
    CreditGrantCreate,
    HoldCreate,
    HoldRead,
    HoldSettle,
    KeyLimitSet,
)
from backfill.services import budgets as budget_service
from backfill.services.budgets import BudgetView
from backfill.services.context import Context
from backfill.store.models import SpendHold

router = APIRouter(tags=["budgets"])
admin = APIRouter(prefix="/v1/admin", tags=["operator"], dependencies=[Depends(operator)])
holds = APIRouter(prefix="/v1/spend/holds", tags=["budgets"], dependencies=[Depends(metering)])


def budget_read(view: BudgetView) -> BudgetRead:
    return BudgetRead(
        scope=view.scope,
        limit=view.limit,
        held=view.held,
        spent=view.spent,
        leases=view.leases,
        available=view.available,
    )


def hold_read(hold: SpendHold) -> HoldRead:
    return HoldRead.model_validate(hold, from_attributes=True)


@router.get("/v1/budgets", response_model=BudgetList)
def list_budgets(ctx: Context = Depends(context), tenant: str = Depends(tenant_id)) -> BudgetList:
    """Your prepaid credit and your keys' caps: limit, held, spent and what is available."""
    return BudgetList(data=[budget_read(v) for v in budget_service.views(ctx, tenant_id=tenant)])


@router.put("/v1/budgets/keys/{key_id}", response_model=BudgetRead | None)
def set_key_limit(
    key_id: str,
    body: KeyLimitSet,
    ctx: Context = Depends(context),
    tenant: str = Depends(tenant_id),
) -> BudgetRead | None:
    """Cap what one of your keys may spend (null lifts the cap)."""
    view = budget_service.set_key_limit(ctx, tenant_id=tenant, key_id=key_id, limit=body.limit)
    return budget_read(view) if view is not None else None


@admin.post(
    "/tenants/{tenant}/credits", response_model=BudgetRead, status_code=status.HTTP_201_CREATED
)
def grant_credit(
    tenant: str, body: CreditGrantCreate, ctx: Context = Depends(context)
) -> BudgetRead:
    """Add prepaid credit to a tenant: from then on its work must fit in what is left."""
    return budget_read(
        budget_service.grant_credit(ctx, tenant_id=tenant, amount=body.amount, note=body.note)
    )


@admin.get("/tenants/{tenant}/budgets", response_model=BudgetList)
def tenant_budgets(tenant: str, ctx: Context = Depends(context)) -> BudgetList:
    return BudgetList(data=[budget_read(v) for v in budget_service.views(ctx, tenant_id=tenant)])


@holds.post("", response_model=HoldRead, status_code=status.HTTP_201_CREATED)
def create_hold(body: HoldCreate, ctx: Context = Depends(context)) -> HoldRead:
    """Reserve what a piece of work may cost before it starts (a meter's or the operator's key).
    402 ``budget_exhausted`` when the tenant's credit or the key's cap cannot cover it."""
    hold = budget_service.reserve(
        ctx,
        tenant_id=body.tenant_id,
        key_id=body.key_id,
        amount=body.amount,
        description=body.description,
    )
    return hold_read(hold)


@holds.get("/{hold_id}", response_model=HoldRead)
def get_hold(hold_id: str, ctx: Context = Depends(context)) -> HoldRead:
    return hold_read(budget_service.get_hold(ctx, hold_id=hold_id))


@holds.post("/{hold_id}/settle", response_model=HoldRead)
def settle_hold(hold_id: str, body: HoldSettle, ctx: Context = Depends(context)) -> HoldRead:
    """Close a hold at the work's real cost; the same settle again changes nothing."""
    return hold_read(budget_service.settle(ctx, hold_id=hold_id, amount=body.amount))


@holds.post("/{hold_id}/release", response_model=HoldRead)
def release_hold(hold_id: str, ctx: Context = Depends(context)) -> HoldRead:
    """Give a hold back whole: the work did not happen."""
    return hold_read(budget_service.release(ctx, hold_id=hold_id))
