"""Budgets: prepaid credit per tenant, caps per API key; spend reserved first, settled after.

Work that costs money (an inference request, a fine-tuning run, a tool call) first *holds* what it
may cost. The hold is one conditional ``UPDATE … SET held = held + x WHERE limit - spent - held
- x >= 0`` per budget it draws on (the tenant's credit, and the key's cap when the key has one), in
one transaction: the database applies them one at a time, so however many requests race, they
can never hold more than is there (the overspend LiteLLM's read-then-write budgets allow,
litellm #34732). When the work is done the hold is *settled* at the real cost, or *released*.

A tenant without a tenant budget is post-paid: it is invoiced, never stopped. One with credit
has its leases' running cost counted against it too, so a lease is only admitted while the
credit covers an hour of it; once the credit is spent, its running spot and on-demand leases get
their notice (``enforce_credit``, every tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CursorResult, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backfill.domain.leases import LeaseState
from backfill.domain.sla import CREDIT_EXHAUSTED
from backfill.domain.tiers import Tier
from backfill.engines.base import WorkloadState
from backfill.errors import BudgetExhausted, Conflict, InvalidRequest, NotFound
from backfill.services.context import Context
from backfill.services.ids import new_id
from backfill.services.tenants import existing, owned_key
from backfill.services.usage import measure
from backfill.store.models import Budget, CreditGrant, Lease, LeaseSegment, SpendHold
from backfill.store.types import Money

TENANT = "tenant"
"""The scope of a tenant's own budget (its prepaid credit); a key's budget has the key's id."""
MAX_AMOUNT = Decimal(1_000_000_000)
MICRO = Decimal("0.000001")
HELD, SETTLED, RELEASED = "held", "settled", "released"
_PAY_AS_THEY_RUN = (Tier.SPOT, Tier.ON_DEMAND)
"""The tiers whose leases draw on credit while they run (reserved is paid up front)."""


@dataclass(frozen=True)
class BudgetView:
    scope: str
    limit: Decimal
    held: Decimal
    spent: Decimal
    leases: Decimal
    """The running cost of the tenant's leases since the budget began (tenant scope only)."""

    @property
    def available(self) -> Decimal:
        return self.limit - self.held - self.spent - self.leases


def check_amount(amount: Decimal, field: str, *, zero: bool = False) -> Decimal:
    if not amount.is_finite() or amount != amount.quantize(MICRO):
        raise InvalidRequest("an amount has at most 6 decimal places", field=field)
    if amount < 0 or (amount == 0 and not zero) or amount > MAX_AMOUNT:
        low = "0" if zero else "more than 0"
        raise InvalidRequest(f"an amount is {low} and at most {MAX_AMOUNT}", field=field)
    return amount


def grant_credit(ctx: Context, *, tenant_id: str, amount: Decimal, note: str | None) -> BudgetView:
    """Add prepaid credit to a tenant's budget (made at its first grant)."""
    check_amount(amount, "amount")
    with ctx.unit_of_work() as session:
        existing(session, tenant_id)
    for attempt in range(2):  # two first grants at once: one inserts, the other adds
        with ctx.unit_of_work() as session:
            now = ctx.engine_now()
            session.add(
                CreditGrant(
                    id=new_id("crd"), tenant_id=tenant_id, amount=amount, note=note, created_at=now
                )
            )
            added: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(Budget)
                .where(Budget.tenant_id == tenant_id, Budget.scope == TENANT)
                .values(limit=Budget.limit + _money(amount))
            )
            if added.rowcount == 0:
                session.add(_budget(tenant_id, TENANT, amount, now))
            try:
                session.commit()
            except IntegrityError:
                if attempt:
                    raise
                continue
            return _views(ctx, session, tenant_id, scope=TENANT)[0]
    raise AssertionError("unreachable")


def set_key_limit(
    ctx: Context, *, tenant_id: str, key_id: str, limit: Decimal | None
) -> BudgetView | None:
    """Cap what one of the tenant's keys may spend (None: no cap of its own)."""
    if limit is not None:
        check_amount(limit, "limit", zero=True)
    with ctx.unit_of_work() as session:
        owned_key(session, tenant_id, key_id)
        budget = session.scalar(
            select(Budget).where(Budget.tenant_id == tenant_id, Budget.scope == key_id)
        )
        if limit is None:
            if budget is not None:
                session.delete(budget)
            session.commit()
            return None
        if budget is None:
            session.add(_budget(tenant_id, key_id, limit, ctx.engine_now()))
        else:
            budget.limit = limit
        try:
            session.commit()
        except IntegrityError:
            raise Conflict("the key's budget changed at the same time; try again") from None
        return _views(ctx, session, tenant_id, scope=key_id)[0]


