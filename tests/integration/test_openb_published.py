"""The placement harness against the published FGD-paper figures (default trace, one seed).

A regression check on correctness, not speed: one seed's allocation at 100 % arrived stays within
1.5 points of the published ten-seed mean (seed-to-seed spread is about ±0.4 here); the full
ten-seed comparison is ``bench/placement_openb.py``, recorded in bench/RESULTS.md.
"""

from __future__ import annotations

import pytest

from backfill.placement.openb import load_nodes, load_pods
from backfill.placement.policies import POLICIES
from backfill.placement.protocol import run
from tests.conftest import SHARED

OPENB = SHARED / "traces" / "openb"
PUBLISHED_DEFAULT = {
    "random": 86.30,
    "dotprod": 90.62,
    "gpuclustering": 91.65,
    "gpupacking": 91.78,
    "bestfit": 92.86,
    "fgd": 95.23,
}

pytestmark = pytest.mark.skipif(
    not (OPENB / "openb_pod_list_default.csv").exists(),
    reason=f"the openb traces are not at {OPENB} (../shared/traces/openb)",
)


@pytest.fixture(scope="module")
def default_trace():  # type: ignore[no-untyped-def]
    return load_nodes(OPENB / "openb_node_list_gpu_node.csv"), load_pods(
        OPENB / "openb_pod_list_default.csv"
    )


@pytest.mark.parametrize("policy", list(PUBLISHED_DEFAULT))
def test_baseline_matches_its_published_figure(default_trace, policy: str) -> None:  # type: ignore[no-untyped-def]
    nodes, pods = default_trace
    result = run(policy, POLICIES[policy], nodes, pods, seed=42)
    assert result.alloc_at_100 == pytest.approx(PUBLISHED_DEFAULT[policy], abs=1.5)


def test_backfill_allocates_at_least_as_much_as_fgd(default_trace) -> None:  # type: ignore[no-untyped-def]
    nodes, pods = default_trace
    for seed in (42, 43):
        ours = run("backfill", POLICIES["backfill"], nodes, pods, seed).alloc_at_100
        fgd = run("fgd", POLICIES["fgd"], nodes, pods, seed).alloc_at_100
        assert ours >= fgd
