"""Placement: best fit on one node, whole nodes for large requests, and whose GPUs to take."""

from __future__ import annotations

import pytest

from backfill.domain.placement import (
    Holding,
    NodeState,
    Placement,
    ShapeError,
    check_shape,
    choose_victims,
    place,
)


def idle(name: str, gpus: int = 8) -> NodeState:
    return NodeState(name=name, gpus=gpus, free=gpus)


def node(name: str, free: int, *holders: Holding, gpus: int = 8) -> NodeState:
    return NodeState(name=name, gpus=gpus, free=free, preemptible=tuple(holders))


def spot(workload: str, gpus: int, lost: float) -> Holding:
    return Holding(workload=workload, gpus=gpus, lost_work=lost)


# --- best fit on one node ------------------------------------------------------------------------


def test_best_fit_picks_the_node_with_the_fewest_idle_gpus_that_still_fits() -> None:
    nodes = [node("n-a", 8), node("n-b", 3), node("n-c", 5), node("n-d", 2)]

    # 3 GPUs: n-a leaves 5, n-b leaves 0, n-c leaves 2 (n-d cannot) → n-b.
    assert place(3, nodes, may_preempt=False) == Placement(nodes=(("n-b", 3),), victims=frozenset())
    # 4 GPUs: n-a leaves 4, n-c leaves 1 → n-c.
    assert place(4, nodes, may_preempt=False) == Placement(nodes=(("n-c", 4),), victims=frozenset())
    # 6 GPUs: only n-a.
    assert place(6, nodes, may_preempt=False) == Placement(nodes=(("n-a", 6),), victims=frozenset())


def test_best_fit_ties_break_on_the_node_name() -> None:
    nodes = [node("n-z", 5), node("n-c", 5), node("n-m", 5)]

    placement = place(5, nodes, may_preempt=False)

    assert placement == Placement(nodes=(("n-c", 5),), victims=frozenset())
    assert placement.immediate


def test_best_fit_prefers_an_idle_fit_to_preempting_even_when_may_preempt() -> None:
    nodes = [node("n-a", 0, spot("s1", 8, 0.0)), node("n-b", 2)]

    assert place(2, nodes, may_preempt=True) == Placement(nodes=(("n-b", 2),), victims=frozenset())


def test_no_placement_when_nothing_fits_and_may_preempt_is_false() -> None:
    nodes = [node("n-a", 3, spot("s1", 5, 10.0)), node("n-b", 2)]

    assert place(4, nodes, may_preempt=False) is None


def test_place_returns_none_for_no_nodes_or_fewer_than_one_gpu() -> None:
    assert place(1, [], may_preempt=True) is None
    assert place(0, [idle("n-a")], may_preempt=True) is None
    assert place(-1, [idle("n-a")], may_preempt=True) is None


# --- requests larger than one node ---------------------------------------------------------------


def test_a_request_larger_than_one_node_takes_whole_idle_nodes_in_name_order() -> None:
    nodes = [idle("n-d"), node("n-c", 7), idle("n-b"), idle("n-a")]

    # n-c has one GPU busy, so it is not a whole idle node.
    assert place(16, nodes, may_preempt=False) == Placement(
        nodes=(("n-a", 8), ("n-b", 8)), victims=frozenset()
    )
    assert place(24, nodes, may_preempt=False) == Placement(
        nodes=(("n-a", 8), ("n-b", 8), ("n-d", 8)), victims=frozenset()
    )


def test_a_large_request_is_refused_when_the_pool_lacks_enough_whole_idle_nodes() -> None:
    nodes = [idle("n-a"), node("n-b", 7), node("n-c", 0)]

    assert place(16, nodes, may_preempt=False) is None
    # Nothing preemptible on n-b or n-c either.
    assert place(16, nodes, may_preempt=True) is None


def test_a_large_request_that_is_not_a_multiple_of_the_node_size_is_never_placed() -> None:
    nodes = [idle("n-a"), idle("n-b"), idle("n-c")]

    assert place(12, nodes, may_preempt=True) is None
    assert place(20, nodes, may_preempt=True) is None


def test_check_shape_accepts_whole_multiples_of_the_largest_node() -> None:
    check_shape(1, [8, 8])
    check_shape(8, [8, 8])
    check_shape(16, [8, 8])
    check_shape(24, [8, 8, 8, 4])


def test_check_shape_rejects_a_large_request_that_is_not_a_multiple_of_the_node_size() -> None:
    with pytest.raises(ShapeError, match="12 is not a multiple of 8"):
        check_shape(12, [8, 8, 8])


def test_check_shape_rejects_more_whole_nodes_than_the_pool_has() -> None:
    with pytest.raises(ShapeError, match="need 3 nodes of 8; the pool has 2"):
        check_shape(24, [8, 8])


