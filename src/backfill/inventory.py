"""Load a fleet from a file: a YAML or TOML fleet file, or a real node inventory (CSV).

The domain stays pure; reading, parsing and validating files happens here. Every problem becomes
:class:`~backfill.errors.InvalidFleetFile`, naming the file, the 1-based line when it can be found
and the field as a dotted path such as ``regions[0].pools[1].prices.on_demand``.

A fleet file (``.yaml``/``.yml`` or ``.toml``, at most 1 MiB of UTF-8)::

    name: demo                 # fleet name, required, 1..64 chars [A-Za-z0-9._-]
    notice_seconds: 120        # optional fleet default (>= 30; 120 when absent)
    regions:                   # required, non-empty
      - name: us-east          # [a-z0-9-]+, unique
        pools:                 # required, non-empty
          - accelerator: H100  # [A-Za-z0-9._-]+, unique within the region
            nodes: 4           # EITHER a count (1..100000) of nodes named
            gpus_per_node: 8   #   "<region>-<accelerator lowercased>-<NNN>" from 001, of 1..16 GPUs
            notice_seconds: 120      # optional, overrides the fleet default
            sellable_floor: 16       # optional, GPUs (0..pool GPUs; half the pool when absent)
            prices:                  # required; per GPU-hour, as exact Decimals
              on_demand: "2.49"      # strings or numbers; not bool, NaN, infinite or negative
              reserved: "1.99"
              spot_floor: "0.90"     # at most on_demand
          - accelerator: A100
            nodes:                   # OR explicit nodes (then no gpus_per_node)
              - {name: a100-a, gpus: 8}    # name 1..253 chars [A-Za-z0-9._-], gpus 1..16
              - {name: a100-b, gpus: 4}
            prices: {on_demand: "1.79", reserved: "1.39", spot_floor: "0.55"}

Node names are unique across the fleet, which has at most 1,000,000 nodes. The same document in
TOML uses ``[[regions]]``, ``[[regions.pools]]`` and ``[regions.pools.prices]`` tables (TOML
floats are read as exact Decimals). Unknown keys, duplicate keys, wrong types, YAML tags beyond
plain data and YAML aliases that expand past 1,000,000 values are errors.

A node inventory (``.csv``) is the Alibaba v2026 spot-GPU node list: the header
``gpu_model,gpu_capacity_num,cpu_num,node_name`` and one row per node. It becomes one pool per
GPU model, priced from :data:`DEFAULT_INVENTORY_PRICES` unless the caller gives prices.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from backfill.domain.fleet import (
    DEFAULT_NOTICE_SECONDS,
    MIN_NOTICE_SECONDS,
    Fleet,
    Node,
    Pool,
    Prices,
)
from backfill.errors import InvalidFleetFile

MAX_FLEET_FILE_BYTES = 1024 * 1024
MAX_INVENTORY_BYTES = 64 * 1024 * 1024
MAX_NODES_PER_POOL = 100_000
MAX_GPUS_PER_NODE = 16
MAX_FLEET_NODES = 1_000_000
MAX_YAML_VALUES = 1_000_000
"""Values a YAML fleet file may hold once its aliases are expanded (an alias bomb is refused)."""

DEMO_FLEET_FILE = "demo-fleet.yaml"

FLEET_NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
REGION_PATTERN = r"^[a-z0-9-]+$"
ACCELERATOR_PATTERN = r"^[A-Za-z0-9._-]+$"
NODE_NAME_PATTERN = r"^[A-Za-z0-9._-]+$"

Loc = tuple[str | int, ...]
"""Where a value sits in a document: keys and list indexes, as in pydantic's ``loc``."""

_T = TypeVar("_T")


# --- the fleet-file schema ---------------------------------------------------------------------


