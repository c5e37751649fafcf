"""The Alibaba v2026 node inventory (CSV): one pool per GPU model, priced from a table.

The header is ``gpu_model,gpu_capacity_num,cpu_num,node_name`` and each row is one node; node
``7`` becomes ``node-7``. Every problem is InvalidFleetFile naming the line and the column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from backfill.domain.fleet import MAX_KEY_PART_LENGTH, Fleet, InvalidFleetValue, Node, Pool, Prices
from backfill.errors import InvalidFleetFile
from backfill.inventory.document import read_text
from backfill.inventory.schema import (
    ACCELERATOR_PATTERN,
    MAX_GPUS_PER_NODE,
    NODE_NAME_PATTERN,
    REGION_PATTERN,
)

MAX_INVENTORY_BYTES = 64 * 1024 * 1024

INVENTORY_COLUMNS = ("gpu_model", "gpu_capacity_num", "cpu_num", "node_name")

DEFAULT_INVENTORY_PRICES: Mapping[str, Prices] = MappingProxyType(
    {
        "H800": Prices(Decimal("3.50"), Decimal("2.80"), Decimal("1.20")),
        "A100-SXM4-80GB": Prices(Decimal("1.80"), Decimal("1.40"), Decimal("0.60")),
        "A800-SXM4-80GB": Prices(Decimal("1.70"), Decimal("1.30"), Decimal("0.55")),
        "A10": Prices(Decimal("0.60"), Decimal("0.45"), Decimal("0.20")),
    }
)
"""List prices per GPU-hour of the inventory's GPU models."""

FALLBACK_INVENTORY_PRICES = Prices(Decimal("1.00"), Decimal("0.80"), Decimal("0.30"))
"""List prices per GPU-hour of any model not in the price table."""

_WHOLE_NUMBER = re.compile(r"[0-9]+")

_NODE_COLUMNS: Mapping[str, str] = MappingProxyType(
    {"name": "node_name", "gpus": "gpu_capacity_num"}
)
"""The column each field of a :class:`~backfill.domain.fleet.Node` comes from."""


@dataclass(frozen=True)
class _InventoryRow:
    line: int
    model: str
    node: Node


def _csv_rows(text: str, path: Path) -> list[tuple[int, list[str]]]:
    """The non-blank CSV records of ``text``, each with the line it ends on."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        return [(reader.line_num, row) for row in reader if row]
    except csv.Error as exc:
        raise InvalidFleetFile(
            f"not valid CSV: {exc}", path=str(path), line=reader.line_num
        ) from exc


def _check_header(header: list[str], path: Path) -> None:
    """The header must be exactly the inventory columns."""
    if header == list(INVENTORY_COLUMNS):
        return
    wrong = next(
        (name for i, name in enumerate(INVENTORY_COLUMNS) if i >= len(header) or header[i] != name),
        None,
    )
    raise InvalidFleetFile(
        f"the header must be {','.join(INVENTORY_COLUMNS)}, not {','.join(header)}",
        path=str(path),
        line=1,
        field=wrong,
    )


def _inventory_row(
    line: int, row: list[str], path: Path, *, last: bool, truncated: bool
) -> _InventoryRow:
    """One inventory row, checked column by column."""

    def invalid(message: str, column: str | None) -> InvalidFleetFile:
        return InvalidFleetFile(message, path=str(path), line=line, field=column)

    if len(row) != len(INVENTORY_COLUMNS):
        message = f"expected {len(INVENTORY_COLUMNS)} columns, found {len(row)}"
        if last and truncated and len(row) < len(INVENTORY_COLUMNS):
            message += " (the file ends in the middle of this row)"
        missing = INVENTORY_COLUMNS[len(row)] if len(row) < len(INVENTORY_COLUMNS) else None
        raise invalid(message, missing)
    model, gpus, cpus, name = row
    if len(model) > MAX_KEY_PART_LENGTH or not re.fullmatch(ACCELERATOR_PATTERN, model):
        raise invalid(
            f"the GPU model must be 1..{MAX_KEY_PART_LENGTH} characters of [A-Za-z0-9._-], "
            f"not {model!r}",
            "gpu_model",
        )
    if not _WHOLE_NUMBER.fullmatch(gpus) or not 1 <= int(gpus) <= MAX_GPUS_PER_NODE:
        raise invalid(f"a node has 1..{MAX_GPUS_PER_NODE} GPUs, not {gpus!r}", "gpu_capacity_num")
    if not _WHOLE_NUMBER.fullmatch(cpus):
        raise invalid(f"the CPU count must be a whole number, not {cpus!r}", "cpu_num")
    if not re.fullmatch(NODE_NAME_PATTERN, name):
        raise invalid(f"the node name must be [A-Za-z0-9._-]+, not {name!r}", "node_name")
    try:
        node = Node(name=f"node-{name}", gpus=int(gpus))
    except InvalidFleetValue as exc:
        raise invalid(str(exc), _NODE_COLUMNS.get(exc.field)) from exc
    return _InventoryRow(line=line, model=model, node=node)


def _inventory_nodes(text: str, path: Path) -> dict[str, list[Node]]:
    """The inventory's nodes, grouped by GPU model, in file order."""
    records = _csv_rows(text, path)
    if not records:
        raise InvalidFleetFile("the inventory is empty", path=str(path))
    _check_header(records[0][1], path)
    if len(records) == 1:
        raise InvalidFleetFile("the inventory has a header but no nodes", path=str(path))
    truncated = not text.endswith(("\n", "\r"))
    seen: dict[str, int] = {}
    by_model: dict[str, list[Node]] = {}
    for position, (line, fields) in enumerate(records[1:], start=2):
        row = _inventory_row(line, fields, path, last=position == len(records), truncated=truncated)
        first = seen.setdefault(row.node.name, row.line)
        if first != row.line:
            raise InvalidFleetFile(
                f"node_name {fields[3]!r} already appears on line {first}",
                path=str(path),
                line=row.line,
                field="node_name",
            )
        by_model.setdefault(row.model, []).append(row.node)
    return by_model


def load_alibaba_inventory(
    path: str | Path, *, region: str = "alibaba", prices: Mapping[str, Prices] | None = None
) -> Fleet:
    """The fleet of an Alibaba v2026 node inventory CSV: one pool per GPU model in ``region``.

    Pools are priced from :data:`DEFAULT_INVENTORY_PRICES` (``FALLBACK_INVENTORY_PRICES`` for
    other models), each entry of ``prices`` overriding the table for its model.
    """
    if len(region) > MAX_KEY_PART_LENGTH or not re.fullmatch(REGION_PATTERN, region):
        raise ValueError(
            f"region must be 1..{MAX_KEY_PART_LENGTH} characters matching {REGION_PATTERN}, "
            f"not {region!r}"
        )
    path = Path(path)
    table = {**DEFAULT_INVENTORY_PRICES, **(prices or {})}
    text = read_text(path, limit=MAX_INVENTORY_BYTES, encoding="utf-8-sig")
    by_model = _inventory_nodes(text, path)
    try:
        pools = tuple(
            Pool(
                region=region,
                accelerator=model,
                nodes=tuple(nodes),
                prices=table.get(model, FALLBACK_INVENTORY_PRICES),
            )
            for model, nodes in sorted(by_model.items())
        )
        return Fleet(name=path.stem, pools=pools)
    except InvalidFleetValue as exc:
        field = "gpu_model" if exc.field == "accelerator" else None
        raise InvalidFleetFile(str(exc), path=str(path), field=field) from exc
