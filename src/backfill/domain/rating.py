"""Rating: metered usage → priced line items, prorated to the second, in exact decimals.

Three kinds of charge:

- **GPU time** of on-demand and spot leases, from their usage segments (a stretch of a lease at
  one price). On-demand gives one line per pool and price (a price change mid-month gives two
  lines); spot, whose price is the market's each second, one line per pool.
- **Commitments**: a reserved lease is billed for its whole period at the price it was signed
  at, used or not, prorated to the seconds of the period that fall in the invoice's window.
- **Units** of metered events (tokens, tool calls), one line per item, dimension and price.

Every quantity is a whole number of base units (GPU-seconds, tokens, calls), so sums are exact;
an amount is ``quantity × unit price / base units per price unit``, rounded half-even to the
micro-unit once per line.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from backfill.domain.pricebook import BASE_UNITS, PER_PRICE_UNIT, PRICE_UNITS

MICRO = Decimal("0.000001")
USAGE, COMMITMENT, SLA_CREDIT = "usage", "commitment", "sla_credit"
_PER = {"gpu_hour": "GPU-hour", "1M_tokens": "million tokens", "call": "call"}


def shown(value: Decimal) -> str:
    """An amount or price for people: to the cent at least, to the micro-unit where it has them."""
    exact = value.normalize()
    places = exact.as_tuple().exponent
    return str(
        exact.quantize(Decimal("0.01")) if isinstance(places, int) and places > -2 else exact
    )


_TIER_NAME = {"on_demand": "On-demand", "reserved": "Reserved"}


@dataclass(frozen=True)
class Segment:
    """A lease's stretch of running time at one price per GPU-hour."""

    lease_id: str
    tenant_id: str
    pool: str
    tier: str
    gpus: int
    price: Decimal
    started_at: datetime
    ended_at: datetime | None
    """None: still running."""


@dataclass(frozen=True)
class Contract:
    """A reserved lease: ``gpus`` GPUs over ``[start, end)`` at ``price`` per GPU-hour."""

    lease_id: str
    tenant_id: str
    pool: str
    gpus: int
    price: Decimal
    start: datetime
    end: datetime


@dataclass(frozen=True)
class UnitTotal:
    """Metered units of one item and dimension over a window in which ``price`` was in force."""

    tenant_id: str
    product: str
    item: str
    dimension: str
    units: int
    price: Decimal | None
    """None: no price in the book (rated at zero and flagged)."""


@dataclass(frozen=True)
class LineItem:
    tenant_id: str
    product: str
    """``gpu``, ``inference``, ``finetune`` or ``tool``."""
    kind: str
    """``usage``, ``commitment`` (reserved capacity) or ``sla_credit``."""
    pool: str | None
    tier: str | None
    item: str | None
    """The model or tool (None for GPU time)."""
    dimension: str | None
    quantity: int
    """In base units: GPU-seconds, tokens or calls."""
    unit_price: Decimal | None
    """Per price unit (GPU-hour, million tokens, call); None when it varied (spot)."""
    amount: Decimal
    period_start: datetime
    period_end: datetime
    description: str
    lease_id: str | None = None
    evidence: Mapping[str, object] | None = field(default=None, compare=False)

    @property
    def unit(self) -> str:
        return BASE_UNITS[self.product]

    @property
    def price_unit(self) -> str:
        return PRICE_UNITS[self.product]


def amount(quantity: int, unit_price: Decimal, product: str) -> Decimal:
    """``quantity`` base units at ``unit_price`` per price unit, to the micro-unit."""
    raw = unit_price * quantity / PER_PRICE_UNIT[product]
    return raw.quantize(MICRO, rounding=ROUND_HALF_EVEN)


def overlap(start: datetime, end: datetime, since: datetime, until: datetime) -> int:
    """Whole seconds of ``[start, end)`` within ``[since, until)``."""
    lo, hi = max(start, since), min(end, until)
    return max(0, int((hi - lo).total_seconds()))