def _exact_price(value: object) -> Decimal:
    """A price as an exact Decimal: from a string, an int, a Decimal or (via ``str``) a float."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise PydanticCustomError("price_type", "a price must be a number or a numeric string")
    try:
        price = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise PydanticCustomError("price_parsing", "a price must be a decimal number") from None
    if not price.is_finite():
        raise PydanticCustomError("price_finite", "a price must be finite")
    if price < 0:
        raise PydanticCustomError("price_negative", "a price must not be negative")
    return price


Price = Annotated[Decimal, BeforeValidator(_exact_price)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PricesSpec(_Spec):
    """A pool's list prices per GPU-hour, as written in the file."""

    on_demand: Price
    reserved: Price
    spot_floor: Price


class NodeSpec(_Spec):
    """One node named explicitly in the file."""

    name: str = Field(min_length=1, max_length=253, pattern=NODE_NAME_PATTERN)
    gpus: int = Field(ge=1, le=MAX_GPUS_PER_NODE)


def _nodes_form(value: Any) -> str | None:
    """Which form a pool's ``nodes`` takes: a ``count`` or an explicit ``list``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "count"
    if isinstance(value, list):
        return "list"
    return None


_NODES_FORMS = ("count", "list")

NodesSpec = Annotated[
    Annotated[int, Field(ge=1, le=MAX_NODES_PER_POOL), Tag("count")]
    | Annotated[list[NodeSpec], Field(min_length=1, max_length=MAX_NODES_PER_POOL), Tag("list")],
    Discriminator(
        _nodes_form,
        custom_error_type="nodes_form",
        custom_error_message="nodes must be a count of nodes or a list of {name, gpus} nodes",
    ),
]


class PoolSpec(_Spec):
    """One accelerator generation in a region, as written in the file."""

    accelerator: str = Field(max_length=64, pattern=ACCELERATOR_PATTERN)
    nodes: NodesSpec
    gpus_per_node: int | None = Field(
        default=None, ge=1, le=MAX_GPUS_PER_NODE, validate_default=True
    )
    notice_seconds: int | None = Field(default=None, ge=MIN_NOTICE_SECONDS)
    sellable_floor: int | None = Field(default=None, ge=0)
    prices: PricesSpec

    @field_validator("gpus_per_node")
    @classmethod
    def _goes_with_a_node_count(cls, value: int | None, info: ValidationInfo) -> int | None:
        """``gpus_per_node`` is required with a node count and not allowed with a node list."""
        nodes = info.data.get("nodes")
        if isinstance(nodes, int) and value is None:
            raise PydanticCustomError("missing", "gpus_per_node is required with a node count")
        if isinstance(nodes, list) and value is not None:
            raise PydanticCustomError(
                "extra_forbidden", "gpus_per_node is not allowed with an explicit node list"
            )
        return value


class RegionSpec(_Spec):
    """One region and its pools, as written in the file."""

    name: str = Field(max_length=64, pattern=REGION_PATTERN)
    pools: list[PoolSpec] = Field(min_length=1)


class FleetSpec(_Spec):
    """A whole fleet file."""

    name: str = Field(min_length=1, max_length=64, pattern=FLEET_NAME_PATTERN)
    notice_seconds: int | None = Field(default=None, ge=MIN_NOTICE_SECONDS)
    regions: list[RegionSpec] = Field(min_length=1)


# --- from a validated spec to the domain ---------------------------------------------------------


class _FleetProblem(Exception):
    """A rule broken by a valid-looking fleet file, at ``loc``."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


def _construct(build: Callable[[], _T], loc: Loc, fields: tuple[str, ...]) -> _T:
    """``build()``, with a domain ValueError turned into a problem at the field it names."""
    try:
        return build()
    except ValueError as exc:
        message = str(exc)
        named = next((name for name in fields if name in message), None)
        raise _FleetProblem(message, loc if named is None else (*loc, named)) from exc


def _pool_nodes(region: str, spec: PoolSpec) -> tuple[Node, ...]:
    """The nodes of a pool: listed in the file, or generated from a count."""
    if isinstance(spec.nodes, list):
        return tuple(Node(name=node.name, gpus=node.gpus) for node in spec.nodes)
    prefix = f"{region}-{spec.accelerator.lower()}"
    gpus = spec.gpus_per_node
    assert gpus is not None, "PoolSpec requires gpus_per_node with a node count"
    return tuple(Node(name=f"{prefix}-{n:03d}", gpus=gpus) for n in range(1, spec.nodes + 1))


