"""The market model: seeded, per pool, read from a TOML file that refuses what is wrong."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from backfill.domain.fleet import Node, Pool, Prices
from backfill.domain.tiers import Tier
from backfill.replay.market import (
    DAY,
    DEFAULT_MARKET,
    HOUR,
    InvalidMarket,
    Market,
    PoolMarket,
    load_market,
    parse_market,
)

PRICES = Prices(on_demand=Decimal("2"), reserved=Decimal("1.5"), spot_floor=Decimal("0.5"))
START = 1_614_816_000  # a Thursday, 00:00 UTC


def pool(nodes: int = 16, gpus: int = 8, region: str = "r") -> Pool:
    return Pool(region, "GPU", tuple(Node(f"{region}{i}", gpus) for i in range(nodes)), PRICES)


def test_same_seed_same_requests_and_another_seed_differs() -> None:
    p = pool()
    a = DEFAULT_MARKET.requests([p], START, START + 2 * DAY)
    b = DEFAULT_MARKET.requests([p], START, START + 2 * DAY)
    c = DEFAULT_MARKET.with_seed(8).requests([p], START, START + 2 * DAY)
    assert a == b
    assert a != c


def test_requests_follow_the_configured_rate_mix_and_sizes() -> None:
    p = pool(nodes=125)  # 1,000 GPUs
    requests = DEFAULT_MARKET.requests([p], START, START + 20 * DAY)
    m = DEFAULT_MARKET.default
    expected = m.rate_per_1000_gpus * 20 * 24
    assert abs(len(requests) - expected) < 4 * expected**0.5  # Poisson: within 4 sigma
    tiers = Counter(r.tier for r in requests)
    for tier, weight in m.tiers.items():
        assert abs(tiers[tier] / len(requests) - weight) < 0.02
    assert {r.gpus for r in requests} == set(m.sizes)
    assert all(START <= r.at < START + 20 * DAY for r in requests)
    assert [r.at for r in requests] == sorted(r.at for r in requests)
    assert all(isinstance(r.at, int) and isinstance(r.seconds, int) for r in requests)


def test_reserved_asks_start_ahead_for_whole_days_and_spot_bids_are_in_range() -> None:
    requests = DEFAULT_MARKET.requests([pool(nodes=125)], START, START + 10 * DAY)
    m = DEFAULT_MARKET.default
    for r in requests:
        if r.tier is Tier.RESERVED:
            assert r.start_at is not None
            assert m.reserved_lead_hours[0] * HOUR - 1 <= r.start_at - r.at
            assert r.start_at - r.at <= m.reserved_lead_hours[1] * HOUR + 1
            assert r.seconds % DAY == 0
            assert m.reserved_days[0] <= r.seconds // DAY <= m.reserved_days[1]
        elif r.tier is Tier.SPOT:
            assert r.bid is not None and PRICES.spot_floor <= r.bid <= PRICES.on_demand
        else:
            assert r.bid is None and r.start_at is None
            assert 60 <= r.seconds <= m.max_hours * HOUR
    spot = [r for r in requests if r.tier is Tier.SPOT]
    at_on_demand = sum(r.bid == PRICES.on_demand for r in spot) / len(spot)
    assert abs(at_on_demand - m.bid_at_on_demand) < 0.05


def test_the_daily_swing_shapes_the_hours() -> None:
    market = Market(default=PoolMarket(daily_swing=0.8, rate_per_1000_gpus=200))
    requests = market.requests([pool(nodes=125)], START, START + 20 * DAY)
    hour = Counter((r.at % DAY) // HOUR for r in requests)
    assert hour[14] > 2 * hour[2]  # the swing peaks at 14:00 UTC and bottoms at 02:00


def test_adding_a_pool_leaves_another_pools_requests_alone() -> None:
    a, b = pool(region="a"), pool(region="b")
    alone = DEFAULT_MARKET.requests([a], START, START + DAY)
    both = DEFAULT_MARKET.requests([a, b], START, START + DAY)
    assert [r for r in both if r.pool == a.key] == alone


def test_sizes_a_pool_cannot_place_are_not_asked() -> None:
    small = pool(nodes=1, gpus=4)  # 16 GPUs is neither ≤ a node nor whole 4-GPU nodes here
    market = Market(default=PoolMarket(sizes={2: 1.0, 16: 1.0, 8: 1.0}))
    assert {r.gpus for r in market.requests([small], START, START + DAY)} == {2}


def test_a_market_file_overrides_defaults_per_pool(tmp_path: Path) -> None:
    path = tmp_path / "market.toml"
    path.write_text(
        """
