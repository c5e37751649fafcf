"""The owner's books in pure arithmetic: GPU-seconds by tier, idle left and sold, showback."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.domain.showback import (
    Held,
    PoolCapacity,
    fleet_books,
    gpu_hours,
    pool_books,
    showback_cost,
)
from backfill.domain.tiers import Tier

H100 = PoolCapacity("us-east/H100", 16, Decimal("2.99"))
A100 = PoolCapacity("eu-west/A100", 8, Decimal("1.79"))


def test_every_gpu_second_of_a_pool_is_held_by_a_tier_or_idle() -> None:
    held = [
        Held("us-east/H100", Tier.INTERNAL, "research", 8 * 3600),
        Held("us-east/H100", Tier.INTERNAL, "research", 4 * 1800),
        Held("us-east/H100", Tier.INTERNAL, "serving", 2 * 3600),
        Held("us-east/H100", Tier.SPOT, "acme", 2 * 3600),
        Held("us-east/H100", Tier.ON_DEMAND, "globex", 1 * 3600),
        Held("eu-west/A100", Tier.RESERVED, "acme", 8 * 3600),
    ]
    h100, a100 = pool_books([H100, A100], held, 3600)
    assert h100.capacity == 16 * 3600
    assert dict(h100.by_tier) == {
        Tier.INTERNAL: 12 * 3600,
        Tier.RESERVED: 0,
        Tier.ON_DEMAND: 3600,
        Tier.SPOT: 2 * 3600,
    }
    assert h100.idle == 1 * 3600
    assert h100.internal + sum(h100.by_tier[t] for t in Tier if t.external) + h100.idle == (
        h100.capacity
    )
    assert h100.would_be_idle == 4 * 3600 and h100.sold == 3 * 3600
    assert h100.sold_share == Decimal("0.7500")
    # Showback per team at the on-demand list price; the pool's is the sum of its teams'.
    assert [(s.team, s.gpu_seconds, s.amount) for s in h100.showback] == [
        ("research", 10 * 3600, Decimal("29.900000")),
        ("serving", 2 * 3600, Decimal("5.980000")),
    ]
    assert h100.showback_amount == Decimal("35.88")
    # A pool the owner does not use: all of it could be sold, and all of it was.
    assert a100.idle == 0 and a100.sold_share == Decimal("1.0000") and a100.showback == ()


def test_the_fleet_adds_pools_up_and_shares_need_something_to_share() -> None:
    pools = pool_books(
        [H100, A100], [Held("eu-west/A100", Tier.INTERNAL, "serving", 8 * 60)], window_seconds=60
    )
    a100 = pools[1]
    assert a100.would_be_idle == 0 and a100.sold_share is None  # the owner used it all
    fleet = fleet_books(pools, 60)
    assert fleet.pool == "all" and fleet.gpus == 24 and fleet.capacity == 24 * 60
    assert fleet.internal == 8 * 60 and fleet.idle == 16 * 60 and fleet.sold_share == 0
    assert fleet.on_demand is None and fleet.showback_amount == Decimal("0.238667")
    empty = pool_books([H100], [], window_seconds=0)[0]
    assert empty.capacity == empty.idle == 0 and empty.sold_share is None


def test_money_is_exact_to_the_micro_unit_and_hours_to_four_places() -> None:
    assert showback_cost(7200, Decimal("2.99")) == Decimal("5.98")
    assert showback_cost(1, Decimal("2.99")) == Decimal("0.000831")  # 0.00083055… half-even
    assert gpu_hours(5400) == Decimal("1.5") and gpu_hours(1) == Decimal("0.0003")


def test_work_in_an_unknown_pool_or_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="not a known pool"):
        pool_books([H100], [Held("nowhere/X", Tier.SPOT, "acme", 1)], 60)
    with pytest.raises(ValueError, match="negative"):
        pool_books([H100], [], -1)