def _claim_node_names(
    nodes: tuple[Node, ...], spec: PoolSpec, loc: Loc, owners: dict[str, Loc]
) -> None:
    """Record where each node name is defined; a name defined twice is a problem."""
    for index, node in enumerate(nodes):
        here = (*loc, "nodes", index, "name") if isinstance(spec.nodes, list) else (*loc, "nodes")
        first = owners.setdefault(node.name, here)
        if first is not here:
            raise _FleetProblem(f"node {node.name!r} is already defined at {_dotted(first)}", here)


def _build_pool(
    region: str, spec: PoolSpec, nodes: tuple[Node, ...], notice: int, loc: Loc
) -> Pool:
    """The domain pool for one validated pool spec."""
    prices = _construct(
        lambda: Prices(
            on_demand=spec.prices.on_demand,
            reserved=spec.prices.reserved,
            spot_floor=spec.prices.spot_floor,
        ),
        (*loc, "prices"),
        ("spot_floor", "on_demand", "reserved"),
    )
    return _construct(
        lambda: Pool(
            region=region,
            accelerator=spec.accelerator,
            nodes=nodes,
            prices=prices,
            notice_seconds=spec.notice_seconds if spec.notice_seconds is not None else notice,
            sellable_floor=spec.sellable_floor,
        ),
        loc,
        ("notice_seconds", "sellable_floor"),
    )


def _node_count(spec: PoolSpec) -> int:
    """How many nodes a pool spec stands for."""
    return len(spec.nodes) if isinstance(spec.nodes, list) else spec.nodes


def _check_fleet_size(spec: FleetSpec) -> None:
    """Refuse a fleet of more than MAX_FLEET_NODES nodes before generating any."""
    total = 0
    for r, region in enumerate(spec.regions):
        for p, pool in enumerate(region.pools):
            total += _node_count(pool)
            if total > MAX_FLEET_NODES:
                raise _FleetProblem(
                    f"the fleet has more than {MAX_FLEET_NODES} nodes",
                    ("regions", r, "pools", p, "nodes"),
                )


def _build_fleet(spec: FleetSpec) -> Fleet:
    """The domain fleet for a validated fleet spec; raises _FleetProblem for broken rules."""
    _check_fleet_size(spec)
    notice = spec.notice_seconds if spec.notice_seconds is not None else DEFAULT_NOTICE_SECONDS
    regions: set[str] = set()
    node_owners: dict[str, Loc] = {}
    pools: list[Pool] = []
    for r, region in enumerate(spec.regions):
        if region.name in regions:
            raise _FleetProblem(f"region {region.name!r} is defined twice", ("regions", r, "name"))
        regions.add(region.name)
        accelerators: set[str] = set()
        for p, pool in enumerate(region.pools):
            loc: Loc = ("regions", r, "pools", p)
            if pool.accelerator in accelerators:
                raise _FleetProblem(
                    f"accelerator {pool.accelerator!r} appears twice in region {region.name!r}",
                    (*loc, "accelerator"),
                )
            accelerators.add(pool.accelerator)
            nodes = _pool_nodes(region.name, pool)
            _claim_node_names(nodes, pool, loc, node_owners)
            pools.append(_build_pool(region.name, pool, nodes, notice, loc))
    return _construct(lambda: Fleet(name=spec.name, pools=tuple(pools)), (), ())


# --- reading and parsing files -------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    """A parsed fleet file, and how to find the line of a value in it."""

    data: object
    root_line: int | None
    line_of: Callable[[Loc], int | None]


def _read_text(path: Path, *, limit: int, encoding: str = "utf-8") -> str:
    """The file's text; too big, unreadable or not UTF-8 is InvalidFleetFile."""
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise InvalidFleetFile(
            f"cannot read the file: {exc.strerror or exc}", path=str(path)
        ) from exc
    if len(data) > limit:
        raise InvalidFleetFile(f"the file is larger than {limit} bytes", path=str(path))
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidFleetFile("the file is not UTF-8 text", path=str(path), line=line) from exc