def test_check_shape_counts_only_nodes_of_the_largest_size() -> None:
    # 8 + 4 + 4 = 16 GPUs in all, but only one 8-GPU node: 16 cannot span the 4-GPU nodes.
    with pytest.raises(ShapeError, match="need 2 nodes of 8; the pool has 1"):
        check_shape(16, [8, 4, 4])


def test_check_shape_rejects_fewer_than_one_gpu() -> None:
    with pytest.raises(ShapeError):
        check_shape(0, [8])
    with pytest.raises(ShapeError):
        check_shape(-4, [8])


# --- heterogeneous nodes -------------------------------------------------------------------------


HETEROGENEOUS = [idle("h-1", 1), idle("h-4", 4), idle("h-8a", 8), idle("h-8b", 8)]


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (1, (("h-1", 1),)),  # 1-GPU node leaves 0
        (2, (("h-4", 2),)),  # 4-GPU node leaves 2, 8-GPU nodes leave 6
        (4, (("h-4", 4),)),
        (5, (("h-8a", 5),)),  # only the 8-GPU nodes fit; tie → name
        (8, (("h-8a", 8),)),
        (16, (("h-8a", 8), ("h-8b", 8))),  # whole 8-GPU nodes only
    ],
)
def test_heterogeneous_nodes_get_the_tightest_fit(
    gpus: int, expected: tuple[tuple[str, int], ...]
) -> None:
    assert place(gpus, HETEROGENEOUS, may_preempt=False) == Placement(
        nodes=expected, victims=frozenset()
    )


def test_heterogeneous_pool_shapes() -> None:
    sizes = [1, 4, 8]
    check_shape(8, sizes)
    with pytest.raises(ShapeError, match="9 is not a multiple of 8"):
        check_shape(9, sizes)
    with pytest.raises(ShapeError, match="need 2 nodes of 8; the pool has 1"):
        check_shape(16, sizes)
    # 13 GPUs in all, but a 12-GPU request cannot span nodes of different sizes.
    assert place(12, [idle("h-1", 1), idle("h-4", 4), idle("h-8", 8)], may_preempt=False) is None


def test_whole_node_requests_skip_smaller_nodes_even_when_they_are_idle() -> None:
    nodes = [idle("h-4a", 4), idle("h-4b", 4), idle("h-8a", 8), node("h-8b", 6)]

    assert place(16, nodes, may_preempt=False) is None


def test_preemption_skips_nodes_smaller_than_the_request() -> None:
    # The 4-GPU node's holder could free 4 GPUs, but 6 never fit on a 4-GPU node.
    nodes = [
        node("h-4", 0, spot("small", 4, 0.0), gpus=4),
        node("h-8", 2, spot("big", 6, 900.0)),
    ]

    assert place(6, nodes, may_preempt=True) == Placement(
        nodes=(("h-8", 6),), victims=frozenset({"big"})
    )


# --- preemption on one node ----------------------------------------------------------------------


def test_preemption_picks_the_holder_losing_the_least_work() -> None:
    nodes = [
        node("n-1", 0, spot("a", 4, 100.0), spot("b", 4, 50.0)),
        node("n-2", 0, spot("c", 8, 10_000.0)),
    ]

    # n-1: one victim, b (lost 50); n-2: one victim, c (lost 10 000) → n-1, b.
    assert place(4, nodes, may_preempt=True) == Placement(
        nodes=(("n-1", 4),), victims=frozenset({"b"})
    )


def test_preemption_prefers_the_fewest_holders_over_the_least_lost_work() -> None:
    nodes = [
        node("n-1", 0, spot("two-a", 2, 1.0), spot("two-b", 2, 1.0), gpus=4),
        node("n-2", 0, spot("one", 4, 1000.0), gpus=4),
    ]

    # n-1 needs two victims (lost 2 in all); n-2 needs one (lost 1000): one victim wins.
    placement = place(4, nodes, may_preempt=True)

    assert placement == Placement(nodes=(("n-2", 4),), victims=frozenset({"one"}))
    assert not placement.immediate


def test_preemption_prefers_the_least_lost_work_over_the_fewest_gpus_left_over() -> None:
    nodes = [
        node("n-1", 0, spot("x", 8, 5.0)),  # frees 8 for 4 (4 left over), loses 5
        node("n-2", 0, spot("y", 4, 50.0)),  # frees 4 for 4 (none left over), loses 50
    ]

    assert place(4, nodes, may_preempt=True) == Placement(
        nodes=(("n-1", 4),), victims=frozenset({"x"})
    )


def test_preemption_then_prefers_the_fewest_gpus_left_over() -> None:
    nodes = [
        node("n-1", 0, spot("x", 8, 10.0)),  # frees 8 for 4: 4 left over
        node("n-2", 0, spot("y", 4, 10.0)),  # frees 4 for 4: none left over
    ]

    assert place(4, nodes, may_preempt=True) == Placement(
        nodes=(("n-2", 4),), victims=frozenset({"y"})
    )