def rate_gpu(segments: Iterable[Segment], since: datetime, until: datetime) -> list[LineItem]:
    """On-demand and spot GPU time within ``[since, until)`` (reserved is billed as contracts;
    open segments run to ``until``)."""
    firm: dict[tuple[str, str, str, Decimal], int] = {}
    spot: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for s in segments:
        seconds = overlap(s.started_at, s.ended_at or until, since, until)
        if seconds == 0:
            continue
        gpu_seconds = s.gpus * seconds
        if s.tier in ("on_demand", "reserved"):  # reserved: a lease signed without a contract
            key = (s.tenant_id, s.pool, s.tier, s.price)
            firm[key] = firm.get(key, 0) + gpu_seconds
        elif s.tier == "spot":
            held, cost = spot.get((s.tenant_id, s.pool), (0, Decimal(0)))
            spot[(s.tenant_id, s.pool)] = (held + gpu_seconds, cost + s.price * gpu_seconds)
    lines = [
        LineItem(
            tenant_id=tenant,
            product="gpu",
            kind=USAGE,
            pool=pool,
            tier=tier,
            item=None,
            dimension=tier,
            quantity=gpu_seconds,
            unit_price=price,
            amount=amount(gpu_seconds, price, "gpu"),
            period_start=since,
            period_end=until,
            description=f"{_TIER_NAME[tier]} GPU time, {pool}, at {shown(price)} per GPU-hour",
        )
        for (tenant, pool, tier, price), gpu_seconds in firm.items()
    ]
    for (tenant, pool), (gpu_seconds, price_seconds) in spot.items():
        lines.append(
            LineItem(
                tenant_id=tenant,
                product="gpu",
                kind=USAGE,
                pool=pool,
                tier="spot",
                item=None,
                dimension="spot",
                quantity=gpu_seconds,
                unit_price=None,
                amount=(price_seconds / 3600).quantize(MICRO, rounding=ROUND_HALF_EVEN),
                period_start=since,
                period_end=until,
                description=f"Spot GPU time, {pool}, at the market price of each second",
            )
        )
    return sorted(lines, key=_order)


def rate_contracts(
    contracts: Iterable[Contract], since: datetime, until: datetime
) -> list[LineItem]:
    """Each reservation's capacity within ``[since, until)``, used or not."""
    lines = []
    for c in contracts:
        seconds = overlap(c.start, c.end, since, until)
        if seconds == 0:
            continue
        gpu_seconds = c.gpus * seconds
        lines.append(
            LineItem(
                tenant_id=c.tenant_id,
                product="gpu",
                kind=COMMITMENT,
                pool=c.pool,
                tier="reserved",
                item=None,
                dimension="reserved",
                quantity=gpu_seconds,
                unit_price=c.price,
                amount=amount(gpu_seconds, c.price, "gpu"),
                period_start=max(c.start, since),
                period_end=min(c.end, until),
                description=(
                    f"Reserved {c.gpus} GPUs, {c.pool}, {c.start:%Y-%m-%d %H:%M} to "
                    f"{c.end:%Y-%m-%d %H:%M} UTC, at {shown(c.price)} per GPU-hour"
                ),
                lease_id=c.lease_id,
            )
        )
    return sorted(lines, key=_order)


_WHAT = {
    ("inference", "input"): "input tokens",
    ("inference", "output"): "output tokens",
    ("finetune", "tokens"): "fine-tuning tokens",
    ("tool", "calls"): "tool calls",
}


def rate_units(totals: Iterable[UnitTotal], since: datetime, until: datetime) -> list[LineItem]:
    """Metered units, one line per tenant, item, dimension and price."""
    summed: dict[tuple[str, str, str, str, Decimal | None], int] = {}
    for t in totals:
        if t.units == 0:
            continue
        key = (t.tenant_id, t.product, t.item, t.dimension, t.price)
        summed[key] = summed.get(key, 0) + t.units
    lines = []
    for (tenant, product, item, dimension, price), units in summed.items():
        what = f"{item} {_WHAT[(product, dimension)]}"
        per = _PER[PRICE_UNITS[product]]
        priced = f"at {shown(price)} per {per}" if price is not None else "unpriced"
        lines.append(
            LineItem(
                tenant_id=tenant,
                product=product,
                kind=USAGE,
                pool=None,
                tier=None,
                item=item,
                dimension=dimension,
                quantity=units,
                unit_price=price,
                amount=amount(units, price, product) if price is not None else Decimal(0),
                period_start=since,
                period_end=until,
                description=f"{what}, {priced}",
            )
        )
    return sorted(lines, key=_order)


def lease_charges(
    segments: Iterable[Segment], contracts: Iterable[Contract], since: datetime, until: datetime
) -> dict[str, Decimal]:
    """What each lease was charged within ``[since, until)``: the base of its SLA credit."""
    out: dict[str, Decimal] = {}
    for s in segments:
        seconds = overlap(s.started_at, s.ended_at or until, since, until)
        out[s.lease_id] = out.get(s.lease_id, Decimal(0)) + amount(s.gpus * seconds, s.price, "gpu")
    for c in contracts:
        seconds = overlap(c.start, c.end, since, until)
        out[c.lease_id] = out.get(c.lease_id, Decimal(0)) + amount(c.gpus * seconds, c.price, "gpu")
    return out


def total(lines: Iterable[LineItem]) -> Decimal:
    return sum((line.amount for line in lines), Decimal(0))


def _order(line: LineItem) -> tuple[str, str, str, str, str, str, Decimal]:
    return (
        line.tenant_id,
        line.product,
        line.pool or "",
        line.tier or "",
        line.item or "",
        line.dimension or "",
        line.unit_price if line.unit_price is not None else Decimal(-1),
    )
