"""The engine under test: ``sim`` always; ``slurm`` on the real cluster of scripts/slurm-up.sh.

Under CI the Slurm cluster must come up (a failure to start it fails the tests); elsewhere the
Slurm half of the suite skips, saying why, when it cannot be started (not root, no apt).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Platform, require
from tests.engines.harness import (
    Harness,
    control_plane,
    sim_harness,
    slurm_clear,
    slurm_harness,
    slurm_up,
)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    require(slurm_up())


@pytest.fixture(params=["sim", pytest.param("slurm", marks=pytest.mark.slurm)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param == "sim":
        yield sim_harness()
        return
    request.getfixturevalue("slurm_cluster")
    slurm_clear()
    harness = slurm_harness()
    try:
        yield harness
    finally:
        harness.engine.close()
        slurm_clear()


@pytest.fixture
def slurm_platform(slurm_cluster: None, tmp_path: Path) -> Iterator[Platform]:
    slurm_clear()
    try:
        with control_plane(tmp_path) as platform:
            yield platform
    finally:
        slurm_clear()