def test_preemption_counts_idle_gpus_on_the_node_first() -> None:
    # n-1 has 3 idle: one 1-GPU holder is enough; n-2 would need its 6-GPU holder.
    nodes = [
        node("n-1", 3, spot("p", 1, 500.0), spot("q", 4, 1.0)),
        node("n-2", 2, spot("r", 6, 1.0)),
    ]

    # n-1: need 1 more → p (lost 500) or q (lost 1): q, cost (1, 1, 3 left over).
    # n-2: need 2 more → r, cost (1, 1, 4 left over) → n-1 by GPUs left over.
    assert place(4, nodes, may_preempt=True) == Placement(
        nodes=(("n-1", 4),), victims=frozenset({"q"})
    )


def test_preemption_ties_break_on_the_node_name() -> None:
    nodes = [node("n-b", 0, spot("y", 8, 5.0)), node("n-a", 0, spot("x", 8, 5.0))]

    assert place(8, nodes, may_preempt=True) == Placement(
        nodes=(("n-a", 8),), victims=frozenset({"x"})
    )


def test_no_placement_when_even_preemption_cannot_free_enough() -> None:
    # Non-preemptible work is simply not listed: 2 idle + 3 spot = 5 < 6.
    nodes = [node("n-1", 2, spot("s", 3, 0.0))]

    assert place(6, nodes, may_preempt=True) is None


# --- preemption of whole nodes -------------------------------------------------------------------


def test_whole_node_preemption_picks_nodes_with_the_fewest_victims() -> None:
    nodes = [
        idle("w-1"),
        node("w-2", 0, spot("a", 4, 1.0), spot("b", 4, 1.0)),
        node("w-3", 0, spot("c", 8, 1000.0)),
        node("w-4", 0),  # on-demand or internal: nothing to take
    ]

    # Idle w-1, then w-3 (1 victim) before w-2 (2 victims).
    assert place(16, nodes, may_preempt=True) == Placement(
        nodes=(("w-1", 8), ("w-3", 8)), victims=frozenset({"c"})
    )
    assert place(24, nodes, may_preempt=True) == Placement(
        nodes=(("w-1", 8), ("w-2", 8), ("w-3", 8)), victims=frozenset({"a", "b", "c"})
    )
    assert place(32, nodes, may_preempt=True) is None


def test_whole_node_preemption_then_picks_the_least_lost_work() -> None:
    nodes = [
        node("w-1", 0, spot("a", 8, 500.0)),
        node("w-2", 4, spot("b", 4, 100.0)),  # half idle, half spot
        node("w-3", 4),  # half idle, half not preemptible: never a candidate
    ]

    assert place(16, [idle("w-0"), *nodes], may_preempt=True) == Placement(
        nodes=(("w-0", 8), ("w-2", 8)), victims=frozenset({"b"})
    )
    assert place(16, nodes, may_preempt=True) == Placement(
        nodes=(("w-1", 8), ("w-2", 8)), victims=frozenset({"a", "b"})
    )
    assert place(24, nodes, may_preempt=True) is None


def test_whole_node_preemption_is_refused_without_may_preempt() -> None:
    nodes = [idle("w-1"), node("w-2", 0, spot("a", 8, 1.0))]

    assert place(16, nodes, may_preempt=False) is None


# --- choose_victims ------------------------------------------------------------------------------


def test_choose_victims_needs_nobody_when_nothing_is_needed() -> None:
    holders = [spot("a", 4, 1.0)]

    assert choose_victims(0, holders) == frozenset()
    assert choose_victims(-3, holders) == frozenset()
    assert choose_victims(0, []) == frozenset()


def test_choose_victims_is_none_when_all_holders_together_are_not_enough() -> None:
    assert choose_victims(1, []) is None
    assert choose_victims(9, [spot("a", 4, 1.0), spot("b", 4, 1.0)]) is None


def test_choose_victims_prefers_one_holder_to_two_whatever_the_lost_work() -> None:
    holders = [spot("big", 4, 1000.0), spot("a", 2, 1.0), spot("b", 2, 1.0)]

    assert choose_victims(4, holders) == frozenset({"big"})


def test_choose_victims_takes_the_least_lost_work_among_the_fewest_holders() -> None:
    holders = [spot("a", 4, 10.0), spot("b", 3, 1.0), spot("c", 3, 1.0), spot("d", 2, 0.0)]

    # No single holder has 6. Pairs with ≥ 6: a+b (11), a+c (11), a+d (10), b+c (2) → b+c.
    assert choose_victims(6, holders) == frozenset({"b", "c"})
    # All four are needed for 12.
    assert choose_victims(12, holders) == frozenset({"a", "b", "c", "d"})


def test_choose_victims_then_leaves_the_fewest_gpus_over_then_goes_by_name() -> None:
    assert choose_victims(2, [spot("p", 4, 1.0), spot("q", 2, 1.0)]) == frozenset({"q"})
    assert choose_victims(2, [spot("z", 2, 1.0), spot("y", 2, 1.0)]) == frozenset({"y"})
