"""The placement benchmark's rules: fit, arrival order and inflation, and the metric arithmetic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backfill.errors import InvalidTrace
from backfill.placement.cluster import Cluster, Pod
from backfill.placement.openb import Nodes, Pods, load_nodes, load_pods
from backfill.placement.protocol import allocation_curve, arrival_order, run


def nodes(*rows: tuple[int, int, int, str]) -> Nodes:
    """(cpu milli, memory MiB, GPUs, model) per node."""
    models = tuple(dict.fromkeys(r[3] for r in rows))
    return Nodes(
        names=tuple(f"n{i}" for i in range(len(rows))),
        cpu=np.array([r[0] for r in rows], dtype=np.int64),
        memory=np.array([r[1] for r in rows], dtype=np.int64),
        gpus=np.array([r[2] for r in rows], dtype=np.int64),
        models=models,
        model=np.array([models.index(r[3]) for r in rows], dtype=np.int64),
    )


def pods(*rows: tuple[int, int, int, int, str]) -> Pods:
    """(cpu, memory, num_gpu, gpu_milli, spec) per pod, already in name order."""
    return Pods(
        names=tuple(f"p{i:03d}" for i in range(len(rows))),
        cpu=np.array([r[0] for r in rows], dtype=np.int64),
        memory=np.array([r[1] for r in rows], dtype=np.int64),
        num_gpu=np.array([r[2] for r in rows], dtype=np.int64),
        gpu_milli=np.array([r[3] for r in rows], dtype=np.int64),
        spec=tuple(frozenset(s.split("|")) if s else frozenset() for r in rows for s in [r[4]]),
        spec_text=tuple(r[4] for r in rows),
    )


CLUSTER = nodes((8000, 1000, 2, "A"), (4000, 4000, 4, "B"), (16000, 8000, 0, ""))


def pod(
    cpu: int = 0,
    memory: int = 0,
    num_gpu: int = 0,
    milli: int = 0,
    spec: str = "",
    models: tuple[str, ...] | None = None,
) -> Pod:
    return Pod.of(pods((cpu, memory, num_gpu, milli, spec)), 0, models or CLUSTER.models)


def test_fit_needs_cpu_and_memory() -> None:
    cluster = Cluster(CLUSTER)
    assert cluster.fits(pod(cpu=6000, memory=900)).tolist() == [True, False, True]
    assert cluster.fits(pod(cpu=1000, memory=2000)).tolist() == [False, True, True]
    assert cluster.fits(pod(cpu=20000)).tolist() == [False, False, False]


def test_fit_needs_enough_gpus_with_enough_milli() -> None:
    cluster = Cluster(CLUSTER)
    assert cluster.fits(pod(num_gpu=1, milli=1000)).tolist() == [True, True, False]
    assert cluster.fits(pod(num_gpu=4, milli=1000)).tolist() == [False, True, False]
    assert cluster.fits(pod(num_gpu=8, milli=1000)).tolist() == [False, False, False]
    cluster.place(1, pod(num_gpu=1, milli=700), [0])  # node 1: GPU 0 has 300 milli left
    assert cluster.fits(pod(num_gpu=1, milli=300)).tolist() == [True, True, False]
    assert cluster.fits(pod(num_gpu=4, milli=1000)).tolist() == [False, False, False]
    assert cluster.fits(pod(num_gpu=3, milli=1000)).tolist() == [False, True, False]


def test_fit_respects_gpu_model_constraints() -> None:
    cluster = Cluster(CLUSTER)
    assert cluster.fits(pod(num_gpu=1, milli=500, spec="B")).tolist() == [False, True, False]
    assert cluster.fits(pod(num_gpu=1, milli=500, spec="A|B")).tolist() == [True, True, False]
    # A CPU-only pod ignores a model constraint: it takes no GPU.
    assert cluster.fits(pod(cpu=100, spec="B")).tolist() == [True, True, True]


def test_gpu_choice_whole_lowest_free_and_sharing_tightest() -> None:
    cluster = Cluster(CLUSTER)
    cluster.place(1, pod(num_gpu=1, milli=1000), [1])
    assert cluster.whole_gpus(1, 2) == [0, 2]
    cluster.place(1, pod(num_gpu=1, milli=600), [2])  # GPU 2: 400 left
    cluster.place(1, pod(num_gpu=1, milli=200), [3])  # GPU 3: 800 left
    assert cluster.tightest_gpu(1, 300) == 2
    assert cluster.tightest_gpu(1, 500) == 3
    assert cluster.used_gpu_milli == 1000 + 600 + 200


def test_arrival_order_is_deterministic_per_seed_and_inflated_to_the_target() -> None:
    trace = pods(*[(1000, 100, 1, 1000, "")] * 3, (1000, 100, 1, 500, ""), (2000, 100, 0, 0, ""))
    cluster_milli = 4000  # target 5,200 milli; the trace asks 3,500
    first = arrival_order(trace, cluster_milli, 42)
    assert first == arrival_order(trace, cluster_milli, 42)
    assert first != arrival_order(trace, cluster_milli, 43)
    assert sorted(first[:5]) == [0, 1, 2, 3, 4]  # the whole trace, shuffled, comes first
    demand = int(trace.demand[first].sum())
    assert 5200 - 1000 < demand <= 5200  # stopped when the next draw would pass the target


def test_arrival_order_trims_a_trace_above_the_target() -> None:
    trace = pods(*[(0, 0, 1, 1000, "")] * 10)  # 10,000 milli on a 2,000-milli cluster
    order = arrival_order(trace, 2000, 7)
    assert len(order) == 2 and len(set(order)) == 2  # 2,000 ≤ 2,600 < 3,000


def test_allocation_curve_by_hand() -> None:
    # cluster 2,000 milli: 1 % = 20 milli.
    arrived = np.array([1000, 1500, 1500, 2500])  # 50 %, 75 %, 75 %, 125 %
    used = np.array([1000, 1500, 1400, 2000])  # 50 %, 75 %, 70 %, 100 %
    curve = allocation_curve(arrived, used, 2000)
    assert curve[50] == 50.0
    assert curve[75] == pytest.approx(72.5)  # mean of 75 and 70
    assert curve[125] == 100.0
    assert np.isnan(curve[100]) and np.isnan(curve[0])


def test_a_pod_that_fits_nowhere_is_dropped_and_counted_as_arrived() -> None:
    cluster = nodes((4000, 4000, 1, "A"))  # 1,000 milli
    trace = pods((1000, 100, 1, 600, ""), (1000, 100, 1, 600, ""), (1000, 100, 0, 0, ""))

    def first_fit(c: Cluster, p: Pod, fitting: np.ndarray) -> tuple[int, list[int]]:
        node = int(np.flatnonzero(fitting)[0])
        return node, ([c.tightest_gpu(node, p.gpu_milli)] if p.num_gpu else [])

    result = run("first", lambda *_: first_fit, cluster, trace, seed=1)
    # Target 1,300 milli: the 1,200 of the trace, and no copy fits under it (each adds 600).
    assert result.placed == 2 and result.dropped == 1
    assert result.arrived.tolist()[-1] == 1200
    assert result.used.tolist()[-1] == 600
    by_step = list(zip(result.arrived.tolist(), result.used.tolist(), strict=True))
    assert (1200, 600) in by_step  # the second sharing pod arrived and was dropped


def test_openb_loaders_reject_malformed_rows(tmp_path: Path) -> None:
    good = "sn,cpu_milli,memory_mib,gpu,model\nn1,64000,262144,2,P100\n"
    (tmp_path / "nodes.csv").write_text(good)
    assert len(load_nodes(tmp_path / "nodes.csv")) == 1
    cases = {
        "sn,cpu_milli,memory_mib,model\nn1,1,1,P100\n": (1, None),
        good + "n2,64000,262144,x,P100\n": (3, "gpu"),
        good + "n1,64000,262144,2,P100\n": (3, "sn"),
        good + "n3,64000,262144\n": (3, None),  # truncated
        good + "n4,64000,262144,4,\n": (3, "model"),
        "sn,cpu_milli,memory_mib,gpu,model\n": (None, None),
    }
    for text, (line, field) in cases.items():
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(InvalidTrace) as caught:
            load_nodes(tmp_path / "bad.csv")
        assert (caught.value.line, caught.value.field) == (line, field), text
    pod_header = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n"
    (tmp_path / "pods.csv").write_text(pod_header + "p1,1000,100,2,500,\n")
    with pytest.raises(InvalidTrace, match="multi-GPU pod must take whole GPUs"):
        load_pods(tmp_path / "pods.csv")
    (tmp_path / "pods.csv").write_text(pod_header + "p2,1000,100,1,1500,T4|A10\n")
    loaded = load_pods(tmp_path / "pods.csv")
    assert loaded.gpu_milli.tolist() == [1000] and loaded.spec == (frozenset({"T4", "A10"}),)


def test_alloc_at_100_on_a_trace_too_coarse_to_reach_exactly_100() -> None:
    cluster = nodes((4000, 4000, 1, "A"))  # 1,000 milli; pods of 600: 60 %, then 120 %
    trace = pods((1000, 100, 1, 600, ""), (1000, 100, 1, 600, ""))

    def first_fit(c: Cluster, p: Pod, fitting: np.ndarray) -> tuple[int, list[int]]:
        return int(np.flatnonzero(fitting)[0]), [0]

    result = run("first", lambda *_: first_fit, cluster, trace, seed=3)
    assert np.isnan(result.curve[100])
    assert result.alloc_at_100 == 60.0  # after the first pod, the last at or below 100 %