def views(ctx: Context, *, tenant_id: str) -> list[BudgetView]:
    with ctx.unit_of_work() as session:
        existing(session, tenant_id)
        return _views(ctx, session, tenant_id)


def reserve(
    ctx: Context,
    *,
    tenant_id: str,
    amount: Decimal,
    key_id: str | None = None,
    description: str | None = None,
) -> SpendHold:
    """Hold ``amount`` against the tenant's credit and the key's cap, or raise BudgetExhausted
    and hold nothing."""
    check_amount(amount, "amount")
    with ctx.unit_of_work() as session:  # reads apart: SQLite cannot turn a read into a write
        existing(session, tenant_id)  # while another writer commits
        if key_id is not None:
            owned_key(session, tenant_id, key_id)
        running = lease_cost(ctx, session, tenant_id)
    with ctx.unit_of_work() as session:  # the first statement writes
        for scope in (TENANT, key_id) if key_id is not None else (TENANT,):
            extra = running if scope == TENANT else Decimal(0)
            took: CursorResult[Any] = session.execute(  # type: ignore[assignment]
                update(Budget)
                .where(
                    Budget.tenant_id == tenant_id,
                    Budget.scope == scope,
                    Budget.limit - Budget.spent - Budget.held >= _money(amount + extra),
                )
                .values(held=Budget.held + _money(amount))
            )
            if took.rowcount == 0 and _exists(session, tenant_id, scope):
                session.rollback()
                whose = "the tenant's credit" if scope == TENANT else f"key {key_id}'s budget"
                raise BudgetExhausted(
                    f"{whose} does not cover {amount}: add credit or raise the limit",
                    field="amount",
                )
        hold = SpendHold(
            id=new_id("hld"),
            tenant_id=tenant_id,
            key_id=key_id,
            amount=amount,
            state=HELD,
            description=description,
            created_at=ctx.engine_now(),
        )
        session.add(hold)
        session.commit()
        return hold


def settle(ctx: Context, *, hold_id: str, amount: Decimal) -> SpendHold:
    """Close a hold at the work's real cost (which may be more than was held: the work was
    done). Settling again at the same amount returns it unchanged."""
    check_amount(amount, "amount", zero=True)
    return _close(ctx, hold_id, SETTLED, amount)


def release(ctx: Context, *, hold_id: str) -> SpendHold:
    """Give a hold back whole: the work did not happen."""
    return _close(ctx, hold_id, RELEASED, Decimal(0))


def get_hold(ctx: Context, *, hold_id: str) -> SpendHold:
    with ctx.unit_of_work() as session:
        hold = session.get(SpendHold, hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id!r}")
        return hold


def _close(ctx: Context, hold_id: str, state: str, amount: Decimal) -> SpendHold:
    with ctx.unit_of_work() as session:
        now = ctx.engine_now()
        closed: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(SpendHold)
            .where(SpendHold.id == hold_id, SpendHold.state == HELD)
            .values(state=state, settled_amount=amount, closed_at=now)
        )
        hold = session.get(SpendHold, hold_id)
        if hold is None:
            raise NotFound(f"no hold {hold_id!r}")
        if closed.rowcount == 0:
            session.rollback()
            if hold.state == state and hold.settled_amount == amount:
                return hold  # a retry of the same request
            raise Conflict(f"hold {hold_id} is {hold.state} already", field="amount")
        session.refresh(hold)
        scopes = [TENANT] if hold.key_id is None else [TENANT, hold.key_id]
        session.execute(
            update(Budget)
            .where(Budget.tenant_id == hold.tenant_id, Budget.scope.in_(scopes))
            .values(held=Budget.held - _money(hold.amount), spent=Budget.spent + _money(amount))
        )
        session.commit()
        return hold


