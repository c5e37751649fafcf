"""The surplus policy's rules, pinned one by one."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backfill.domain.surplus import (
    FULL,
    NO_LEASING,
    SPOT_ONLY,
    Commitment,
    NodeHold,
    SurplusPolicy,
    committed_peak,
    floor_room,
    is_breach,
    nodes_to_free,
    spot_refusal,
)
from backfill.domain.tiers import Tier


def test_headroom_rounds_up_to_whole_nodes() -> None:
    policy = SurplusPolicy(headroom=0.03)
    assert policy.headroom_nodes(128) == 4
    assert policy.headroom_nodes(64) == 2
    assert policy.headroom_nodes(100) == 3  # 3.0 exactly, not 4
    assert SurplusPolicy(headroom=0).headroom_nodes(128) == 0


def test_knobs_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="confidence"):
        SurplusPolicy(confidence=1.0)
    with pytest.raises(ValueError, match="headroom"):
        SurplusPolicy(headroom=-0.1)


def test_policy_names() -> None:
    assert NO_LEASING.name() == "no leasing" and not NO_LEASING.sells
    assert SPOT_ONLY.name().startswith("spot only")
    assert FULL.name().startswith("full")


def test_committed_peak_counts_overlap_only_inside_the_window() -> None:
    sold = [Commitment(0, 10, 4), Commitment(5, 20, 3), Commitment(10, 30, 8)]
    assert committed_peak(sold, 0, 5) == 4
    assert committed_peak(sold, 0, 10) == 7
    assert committed_peak(sold, 10, 20) == 11  # the first ends as the third starts: 3 + 8
    assert committed_peak(sold, 30, 40) == 0
    assert committed_peak([], 0, 100) == 0


def test_floor_room() -> None:
    assert floor_room(capacity=100, headroom_gpus=8, owner_peak=50.2, committed=10) == 31
    assert floor_room(capacity=100, headroom_gpus=8, owner_peak=95, committed=10) == 0


def test_spot_refusals_in_order() -> None:
    ok = dict(owner_queued=0, bid=Decimal("2"), price=Decimal("1"), idle_gpus=8, gpus=8)
    assert spot_refusal(**ok) is None  # type: ignore[arg-type]
    assert spot_refusal(**{**ok, "owner_queued": 8}) == "owner_queued"  # type: ignore[arg-type]
    assert spot_refusal(**{**ok, "bid": Decimal("0.99")}) == "bid_below_price"  # type: ignore[arg-type]
    assert spot_refusal(**{**ok, "gpus": 9}) == "no_idle_gpus"  # type: ignore[arg-type]


def test_nodes_to_free_takes_spot_only_nodes_fewest_gpus_first() -> None:
    nodes = [
        NodeHold("a", 8, free=8, spot=0, noticed=0),  # idle
        NodeHold("b", 8, free=2, spot=6, noticed=0),  # spot only, 6 to take back
        NodeHold("c", 8, free=6, spot=2, noticed=0),  # spot only, 2 to take back
        NodeHold("d", 8, free=4, spot=2, noticed=0),  # 2 GPUs of other work: never whole
        NodeHold("e", 8, free=3, spot=0, noticed=5),  # already on its way
    ]
    assert nodes_to_free(nodes, 1) == []
    assert nodes_to_free(nodes, 2) == []  # a + e
    assert nodes_to_free(nodes, 3) == ["c"]
    assert nodes_to_free(nodes, 4) == ["c", "b"]
    assert nodes_to_free(nodes, 9) == ["c", "b"]  # d can never be freed by noticing spot
    # The idle nodes may be left out and counted instead (the engine keeps them apart).
    others = [n for n in nodes if n.name != "a"]
    for want in (1, 2, 3, 4, 9):
        assert nodes_to_free(others, want, idle=1) == nodes_to_free(nodes, want)
    assert nodes_to_free(others, 3, idle=0) == ["c", "b"]  # one more to free with no idle node


def test_nodes_set_aside_for_a_reservation_are_never_the_owner_s_headroom() -> None:
    nodes = [
        NodeHold("a", 8, free=8, spot=0, noticed=0, reserved=True),  # idle, but promised
        NodeHold("b", 8, free=2, spot=6, noticed=0, reserved=True),  # spot on a promised node
        NodeHold("c", 8, free=6, spot=2, noticed=0),
    ]
    assert nodes_to_free(nodes, 1) == ["c"]
    assert nodes_to_free(nodes, 2) == ["c"]


def test_breaches() -> None:
    assert is_breach(Tier.ON_DEMAND, interrupted=True, late_seconds=0)
    assert is_breach(Tier.RESERVED, interrupted=False, late_seconds=1)
    assert not is_breach(Tier.RESERVED, interrupted=False, late_seconds=0)
    assert not is_breach(Tier.SPOT, interrupted=True, late_seconds=0)
