"""Prices to the cent and usage to the micro-unit, in Decimal, never float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.domain.fleet import Prices
from backfill.domain.metering import segment_cost
from backfill.domain.pricing import list_price, spot_price, utilization
from backfill.domain.tiers import Tier

H100 = Prices(on_demand=Decimal("2.49"), reserved=Decimal("1.99"), spot_floor=Decimal("0.90"))


def prices(on_demand: str, spot_floor: str, reserved: str = "0") -> Prices:
    return Prices(
        on_demand=Decimal(on_demand), reserved=Decimal(reserved), spot_floor=Decimal(spot_floor)
    )


def is_cents(value: Decimal) -> bool:
    return value.as_tuple().exponent == -2


# --- spot price ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("util", "expected"),
    [
        ("0", "0.90"),  # the floor
        ("1", "2.49"),  # on-demand
        ("0.5", "1.30"),  # 0.90 + 1.59 × 0.25 = 1.2975 → 1.30
        ("0.25", "1.00"),  # 0.90 + 1.59 × 0.0625 = 0.999375 → 1.00
        ("0.75", "1.79"),  # 0.90 + 1.59 × 0.5625 = 1.794375 → 1.79
        ("0.9", "2.19"),  # 0.90 + 1.59 × 0.81 = 2.1879 → 2.19
    ],
)
def test_spot_price_is_floor_plus_the_spread_times_utilization_squared(
    util: str, expected: str
) -> None:
    price = spot_price(H100, Decimal(util))

    assert type(price) is Decimal
    assert price == Decimal(expected)
    assert is_cents(price)


@pytest.mark.parametrize(
    ("on_demand", "util", "expected"),
    [
        # floor 1.00, spread 2.00: 2 × 0.15² = 0.045 → 1.045 → 1.04 (half to even; half-up: 1.05)
        ("3.00", "0.15", "1.04"),
        # 2 × 0.25² = 0.125 → 1.125 → 1.12
        ("3.00", "0.25", "1.12"),
        # 2 × 0.35² = 0.245 → 1.245 → 1.24
        ("3.00", "0.35", "1.24"),
        # floor 1.00, spread 6.00: 6 × 0.05² = 0.015 → 1.015 → 1.02 (the even neighbour is up)
        ("7.00", "0.05", "1.02"),
    ],
)
def test_spot_price_rounds_to_the_cent_half_to_even(
    on_demand: str, util: str, expected: str
) -> None:
    price = spot_price(prices(on_demand, "1.00"), Decimal(util))

    assert price == Decimal(expected)
    assert is_cents(price)


def test_spot_price_is_never_below_the_floor_even_when_rounding_would_take_it_there() -> None:
    # A floor of 0.905 rounds to 0.90 (half to even): the floor itself is returned instead.
    floored = prices("2.00", "0.905")

    assert spot_price(floored, Decimal(0)) == Decimal("0.905")
    # 0.905 + 1.095 × 0.0001 = 0.9051095 → 0.91, above the floor.
    assert spot_price(floored, Decimal("0.01")) == Decimal("0.91")
    for step in range(101):
        assert spot_price(floored, Decimal(step) / 100) >= Decimal("0.905")


def test_spot_price_clamps_utilization_to_zero_and_one() -> None:
    assert spot_price(H100, Decimal("1.5")) == Decimal("2.49")
    assert spot_price(H100, Decimal(7)) == Decimal("2.49")
    assert spot_price(H100, Decimal("-0.5")) == Decimal("0.90")


def test_spot_price_rises_with_utilization() -> None:
    curve = [spot_price(H100, Decimal(step) / 20) for step in range(21)]

    assert curve == sorted(curve)
    assert curve[0] == Decimal("0.90")
    assert curve[-1] == Decimal("2.49")


def test_spot_price_equals_the_floor_when_floor_and_on_demand_are_equal() -> None:
    flat = prices("1.50", "1.50")

    assert spot_price(flat, Decimal("0")) == Decimal("1.50")
    assert spot_price(flat, Decimal("0.7")) == Decimal("1.50")
    assert spot_price(flat, Decimal("1")) == Decimal("1.50")


# --- utilization ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("busy", "total", "expected"),
    [
        (0, 8, Decimal(0)),
        (3, 8, Decimal("0.375")),
        (8, 8, Decimal(1)),
        (12, 8, Decimal(1)),  # clamped
        (-2, 8, Decimal(0)),  # clamped
        (0, 0, Decimal(0)),  # an empty pool is not busy
        (5, 0, Decimal(0)),
        (5, -8, Decimal(0)),
    ],
)
def test_utilization_is_busy_over_total_clamped_to_zero_and_one(
    busy: int, total: int, expected: Decimal
) -> None:
    util = utilization(busy, total)

    assert type(util) is Decimal
    assert util == expected


def test_utilization_is_exact_decimal_division() -> None:
    assert utilization(1, 3) == Decimal(1) / Decimal(3)
    # 1/3 busy: 0.90 + 1.59 / 9 = 1.0766… → 1.08
    assert spot_price(H100, utilization(16, 48)) == Decimal("1.08")


# --- list prices ---------------------------------------------------------------------------------


def test_list_price_per_tier() -> None:
    current_spot = Decimal("1.37")

    assert list_price(H100, Tier.ON_DEMAND, current_spot) == Decimal("2.49")
    assert list_price(H100, Tier.RESERVED, current_spot) == Decimal("1.99")
    assert list_price(H100, Tier.SPOT, current_spot) == Decimal("1.37")
    assert list_price(H100, Tier.INTERNAL, current_spot) == Decimal(0)
    for tier in Tier:
        assert type(list_price(H100, tier, current_spot)) is Decimal


# --- segment cost --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gpus", "seconds", "price", "expected"),
    [
        (8, 120, "0.95", "0.253333"),  # 912 / 3600 = 0.25333…
        (3, 1, "2.99", "0.002492"),  # 8.97 / 3600 = 0.0024916…
        (1, 3600, "2.49", "2.490000"),  # one GPU-hour
        (16, 86_400, "2.99", "1148.160000"),  # 16 × 24 × 2.99
        (1, 1, "0.01", "0.000003"),  # 0.0000027… → 0.000003
        (0, 3600, "2.49", "0.000000"),
        (8, 0, "2.49", "0.000000"),
        (4, 600, "0", "0.000000"),
    ],
)
def test_segment_cost_is_exact_to_the_micro_unit(
    gpus: int, seconds: int, price: str, expected: str
) -> None:
    cost = segment_cost(gpus, seconds, Decimal(price))

    assert type(cost) is Decimal
    assert cost == Decimal(expected)
    assert cost.as_tuple().exponent == -6


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (1, "0.000000"),  # 0.0018 / 3600 = 0.0000005 → 0 (even)
        (3, "0.000002"),  # 0.0000015 → 0.000002 (even)
        (5, "0.000002"),  # 0.0000025 → 0.000002 (even; half-up would give 0.000003)
        (7, "0.000004"),  # 0.0000035 → 0.000004 (even)
    ],
)
def test_segment_cost_rounds_half_to_even(seconds: int, expected: str) -> None:
    assert segment_cost(1, seconds, Decimal("0.0018")) == Decimal(expected)


def test_segment_costs_of_a_split_lease_add_up_within_a_micro_unit_per_segment() -> None:
    whole = segment_cost(8, 3600, Decimal("0.95"))
    parts = segment_cost(8, 1000, Decimal("0.95")) + segment_cost(8, 2600, Decimal("0.95"))

    # 2.111111 + 5.488889 = 7.600000 = 8 × 0.95
    assert whole == Decimal("7.600000")
    assert parts == Decimal("7.600000")


@pytest.mark.parametrize(("gpus", "seconds"), [(-1, 10), (1, -10), (-1, -1)])
def test_segment_cost_rejects_negative_gpus_or_seconds(gpus: int, seconds: int) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        segment_cost(gpus, seconds, Decimal("1.00"))


# --- Decimal, never float ------------------------------------------------------------------------


def test_prices_refuse_floats() -> None:
    with pytest.raises(ValueError, match="on_demand"):
        Prices(on_demand=2.49, reserved=Decimal("1.99"), spot_floor=Decimal("0.90"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spot_floor"):
        Prices(on_demand=Decimal("2.49"), reserved=Decimal("1.99"), spot_floor=0.9)  # type: ignore[arg-type]


def test_every_money_value_is_a_decimal() -> None:
    spot = spot_price(H100, utilization(5, 8))
    values = [
        spot,
        list_price(H100, Tier.SPOT, spot),
        list_price(H100, Tier.INTERNAL, spot),
        segment_cost(2, 60, spot),
        H100.on_demand,
        H100.reserved,
        H100.spot_floor,
    ]

    assert all(type(value) is Decimal for value in values)
    assert not any(isinstance(value, float) for value in values)