def _dotted(loc: Loc) -> str | None:
    """``("regions", 0, "name")`` as ``"regions[0].name"``; ``None`` for the whole document."""
    text = ""
    for segment in loc:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}" if text else segment
    return text or None


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A YAML mapping that names the same key twice."""

    def __init__(self, mapping: yaml.MappingNode, key: yaml.ScalarNode, first_line: int) -> None:
        super().__init__(
            "while constructing a mapping",
            mapping.start_mark,
            f"found duplicate key {key.value!r}",
            key.start_mark,
        )
        self.mapping = mapping
        self.key = key.value
        self.first_line = first_line


class _FleetYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data only) that also refuses duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        first_lines: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                first_line = first_lines.setdefault((key.tag, key.value), key.start_mark.line + 1)
                if first_line != key.start_mark.line + 1:
                    raise _DuplicateKey(node, key, first_line)
        return super().construct_mapping(node, deep=deep)


def _yaml_child(node: yaml.Node, segment: str | int) -> tuple[int, yaml.Node] | None:
    """The line of ``segment`` in ``node`` (a key's line, or an item's) and its value node."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(segment):
                return key.start_mark.line + 1, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int):
        item = node.value[segment] if 0 <= segment < len(node.value) else None
        if item is not None:
            return item.start_mark.line + 1, item
    return None


def _yaml_line(root: yaml.Node, loc: Loc) -> int:
    """The line of the deepest part of ``loc`` found in the YAML node tree."""
    node, line = root, root.start_mark.line + 1
    for segment in loc:
        child = _yaml_child(node, segment)
        if child is None:
            break
        line, node = child
    return line


def _yaml_loc(root: yaml.Node, wanted: Callable[[yaml.Node], bool]) -> Loc | None:
    """Where the first node that is ``wanted`` sits in the YAML node tree (``None``: nowhere)."""
    stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
    visited: set[int] = set()
    while stack:
        node, loc = stack.pop()
        if wanted(node):
            return loc
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend((v, (*loc, str(k.value))) for k, v in reversed(node.value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*loc, i)) for i, item in reversed(list(enumerate(node.value))))
    return None


def _yaml_error_field(exc: yaml.MarkedYAMLError, root: yaml.Node | None) -> str | None:
    """The field at fault in a YAML construct error (a duplicate key, a disallowed tag)."""
    if root is None:
        return None
    if isinstance(exc, _DuplicateKey):
        mapping_loc = _yaml_loc(root, lambda node: node is exc.mapping)
        return None if mapping_loc is None else _dotted((*mapping_loc, exc.key))
    mark = exc.problem_mark
    if isinstance(exc, yaml.constructor.ConstructorError) and mark is not None:
        return _dotted(_yaml_loc(root, lambda node: node.start_mark.index == mark.index) or ())
    return None