seed = 11
[pools.default]
rate_per_1000_gpus = 10
sizes = { 1 = 1, 8 = 3 }
tiers = { spot = 1 }
[pools."r/GPU"]
rate_per_1000_gpus = 50
hours = { median = 1, p90 = 2 }
reserved_days = { min = 2, max = 3 }
spot_bid = { at_on_demand = 1.0 }
""",
        encoding="utf-8",
    )
    market = load_market(path)
    assert market.seed == 11
    assert market.default.rate_per_1000_gpus == 10
    assert market.default.tiers == {Tier.SPOT: 1.0}
    own = market.of("r/GPU")
    assert own.rate_per_1000_gpus == 50
    assert own.sizes == {1: 1.0, 8: 3.0}  # from the file's default table
    assert (own.median_hours, own.p90_hours, own.reserved_days) == (1.0, 2.0, (2, 3))
    assert market.of("other/GPU") is market.default


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed = -1", "seed must be a non-negative integer"),
        ("speed = 1", "unknown key 'speed'"),
        ("[pools.default]\nrate = 1", "pools.default: unknown key 'rate'"),
        ("[pools.default]\nrate_per_1000_gpus = 'ten'", "rate_per_1000_gpus: must be a number"),
        ("[pools.default]\nrate_per_1000_gpus = 1e9", "rate_per_1000_gpus: 1000000000.0 is out"),
        ("[pools.default]\nrate_per_1000_gpus = nan", "must be a number"),
        ("[pools.default]\nsizes = { 0 = 1 }", "sizes: '0' is not a GPU count"),
        ("[pools.default]\nsizes = { x = 1 }", "sizes: 'x' is not a GPU count"),
        ("[pools.default]\nsizes = {}", "sizes: must be a non-empty table"),
        ("[pools.default]\nsizes = { 1 = 0 }", "sizes: the weights add up to 0"),
        ("[pools.default]\nsizes = { 1 = -1 }", "sizes.1: -1 is outside"),
        ("[pools.default]\ntiers = { internal = 1 }", "tiers: 'internal' is not one of"),
        ("[pools.default]\nhours = { median = 5, p90 = 2 }", "p90 (2.0) is below the median"),
        ("[pools.default]\nhours = { mean = 5 }", "hours: unknown key 'mean'"),
        ("[pools.default]\nreserved_days = { min = 0 }", "reserved_days.min: a whole number"),
        ("[pools.default]\nreserved_days = { min = 5, max = 2 }", "max (2) is below min (5)"),
        ("[pools.default]\nspot_bid = { at_on_demand = 2 }", "at_on_demand: 2 is outside 0..1"),
        ("[pools.default]\ndaily_swing = true", "daily_swing: must be a number, not True"),
        ("pools = 3", "pools must be a table"),
        ('[pools."a/b"]\nsizes = 3', "pools.'a/b'.sizes: must be a non-empty table"),
        ("seed = ", "not valid TOML"),
    ],
)
def test_a_bad_market_file_is_refused_saying_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "market.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InvalidMarket) as caught:
        load_market(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_unreadable_oversized_and_non_utf8_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidMarket, match="cannot read"):
        load_market(tmp_path / "missing.toml")
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(InvalidMarket, match="more than a market file's"):
        load_market(big)
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"# caf\xe9\nseed = 1\n")
    with pytest.raises(InvalidMarket, match="not UTF-8"):
        load_market(latin)


def test_parse_market_defaults() -> None:
    assert parse_market({}) == DEFAULT_MARKET