def check_lease(ctx: Context, session: Session, tenant_id: str, upfront: Decimal) -> None:
    """Refuse a lease of a tenant on credit unless what is left covers ``upfront`` (an hour of
    an on-demand or spot lease; a reservation's whole period)."""
    credit = _views(ctx, session, tenant_id, scope=TENANT)
    if not credit:
        return  # post-paid
    left = credit[0].available
    if left < upfront:
        raise BudgetExhausted(
            f"the tenant's credit has {max(left, Decimal(0)):.2f} left, less than the "
            f"{upfront:.2f} the lease needs up front: add credit first",
            field="gpus",
        )


def enforce_credit(ctx: Context) -> int:
    """Give its notice (``CREDIT_EXHAUSTED``) to every running spot and on-demand lease of each
    tenant whose prepaid credit is spent (``available`` at or below 0): the lease stops at the end
    of its pool's notice period. Returns how many leases it noticed.

    A lease is noticed once (one noticed already keeps its notice); reserved leases were paid up
    front and run their period; a post-paid tenant (no credit) is never noticed. One query when
    no tenant on credit has such a lease running."""
    with ctx.unit_of_work() as session:
        running = (Lease.state == LeaseState.RUNNING) & Lease.tier.in_(_PAY_AS_THEY_RUN)
        tenants = session.scalars(
            select(Budget.tenant_id)
            .join(Lease, Lease.tenant_id == Budget.tenant_id)
            .where(Budget.scope == TENANT, running)
            .distinct()
        ).all()
        due: list[str] = []
        for tenant_id in sorted(tenants):
            if _views(ctx, session, tenant_id, scope=TENANT)[0].available > 0:
                continue
            due += session.scalars(
                select(Lease.id).where(Lease.tenant_id == tenant_id, running).order_by(Lease.id)
            ).all()
    noticed = 0
    with ctx.lock:
        for lease_id in due:
            if ctx.engine.workload(lease_id).state is not WorkloadState.RUNNING:
                continue  # noticed or ended since the store last heard: the next sync applies it
            try:
                ctx.engine.notice(lease_id, reason=CREDIT_EXHAUSTED)
            except Conflict:
                continue  # it ended just now
            noticed += 1
    return noticed


def lease_cost(ctx: Context, session: Session, tenant_id: str) -> Decimal:
    """What the tenant's leases have cost since its credit began (open ones up to now)."""
    began = session.scalar(
        select(Budget.created_at).where(Budget.tenant_id == tenant_id, Budget.scope == TENANT)
    )
    return Decimal(0) if began is None else _lease_cost(ctx, session, tenant_id, began)


def _lease_cost(ctx: Context, session: Session, tenant_id: str, began: datetime) -> Decimal:
    now = ctx.engine_now()
    segments = session.scalars(
        select(LeaseSegment).where(
            LeaseSegment.tenant_id == tenant_id,
            (LeaseSegment.ended_at.is_(None)) | (LeaseSegment.ended_at > began),
        )
    )
    return sum((measure(s, now, since=began).cost for s in segments), Decimal(0))


def _money(amount: Decimal) -> Any:
    """An amount bound as micro-units, as the columns hold it (a bare Decimal compared with a
    sum of columns would be bound as a plain number)."""
    return literal(amount, Money())


def _exists(session: Session, tenant_id: str, scope: str) -> bool:
    found = session.scalar(
        select(Budget.id).where(Budget.tenant_id == tenant_id, Budget.scope == scope)
    )
    return found is not None


def _budget(tenant_id: str, scope: str, limit: Decimal, at: datetime) -> Budget:
    return Budget(
        id=new_id("bud"),
        tenant_id=tenant_id,
        scope=scope,
        limit=limit,
        held=Decimal(0),
        spent=Decimal(0),
        created_at=at,
    )


def _views(
    ctx: Context, session: Session, tenant_id: str, scope: str | None = None
) -> list[BudgetView]:
    query = select(Budget).where(Budget.tenant_id == tenant_id)
    if scope is not None:
        query = query.where(Budget.scope == scope)
    out = []
    for budget in session.scalars(query.order_by(Budget.scope != TENANT, Budget.scope)):
        session.refresh(budget)
        running = Decimal(0)
        if budget.scope == TENANT:
            running = _lease_cost(ctx, session, tenant_id, budget.created_at)
        out.append(
            BudgetView(
                scope=budget.scope,
                limit=budget.limit,
                held=budget.held,
                spent=budget.spent,
                leases=running,
            )
        )
    return out
