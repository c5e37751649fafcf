"""The price book, rating and SLA arithmetic, pure: values in, values out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from backfill.domain.pricebook import PriceBook, PriceVersion, check_dimension
from backfill.domain.rating import (
    Contract,
    Segment,
    UnitTotal,
    amount,
    lease_charges,
    rate_contracts,
    rate_gpu,
    rate_units,
)
from backfill.domain.sla import POLICIES, LeaseRun, availability, credit, involuntary

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def book() -> PriceBook:
    return PriceBook(
        [
            PriceVersion("gpu", "r/H100", "on_demand", Decimal("2.99"), None),
            PriceVersion("gpu", "r/H100", "on_demand", Decimal("3.49"), JAN + 14 * DAY),
            PriceVersion("gpu", "r/H100", "on_demand", Decimal("3.19"), JAN + 20 * DAY),
            PriceVersion("gpu", "r/H100", "reserved", Decimal("2.39"), None),
            PriceVersion("gpu", "r/H100", "spot_floor", Decimal("0.95"), None),
            PriceVersion("inference", "m", "output", Decimal("0.40"), JAN + 2 * DAY),
        ]
    )


def test_the_price_in_force_is_the_latest_version_at_or_before_the_moment() -> None:
    prices = book()
    assert prices.price_at("gpu", "r/H100", "on_demand", JAN) == Decimal("2.99")
    assert prices.price_at("gpu", "r/H100", "on_demand", JAN + 14 * DAY) == Decimal("3.49")
    change = JAN + 14 * DAY - timedelta(seconds=1)
    assert prices.price_at("gpu", "r/H100", "on_demand", change) == Decimal("2.99")
    assert prices.price_at("gpu", "r/H100", "on_demand", FEB) == Decimal("3.19")
    assert prices.price_at("inference", "m", "output", JAN) is None  # not yet priced
    assert prices.price_at("inference", "m", "input", FEB) is None
    windows = prices.windows("gpu", "r/H100", "on_demand", JAN, FEB)
    assert [(w.start, w.price) for w in windows] == [
        (JAN, Decimal("2.99")),
        (JAN + 14 * DAY, Decimal("3.49")),
        (JAN + 20 * DAY, Decimal("3.19")),
    ]
    assert windows[-1].end == FEB
    assert prices.changes("gpu", "r/H100", JAN, JAN + 15 * DAY) == [JAN + 14 * DAY]
    gpu = prices.gpu_prices("r/H100", JAN + 15 * DAY)
    assert gpu is not None and gpu.on_demand == Decimal("3.49") and gpu.reserved == Decimal("2.39")
    assert prices.gpu_prices("other/A100", JAN) is None


def test_only_known_products_and_dimensions_are_prices() -> None:
    assert check_dimension("gpu", "on_demand") is None
    assert check_dimension("tool", "calls") is None
    assert "product" in (check_dimension("disk", "gb") or "")
    assert "dimension" in (check_dimension("gpu", "input") or "")


def seg(tier: str, price: str, start: datetime, end: datetime | None, **kw: object) -> Segment:
    values: dict[str, object] = {
        "lease_id": "l1",
        "tenant_id": "t1",
        "pool": "r/H100",
        "gpus": 8,
        "tier": tier,
        "price": Decimal(price),
        "started_at": start,
        "ended_at": end,
    }
    values.update(kw)
    return Segment(**values)  # type: ignore[arg-type]


def test_gpu_time_is_prorated_to_the_second_and_grouped_by_price() -> None:
    lines = rate_gpu(
        [
            seg("on_demand", "2.99", JAN - DAY, JAN + DAY),  # half of it before the window
            seg("on_demand", "3.49", JAN + DAY, JAN + DAY + timedelta(seconds=1)),
            seg("on_demand", "2.99", JAN + 2 * DAY, None, lease_id="l2", gpus=1),  # open
            seg("spot", "0.95", JAN, JAN + timedelta(hours=1)),
            seg("spot", "1.25", JAN + timedelta(hours=1), JAN + timedelta(hours=2)),
            seg("reserved", "2.39", JAN, JAN + DAY, lease_id="l3"),  # no contract: as usage
            seg("on_demand", "9.99", FEB, FEB + DAY),  # after the window
        ],
        JAN,
        JAN + 3 * DAY,
    )
    by_key = {(line.tier, line.unit_price): line for line in lines}
    old = by_key[("on_demand", Decimal("2.99"))]
    assert old.quantity == 8 * 86_400 + 86_400  # l1's day inside + l2's open day
    assert old.amount == Decimal("2.99") * 9 * 24
    one_second = by_key[("on_demand", Decimal("3.49"))]
    assert one_second.quantity == 8
    assert one_second.amount == Decimal("0.007756")  # 8 × 3.49 / 3600 = 0.0077555… half-even
    spot = by_key[("spot", None)]
    assert spot.quantity == 16 * 3600
    assert spot.amount == 8 * (Decimal("0.95") + Decimal("1.25"))
    assert by_key[("reserved", Decimal("2.39"))].amount == 8 * 24 * Decimal("2.39")
    assert len(lines) == 4


def test_a_reservation_is_billed_for_its_period_in_the_window_used_or_not() -> None:
    contract = Contract("l9", "t1", "r/H100", 16, Decimal("2.39"), JAN + 30 * DAY, FEB + 9 * DAY)
    (january,) = rate_contracts([contract], JAN, FEB)
    assert january.quantity == 16 * 86_400
    assert january.amount == 16 * 24 * Decimal("2.39")
    assert january.period_start == JAN + 30 * DAY and january.period_end == FEB
    (february,) = rate_contracts([contract], FEB, FEB + 28 * DAY)
    assert february.amount == 16 * 24 * 9 * Decimal("2.39")
    assert rate_contracts([contract], JAN, JAN + DAY) == []
    charged = lease_charges([], [contract], JAN, FEB)
    assert charged == {"l9": january.amount}


def test_units_are_priced_per_million_tokens_or_per_call_and_unpriced_usage_is_flagged() -> None:
    lines = rate_units(
        [
            UnitTotal("t1", "inference", "m", "input", 1_500_000, Decimal("0.10")),
            UnitTotal("t1", "inference", "m", "input", 500_000, Decimal("0.10")),
            UnitTotal("t1", "inference", "m", "output", 3, Decimal("0.40")),
            UnitTotal("t1", "tool", "search", "calls", 7, Decimal("0.002")),
            UnitTotal("t1", "finetune", "m", "tokens", 10, None),
            UnitTotal("t1", "tool", "idle", "calls", 0, Decimal("1")),
        ],
        JAN,
        FEB,
    )
    by_key = {(line.item, line.dimension): line for line in lines}
    assert by_key[("m", "input")].quantity == 2_000_000
    assert by_key[("m", "input")].amount == Decimal("0.20")
    assert by_key[("m", "output")].amount == Decimal("0.000001")  # 1.2e-6 rounds to 1 micro
    assert by_key[("search", "calls")].amount == Decimal("0.014")
    unpriced = by_key[("m", "tokens")]
    assert unpriced.amount == 0 and unpriced.unit_price is None
    assert "unpriced" in unpriced.description
    assert ("idle", "calls") not in by_key
    assert amount(1, Decimal("0.5"), "tool") == Decimal("0.5")


def run(tier: str, state: str, **kw: object) -> LeaseRun:
    values: dict[str, object] = {
        "lease_id": "l1",
        "tenant_id": "t1",
        "tier": tier,
        "pool": "r/H100",
        "gpus": 8,
        "state": state,
        "started_at": JAN,
        "ended_at": None,
    }
    values.update(kw)
    return LeaseRun(**values)  # type: ignore[arg-type]


def test_only_what_the_tenant_did_not_cause_is_an_interruption() -> None:
    end = {"ended_at": JAN + DAY}
    assert involuntary(run("on_demand", "failed", **end))  # lost by the engine: no exit code
    assert not involuntary(run("on_demand", "failed", exit_code=1, **end))  # its command failed
    assert involuntary(run("reserved", "preempted", **end))
    assert not involuntary(run("on_demand", "preempted", reason="credit exhausted", **end))
    assert not involuntary(run("spot", "preempted", **end))  # spot promised only its notice
    assert not involuntary(run("on_demand", "stopped", **end))


def test_on_demand_availability_runs_to_the_end_of_the_month_after_an_interruption() -> None:
    failed = run("on_demand", "failed", ended_at=FEB - timedelta(hours=4), reason="node n1 down")
    measured = availability(failed, JAN, FEB)
    assert measured is not None
    assert measured.window_seconds == 31 * 86_400 and measured.downtime_seconds == 4 * 3600
    assert measured.percent == Decimal("99.4624")
    assert credit(measured, Decimal("1000")) == (Decimal(10), Decimal("100.000000"))
    assert measured.interruptions[0]["reason"] == "node n1 down"
    # A lease the tenant stopped was available for as long as it ran: no downtime, no credit.
    stopped = availability(run("on_demand", "stopped", ended_at=JAN + DAY), JAN, FEB)
    assert stopped is not None and stopped.downtime_seconds == 0
    assert stopped.window_seconds == 86_400
    assert availability(run("spot", "preempted", ended_at=JAN + DAY), JAN, FEB) is None
    assert availability(run("on_demand", "pending", started_at=None), JAN, FEB) is None


def test_a_reservation_that_starts_late_or_never_is_down_for_that_time() -> None:
    late = run(
        "reserved",
        "running",
        start_at=JAN,
        end_at=JAN + 10 * DAY,
        started_at=JAN + timedelta(hours=12),
    )
    measured = availability(late, JAN, FEB)
    assert measured is not None and measured.window_seconds == 10 * 86_400
    assert measured.downtime_seconds == 12 * 3600
    assert measured.percent == Decimal(95)  # 9.5 of 10 days: 30 %, not below 95 %
    assert credit(measured, Decimal("200"))[0] == Decimal(30)
    never = run("reserved", "failed", started_at=None, ended_at=JAN, start_at=JAN, end_at=JAN + DAY)
    lost = availability(never, JAN, FEB)
    assert lost is not None and lost.percent == 0
    assert credit(lost, Decimal("57.36")) == (Decimal(100), Decimal("57.360000"))
    given_up = run(
        "reserved", "stopped", started_at=None, ended_at=JAN, start_at=JAN, end_at=JAN + DAY
    )
    kept = availability(given_up, JAN, FEB)
    assert kept is not None and kept.downtime_seconds == 0


@pytest.mark.parametrize(
    ("tier", "percent", "credit_percent"),
    [
        ("on_demand", "100", "0"),
        ("on_demand", "99.5", "0"),
        ("on_demand", "99.4999", "10"),
        ("on_demand", "98.9", "30"),
        ("on_demand", "94.99", "100"),
        ("reserved", "99.9", "0"),
        ("reserved", "99.89", "10"),
        ("reserved", "95", "30"),
    ],
)
def test_credit_steps_follow_the_public_clouds(
    tier: str, percent: str, credit_percent: str
) -> None:
    assert POLICIES[tier].credit_percent(Decimal(percent)) == Decimal(credit_percent)
