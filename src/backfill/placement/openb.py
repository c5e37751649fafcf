"""Loading Alibaba's openb traces: the GPU nodes and the pods, as arrays.

Nodes: ``sn,cpu_milli,memory_mib,gpu,model``. Pods: ``name,cpu_milli,memory_mib,num_gpu,
gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time`` (the last five are
not used by the placement protocol). A malformed row is an error naming the file, the line and
the column; so is a truncated file (a last row with too few columns).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from backfill.errors import InvalidTrace

MILLI = 1000
MAX_GPUS_PER_NODE = 16
MAX_FILE_BYTES = 64 * 1024 * 1024
NODE_COLUMNS = ("sn", "cpu_milli", "memory_mib", "gpu", "model")
POD_COLUMNS = ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")
"""Required; ``gpu_spec`` is optional (the multigpu traces have none)."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Nodes:
    names: tuple[str, ...]
    cpu: IntArray
    """CPU milli-cores."""
    memory: IntArray
    """MiB."""
    gpus: IntArray
    models: tuple[str, ...]
    """The distinct GPU model names; ``model`` indexes into it."""
    model: IntArray

    @property
    def total_gpu_milli(self) -> int:
        return int(self.gpus.sum()) * MILLI

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Pods:
    names: tuple[str, ...]
    cpu: IntArray
    memory: IntArray
    num_gpu: IntArray
    gpu_milli: IntArray
    """Milli of each of its GPUs (1000 for whole GPUs; less for a sharing pod)."""
    spec: tuple[frozenset[str], ...]
    """Allowed GPU models (empty: any)."""
    spec_text: tuple[str, ...]
    """``gpu_spec`` as written, empty parts dropped (how the simulator keys typical pods)."""

    @property
    def demand(self) -> IntArray:
        """GPU milli each pod asks for in all: num_gpu × gpu_milli."""
        return self.num_gpu * self.gpu_milli

    def __len__(self) -> int:
        return len(self.names)


def _rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidTrace(f"cannot read the file: {exc.strerror or exc}", path=str(path)) from exc
    if len(data) > MAX_FILE_BYTES:
        raise InvalidTrace(f"the file is larger than {MAX_FILE_BYTES} bytes", path=str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidTrace("the file is not UTF-8 text", path=str(path), line=line) from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise InvalidTrace("the file is empty", path=str(path))
    missing = [c for c in columns if c not in header]
    if missing:
        raise InvalidTrace(
            f"the header lacks column(s) {', '.join(missing)}", path=str(path), line=1
        )
    rows = []
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidTrace(
                f"{len(row)} columns where the header has {len(header)} (truncated or malformed)",
                path=str(path),
                line=line,
            )
        rows.append((line, dict(zip(header, row, strict=True))))
    if not rows:
        raise InvalidTrace("the file has a header and no rows", path=str(path))
    return rows


def _int(value: str, *, path: Path, line: int, column: str, low: int, high: int) -> int:
    text = value.strip()
    if not text.lstrip("-").isdigit():
        raise InvalidTrace(
            f"{value!r} is not a whole number", path=str(path), line=line, field=column
        )
    number = int(text)
    if not low <= number <= high:
        raise InvalidTrace(
            f"{number} is outside {low}..{high}", path=str(path), line=line, field=column
        )
    return number


def load_nodes(path: str | Path) -> Nodes:
    path = Path(path)
    names: list[str] = []
    cpu, memory, gpus, model = [], [], [], []
    models: dict[str, int] = {}
    seen: set[str] = set()
    for line, row in _rows(path, NODE_COLUMNS):
        name = row["sn"].strip()
        if not name:
            raise InvalidTrace("empty node name", path=str(path), line=line, field="sn")
        if name in seen:
            raise InvalidTrace(
                f"node {name!r} appears twice", path=str(path), line=line, field="sn"
            )
        seen.add(name)
        names.append(name)
        cpu.append(
            _int(row["cpu_milli"], path=path, line=line, column="cpu_milli", low=0, high=10_000_000)
        )
        memory.append(
            _int(row["memory_mib"], path=path, line=line, column="memory_mib", low=0, high=1 << 40)
        )
        count = _int(row["gpu"], path=path, line=line, column="gpu", low=0, high=MAX_GPUS_PER_NODE)
        gpus.append(count)
        name_of_model = row["model"].strip()
        if count and not name_of_model:
            raise InvalidTrace(
                "a node with GPUs needs a model", path=str(path), line=line, field="model"
            )
        model.append(models.setdefault(name_of_model, len(models)))
    return Nodes(
        names=tuple(names),
        cpu=np.array(cpu, dtype=np.int64),
        memory=np.array(memory, dtype=np.int64),
        gpus=np.array(gpus, dtype=np.int64),
        models=tuple(models),
        model=np.array(model, dtype=np.int64),
    )


def load_pods(path: str | Path) -> Pods:
    path = Path(path)
    names: list[str] = []
    cpu, memory, num_gpu, gpu_milli = [], [], [], []
    spec: list[frozenset[str]] = []
    spec_text: list[str] = []
    for line, row in _rows(path, POD_COLUMNS):
        names.append(row["name"].strip())
        cpu.append(
            _int(row["cpu_milli"], path=path, line=line, column="cpu_milli", low=0, high=10_000_000)
        )
        memory.append(
            _int(row["memory_mib"], path=path, line=line, column="memory_mib", low=0, high=1 << 40)
        )
        count = _int(
            row["num_gpu"], path=path, line=line, column="num_gpu", low=0, high=MAX_GPUS_PER_NODE
        )
        milli = _int(
            row["gpu_milli"], path=path, line=line, column="gpu_milli", low=0, high=1_000_000
        )
        if count and milli <= 0:
            raise InvalidTrace(
                "a GPU pod needs gpu_milli > 0", path=str(path), line=line, field="gpu_milli"
            )
        if count > 1 and milli < MILLI:
            raise InvalidTrace(
                "a multi-GPU pod must take whole GPUs", path=str(path), line=line, field="gpu_milli"
            )
        num_gpu.append(count)
        gpu_milli.append(min(milli, MILLI) if count else 0)
        allowed = [m.strip() for m in row.get("gpu_spec", "").split("|") if m.strip()]
        spec.append(frozenset(allowed))
        spec_text.append("|".join(allowed))
    order = sorted(range(len(names)), key=names.__getitem__)  # the protocol sorts by name
    return Pods(
        names=tuple(names[i] for i in order),
        cpu=np.array(cpu, dtype=np.int64)[order],
        memory=np.array(memory, dtype=np.int64)[order],
        num_gpu=np.array(num_gpu, dtype=np.int64)[order],
        gpu_milli=np.array(gpu_milli, dtype=np.int64)[order],
        spec=tuple(spec[i] for i in order),
        spec_text=tuple(spec_text[i] for i in order),
    )