def _yaml_error(
    exc: yaml.YAMLError, text: str, path: Path, root: yaml.Node | None
) -> InvalidFleetFile:
    """A YAML parse or construct error as InvalidFleetFile, with its line (and field if known)."""
    if isinstance(exc, yaml.reader.ReaderError):
        at = text.count("\n", 0, exc.position) + 1
        return InvalidFleetFile(f"not valid YAML: {exc.reason}", path=str(path), line=at)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return InvalidFleetFile(f"not valid YAML: {exc}", path=str(path))
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    if isinstance(exc, _DuplicateKey):
        message = f"duplicate key {exc.key!r} (first on line {exc.first_line})"
    elif isinstance(exc, yaml.constructor.ConstructorError):
        message = f"not allowed in a fleet file (plain data only): {exc.problem}"
    else:
        message = "not valid YAML: " + " ".join(p for p in (exc.context, exc.problem) if p)
    field = _yaml_error_field(exc, root)
    return InvalidFleetFile(message, path=str(path), line=line, field=field)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` stands for with every alias expanded (memoised in ``sizes``)."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_nodes:
        raise yaml.composer.ComposerError(None, None, "an alias refers to itself", node.start_mark)
    open_nodes.add(id(node))
    children: list[yaml.Node] = []
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a YAML document whose aliases expand to more than MAX_YAML_VALUES values."""
    if _expanded_size(root, {}, set()) > MAX_YAML_VALUES:
        raise InvalidFleetFile(
            f"the YAML expands to more than {MAX_YAML_VALUES} values through its aliases",
            path=str(path),
        )


def _parse_yaml(text: str, path: Path) -> _Document:
    """Compose and construct one YAML document with the strict safe loader."""
    root: yaml.Node | None = None
    try:
        loader = _FleetYamlLoader(text)
        try:
            root = loader.get_single_node()
            if root is not None:
                _check_expansion(root, path)
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, path, root) from exc
    except RecursionError as exc:
        raise InvalidFleetFile("the YAML is nested too deeply", path=str(path)) from exc
    if root is None:
        return _Document(data=None, root_line=None, line_of=lambda loc: None)
    found = root
    return _Document(
        data=data, root_line=found.start_mark.line + 1, line_of=lambda loc: _yaml_line(found, loc)
    )


_TOML_ERROR_LINE = re.compile(r"\(at line (\d+), column \d+\)$")
_TOML_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")


@dataclass(frozen=True)
class _TomlHeader:
    index: int
    name: str
    is_array: bool


def _toml_headers(lines: list[str]) -> list[_TomlHeader]:
    """The table headers (``[a.b]`` and ``[[a.b]]``) of a TOML text, by line index."""
    headers = []
    for index, line in enumerate(lines):
        match = _TOML_HEADER.match(line)
        if match:
            name = ".".join(part.strip() for part in match.group(2).split("."))
            headers.append(_TomlHeader(index, name, match.group(1) == "[["))
    return headers


def _toml_table_end(headers: list[_TomlHeader], start: _TomlHeader, end: int) -> int:
    """The line index where the table (or array element) opened by ``start`` ends."""
    for header in headers:
        if start.index < header.index < end and (
            header.name == start.name or not header.name.startswith(start.name + ".")
        ):
            return header.index
    return end


def _toml_line(text: str, loc: Loc) -> int | None:
    """Best effort: the line of ``loc`` in a TOML text written with ``[table]`` headers."""
    lines = text.splitlines()
    headers = _toml_headers(lines)
    header_lines = {header.index for header in headers}
    table, start, end, key_start = "", 0, len(lines), 0
    elements: list[_TomlHeader] = []
    best: int | None = None
    for segment in loc:
        if isinstance(segment, int):
            if segment >= len(elements):
                return best
            element = elements[segment]
            start, end = element.index, _toml_table_end(headers, element, end)
            key_start, best, elements = start + 1, start + 1, []
            continue
        key = re.compile(rf"^\s*{re.escape(segment)}\s*=")
        for index in range(key_start, end):
            if index in header_lines:
                break
            if key.match(lines[index]):
                return index + 1
        name = f"{table}.{segment}" if table else segment
        tables = [h for h in headers if start <= h.index < end and h.name == name]
        if not tables:
            return best
        table, best = name, tables[0].index + 1
        if tables[0].is_array:
            elements = tables
        else:
            start, end = tables[0].index, _toml_table_end(headers, tables[0], end)
            key_start = start + 1
    return best


def _parse_toml(text: str, path: Path) -> _Document:
    """Parse TOML, floats as exact Decimals."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_ERROR_LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        message = _TOML_ERROR_LINE.sub("", str(exc)).strip()
        raise InvalidFleetFile(f"not valid TOML: {message}", path=str(path), line=line) from exc
    except RecursionError as exc:
        raise InvalidFleetFile("the TOML is nested too deeply", path=str(path)) from exc
    return _Document(data=data, root_line=1, line_of=lambda loc: _toml_line(text, loc))


_PARSERS: Mapping[str, Callable[[str, Path], _Document]] = MappingProxyType(
    {".yaml": _parse_yaml, ".yml": _parse_yaml, ".toml": _parse_toml}
)


def _field_loc(loc: tuple[str | int, ...]) -> Loc:
    """A pydantic error ``loc`` without the tag of the ``nodes`` union (count or list)."""
    kept: list[str | int] = []
    for segment in loc:
        if kept and kept[-1] == "nodes" and segment in _NODES_FORMS:
            continue
        kept.append(segment)
    return tuple(kept)


def _validation_problem(exc: ValidationError, document: _Document, path: Path) -> InvalidFleetFile:
    """The first pydantic error as InvalidFleetFile (saying how many more there are)."""
    errors = exc.errors(include_url=False)
    loc = _field_loc(errors[0]["loc"])
    message = errors[0]["msg"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return InvalidFleetFile(message, path=str(path), line=document.line_of(loc), field=_dotted(loc))


def _fleet_from_document(document: _Document, path: Path) -> Fleet:
    """Validate a parsed document and build the fleet."""
    if document.data is None:
        raise InvalidFleetFile("the file holds no fleet", path=str(path))
    if not isinstance(document.data, dict):
        raise InvalidFleetFile(
            "the top level must be a mapping of fleet fields",
            path=str(path),
            line=document.root_line,
        )
    try:
        spec = FleetSpec.model_validate(document.data)
    except ValidationError as exc:
        raise _validation_problem(exc, document, path) from exc
    try:
        return _build_fleet(spec)
    except _FleetProblem as problem:
        raise InvalidFleetFile(
            problem.message,
            path=str(path),
            line=document.line_of(problem.loc) if problem.loc else None,
            field=_dotted(problem.loc),
        ) from problem


def load_fleet_file(path: str | Path) -> Fleet:
    """The fleet described by a YAML (``.yaml``/``.yml``) or TOML (``.toml``) fleet file."""
    path = Path(path)
    parse = _PARSERS.get(path.suffix.lower())
    if parse is None:
        raise InvalidFleetFile("a fleet file must end in .yaml, .yml or .toml", path=str(path))
    text = _read_text(path, limit=MAX_FLEET_FILE_BYTES)
    if not text.strip():
        raise InvalidFleetFile("the file is empty", path=str(path))
    return _fleet_from_document(parse(text, path), path)


def demo_fleet_path() -> Path:
    """The demo fleet file shipped with the package (two regions, three generations)."""
    resource = files("backfill.data").joinpath(DEMO_FLEET_FILE)
    if not isinstance(resource, Path):
        raise RuntimeError("backfill must be installed as files for the demo fleet to be read")
    return resource


# --- the Alibaba node inventory (CSV) ------------------------------------------------------------

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

_WHOLE_NUMBER = re.compile(r"^[0-9]+$")


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
    if not re.match(ACCELERATOR_PATTERN, model):
        raise invalid(f"the GPU model must be [A-Za-z0-9._-]+, not {model!r}", "gpu_model")
    if not _WHOLE_NUMBER.match(gpus) or not 1 <= int(gpus) <= MAX_GPUS_PER_NODE:
        raise invalid(f"a node has 1..{MAX_GPUS_PER_NODE} GPUs, not {gpus!r}", "gpu_capacity_num")
    if not _WHOLE_NUMBER.match(cpus):
        raise invalid(f"the CPU count must be a whole number, not {cpus!r}", "cpu_num")
    if not re.match(NODE_NAME_PATTERN, name):
        raise invalid(f"the node name must be [A-Za-z0-9._-]+, not {name!r}", "node_name")
    return _InventoryRow(line=line, model=model, node=Node(name=f"node-{name}", gpus=int(gpus)))


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
    if not re.match(REGION_PATTERN, region):
        raise ValueError(f"region must match {REGION_PATTERN}, not {region!r}")
    path = Path(path)
    table = {**DEFAULT_INVENTORY_PRICES, **(prices or {})}
    text = _read_text(path, limit=MAX_INVENTORY_BYTES, encoding="utf-8-sig")
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
    except ValueError as exc:
        raise InvalidFleetFile(str(exc), path=str(path)) from exc


def load_fleet(path: str | Path) -> Fleet:
    """The fleet in ``path``: a node inventory for ``.csv``, otherwise a fleet file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_alibaba_inventory(path)
    return load_fleet_file(path)
