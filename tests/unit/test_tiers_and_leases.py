"""Tiers, the lease state machine, admission under the floor, and fleet validation."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from itertools import product

import pytest

from backfill.domain.admission import PoolLoad, available_now, floor_headroom
from backfill.domain.fleet import Fleet, InvalidFleetValue, Node, Pool, Prices
from backfill.domain.leases import IllegalTransition, LeaseState, transition
from backfill.domain.tiers import EXTERNAL_TIERS, Tier, may_preempt

PRICES = Prices(on_demand=Decimal("2.49"), reserved=Decimal("1.99"), spot_floor=Decimal("0.90"))


def pool(
    region: str = "us-east",
    accelerator: str = "H100",
    nodes: tuple[Node, ...] | None = None,
    **kwargs: int | None,
) -> Pool:
    if nodes is None:
        nodes = (Node(f"{region}-{accelerator}-0", 8), Node(f"{region}-{accelerator}-1", 8))
    return Pool(region=region, accelerator=accelerator, nodes=nodes, prices=PRICES, **kwargs)  # type: ignore[arg-type]


# --- tiers ---------------------------------------------------------------------------------------

INT, RES, OD, SPOT = Tier.INTERNAL, Tier.RESERVED, Tier.ON_DEMAND, Tier.SPOT

# claimant → holders it may take GPUs from
MAY_PREEMPT = {
    (INT, INT): False, (INT, RES): False, (INT, OD): False, (INT, SPOT): True,
    (RES, INT): False, (RES, RES): False, (RES, OD): False, (RES, SPOT): True,
    (OD, INT): False, (OD, RES): False, (OD, OD): False, (OD, SPOT): True,
    (SPOT, INT): False, (SPOT, RES): False, (SPOT, OD): False, (SPOT, SPOT): False,
}  # fmt: skip


@pytest.mark.parametrize(("claimant", "holder"), list(product(Tier, Tier)))
def test_may_preempt_truth_table(claimant: Tier, holder: Tier) -> None:
    assert may_preempt(claimant, holder) is MAY_PREEMPT[claimant, holder]


def test_only_spot_is_ever_preempted_and_only_by_a_higher_tier() -> None:
    assert len(MAY_PREEMPT) == 16
    preempted = {holder for (claimant, holder), allowed in MAY_PREEMPT.items() if allowed}
    assert preempted == {Tier.SPOT}
    for claimant, holder in product(Tier, Tier):
        if may_preempt(claimant, holder):
            assert claimant.rank > holder.rank
    assert [tier for tier in Tier if tier.preemptible] == [Tier.SPOT]


def test_tier_ranks_run_internal_first() -> None:
    assert [t.rank for t in (INT, RES, OD, SPOT)] == [3, 2, 1, 0]
    assert [t for t in Tier if t.external] == [RES, OD, SPOT]
    assert EXTERNAL_TIERS == (RES, OD, SPOT)


# --- the lease state machine ---------------------------------------------------------------------

P, RUN, N = LeaseState.PENDING, LeaseState.RUNNING, LeaseState.NOTICED
STOP, PRE, DONE, FAIL = (
    LeaseState.STOPPED,
    LeaseState.PREEMPTED,
    LeaseState.COMPLETED,
    LeaseState.FAILED,
)

ALLOWED = {
    (P, RUN), (P, STOP), (P, FAIL),
    (RUN, N), (RUN, STOP), (RUN, PRE), (RUN, DONE), (RUN, FAIL),
    (N, STOP), (N, PRE), (N, DONE), (N, FAIL),
}  # fmt: skip


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_every_allowed_lease_transition_returns_the_target(
    current: LeaseState, target: LeaseState
) -> None:
    assert transition(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (P, N),  # a lease that never ran cannot be noticed
        (P, PRE),  # nor preempted
        (P, DONE),  # nor completed
        (P, P),
        (RUN, P),  # no way back
        (RUN, RUN),
        (N, RUN),  # a notice cannot be withdrawn
        (N, N),
        (N, P),
    ],
)
def test_forbidden_lease_transitions_raise(current: LeaseState, target: LeaseState) -> None:
    with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
        transition(current, target)


def test_the_allowed_transitions_are_exactly_these() -> None:
    for current, target in product(LeaseState, LeaseState):
        if (current, target) in ALLOWED:
            assert transition(current, target) is target
        else:
            with pytest.raises(IllegalTransition):
                transition(current, target)


@pytest.mark.parametrize("terminal", [STOP, PRE, DONE, FAIL])
def test_terminal_states_have_no_way_out(terminal: LeaseState) -> None:
    assert terminal.terminal
    assert not terminal.holds_gpus
    for target in LeaseState:
        with pytest.raises(IllegalTransition):
            transition(terminal, target)


def test_only_running_and_noticed_leases_hold_gpus() -> None:
    assert [s for s in LeaseState if s.holds_gpus] == [RUN, N]
    assert [s for s in LeaseState if s.terminal] == [STOP, PRE, DONE, FAIL]


def test_illegal_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        transition(DONE, RUN)


# --- admission -----------------------------------------------------------------------------------


def test_pool_load_idle_is_what_no_tier_holds_or_claims() -> None:
    load = PoolLoad(total=16, by_tier={INT: 4, SPOT: 6, OD: 2}, claimed=1)

    assert load.busy == 12
    assert load.idle == 3  # 16 − 12 − 1


def test_pool_load_idle_is_never_negative() -> None:
    assert PoolLoad(total=8, by_tier={INT: 8}, claimed=2).idle == 0


def test_pool_load_gpus_of_nodes_out_of_service_are_not_idle_and_not_offered_for_spot() -> None:
    load = PoolLoad(total=24, by_tier={INT: 4, SPOT: 6, OD: 2}, claimed=1, down=8)

    assert load.busy == 12
    assert load.idle == 3  # 24 − 12 − 1 − 8
    assert available_now(SPOT, load, floor=8, committed=2) == 3
    assert available_now(OD, load, floor=16, committed=0) == 9  # down GPUs are no one's to take
    assert PoolLoad(total=8, by_tier={}, down=8).idle == 0  # its one node down


@pytest.mark.parametrize(
    ("floor", "committed", "expected"),
    [(8, 0, 8), (8, 3, 5), (8, 8, 0), (8, 10, 0), (0, 0, 0)],
)
def test_floor_headroom_is_what_is_left_under_the_floor(
    floor: int, committed: int, expected: int
) -> None:
    assert floor_headroom(floor, committed) == expected


def test_spot_is_admitted_against_idle_gpus_whatever_the_floor() -> None:
    load = PoolLoad(total=16, by_tier={INT: 4, SPOT: 6, OD: 2}, claimed=1)

    assert available_now(SPOT, load, floor=8, committed=2) == 3
    assert available_now(SPOT, load, floor=0, committed=8) == 3


def test_on_demand_is_admitted_under_the_floor_and_may_take_spot_gpus() -> None:
    load = PoolLoad(total=16, by_tier={INT: 4, SPOT: 6, OD: 2}, claimed=1)  # idle 3, spot 6

    assert available_now(OD, load, floor=8, committed=2) == 6  # min(8 − 2, 3 + 6)
    assert available_now(OD, load, floor=16, committed=0) == 9  # min(16, 3 + 6)
    assert available_now(OD, load, floor=8, committed=8) == 0
    assert available_now(OD, load, floor=8, committed=12) == 0


def test_on_demand_never_counts_internal_gpus() -> None:
    load = PoolLoad(total=16, by_tier={INT: 14}, claimed=0)  # idle 2, no spot

    assert available_now(OD, load, floor=16, committed=0) == 2


def test_reserved_is_admitted_under_the_floor_only() -> None:
    busy = PoolLoad(total=16, by_tier={INT: 16})

    assert available_now(RES, busy, floor=8, committed=5) == 3
    assert available_now(RES, busy, floor=8, committed=9) == 0


def test_internal_is_never_admitted_as_a_sale() -> None:
    assert available_now(INT, PoolLoad(total=16, by_tier={}), floor=16, committed=0) == 0


# --- the fleet -----------------------------------------------------------------------------------


def test_pool_floor_defaults_to_half_the_gpus() -> None:
    assert pool().floor == 8  # 16 GPUs
    odd = pool(nodes=(Node("h-1", 1), Node("h-4", 4), Node("h-8", 8)))
    assert odd.gpus == 13
    assert odd.floor == 6  # half of 13, rounded down
    assert odd.max_node_gpus == 8


def test_pool_floor_is_the_sellable_floor_when_given() -> None:
    assert pool(sellable_floor=3).floor == 3
    assert pool(sellable_floor=0).floor == 0
    assert pool(sellable_floor=16).floor == 16


def test_pool_key_and_defaults() -> None:
    p = pool()

    assert p.key == "us-east/H100"
    assert p.gpus == 16
    assert p.notice_seconds == 120


def test_pool_notice_must_be_at_least_30_seconds() -> None:
    assert pool(notice_seconds=30).notice_seconds == 30
    with pytest.raises(ValueError, match="notice_seconds"):
        pool(notice_seconds=29)
    with pytest.raises(ValueError, match="notice_seconds"):
        pool(notice_seconds=0)


@pytest.mark.parametrize("floor", [-1, 17, 100])
def test_pool_sellable_floor_must_be_within_the_pool(floor: int) -> None:
    with pytest.raises(ValueError, match="sellable_floor must be between 0 and 16"):
        pool(sellable_floor=floor)


def test_pool_must_have_nodes() -> None:
    with pytest.raises(ValueError, match="us-east/H100 has no nodes"):
        pool(nodes=())


def test_node_must_have_a_gpu() -> None:
    with pytest.raises(ValueError, match="at least one GPU"):
        Node("empty", 0)


def test_fleet_refuses_a_pool_defined_twice() -> None:
    first = pool(nodes=(Node("a-0", 8),))
    second = pool(nodes=(Node("b-0", 8),))

    with pytest.raises(ValueError, match="us-east/H100 is defined twice"):
        Fleet(name="dup", pools=(first, second))


def test_fleet_refuses_a_node_name_used_twice_even_across_pools() -> None:
    east = pool("us-east", "H100", nodes=(Node("node-0", 8),))
    west = pool("eu-west", "A100", nodes=(Node("node-0", 8),))

    with pytest.raises(ValueError, match="'node-0' appears twice"):
        Fleet(name="dup", pools=(east, west))


def test_fleet_lookup_and_totals() -> None:
    east = pool("us-east", "H100")
    west = pool("eu-west", "A100", nodes=(Node("w-0", 4),))
    fleet = Fleet(name="small", pools=(east, west))

    assert fleet.pool("eu-west/A100") is west
    assert fleet.has_pool("us-east/H100")
    assert not fleet.has_pool("us-east/A100")
    with pytest.raises(KeyError):
        fleet.pool("us-east/A100")
    assert fleet.gpus == 20
    assert fleet.node_count == 3
    assert fleet.regions == ("eu-west", "us-east")
    assert list(fleet.matching("us-east", None)) == [east]
    assert list(fleet.matching(None, "A100")) == [west]


@pytest.mark.parametrize("field", ["on_demand", "reserved", "spot_floor"])
def test_prices_must_not_be_negative(field: str) -> None:
    values = {"on_demand": Decimal("2.49"), "reserved": Decimal("1.99"), "spot_floor": Decimal(0)}
    values[field] = Decimal("-0.01")

    with pytest.raises(ValueError, match=field):
        Prices(**values)


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity")])
def test_prices_must_be_finite(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="on_demand"):
        Prices(on_demand=bad, reserved=Decimal(1), spot_floor=Decimal(0))


def test_spot_floor_must_not_exceed_on_demand() -> None:
    with pytest.raises(ValueError, match="spot_floor must not exceed"):
        Prices(on_demand=Decimal("1.00"), reserved=Decimal("0.80"), spot_floor=Decimal("1.01"))
    same = Prices(on_demand=Decimal("1.00"), reserved=Decimal("0.80"), spot_floor=Decimal("1.00"))
    assert same.spot_floor == same.on_demand


def refusal(build: Callable[[], object]) -> InvalidFleetValue:
    """The InvalidFleetValue ``build`` raises: a ValueError whose message names its field."""
    with pytest.raises(InvalidFleetValue) as caught:
        build()
    assert isinstance(caught.value, ValueError)
    assert caught.value.field in str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    "name",
    ["", " ", "node 1", "node\t1", "node-1\n", "rack/node-1", "n" * 254, None, 7],
)
def test_node_name_must_be_1_to_253_chars_without_whitespace_or_slash(name: object) -> None:
    assert refusal(lambda: Node(name, 8)).field == "name"  # type: ignore[arg-type]


def test_node_name_may_be_253_chars() -> None:
    assert Node("n" * 253, 8).name == "n" * 253


@pytest.mark.parametrize("gpus", [True, False, 8.0, "8", None, 0, -1, 65])
def test_node_gpus_must_be_an_int_from_1_to_64(gpus: object) -> None:
    assert refusal(lambda: Node("n-0", gpus)).field == "gpus"  # type: ignore[arg-type]


@pytest.mark.parametrize("gpus", [1, 64])
def test_node_gpus_may_be_1_to_64(gpus: int) -> None:
    assert Node("n-0", gpus).gpus == gpus


@pytest.mark.parametrize("field", ["region", "accelerator"])
@pytest.mark.parametrize("value", ["", "us east", "us/east", "H\t100", "x" * 65, None])
def test_pool_region_and_accelerator_are_safe_halves_of_the_key(field: str, value: object) -> None:
    nodes = (Node("n-0", 8),)
    names = {"region": "us-east", "accelerator": "H100", field: value}

    assert refusal(lambda: pool(**names, nodes=nodes)).field == field  # type: ignore[arg-type]


def test_pool_region_and_accelerator_may_be_64_chars() -> None:
    p = pool("r" * 64, "A" * 64, nodes=(Node("n-0", 8),))

    assert p.key == f"{'r' * 64}/{'A' * 64}"


@pytest.mark.parametrize("notice", [True, 120.0, "120", None])
def test_pool_notice_must_be_an_int(notice: object) -> None:
    assert refusal(lambda: pool(notice_seconds=notice)).field == "notice_seconds"  # type: ignore[arg-type]


@pytest.mark.parametrize("floor", [True, False, 8.0, "8"])
def test_pool_sellable_floor_must_be_an_int_or_none(floor: object) -> None:
    assert refusal(lambda: pool(sellable_floor=floor)).field == "sellable_floor"  # type: ignore[arg-type]


def test_pool_rules_name_their_field() -> None:
    assert refusal(lambda: pool(nodes=())).field == "nodes"
    assert refusal(lambda: pool(notice_seconds=29)).field == "notice_seconds"
    assert refusal(lambda: pool(sellable_floor=17)).field == "sellable_floor"


@pytest.mark.parametrize("field", ["on_demand", "reserved", "spot_floor"])
@pytest.mark.parametrize(
    ("value", "rule"),
    [("0.0000001", "decimal places"), ("0.1234567", "decimal places"), ("1000000.01", "at most")],
)
def test_prices_have_at_most_6_places_and_are_at_most_a_million(
    field: str, value: str, rule: str
) -> None:
    values = {"on_demand": Decimal(1_000_000), "reserved": Decimal(0), "spot_floor": Decimal(0)}
    values[field] = Decimal(value)

    error = refusal(lambda: Prices(**values))
    assert error.field == field
    assert rule in str(error)


@pytest.mark.parametrize("value", ["0.000001", "1.1234560", "1000000", "1000000.000000", "1E+6"])
def test_prices_of_micro_units_up_to_a_million_are_allowed(value: str) -> None:
    price = Prices(on_demand=Decimal(value), reserved=Decimal(value), spot_floor=Decimal(0))

    assert price.on_demand == Decimal(value)


def test_price_rules_name_their_field() -> None:
    assert refusal(lambda: Prices(Decimal(1), Decimal(-1), Decimal(0))).field == "reserved"
    assert refusal(lambda: Prices(Decimal(1), Decimal(1), Decimal(2))).field == "spot_floor"


def test_fleet_must_have_a_pool() -> None:
    assert refusal(lambda: Fleet(name="empty", pools=())).field == "pools"


@pytest.mark.parametrize("name", ["", None])
def test_fleet_must_have_a_name(name: object) -> None:
    assert refusal(lambda: Fleet(name=name, pools=(pool(),))).field == "name"  # type: ignore[arg-type]


@pytest.mark.parametrize("second_region", ["us-east", "eu-west"])
def test_fleet_duplicates_are_refused_in_the_pools_field(second_region: str) -> None:
    first = pool(nodes=(Node("a-0", 8),))
    second = pool(second_region, nodes=(Node("a-0", 8),))  # the same key, or the same node

    with pytest.raises(InvalidFleetValue) as caught:
        Fleet(name="dup", pools=(first, second))
    assert caught.value.field == "pools"
