"""The fleet-file schema: what a YAML or TOML fleet file may say, as pydantic models.

The models check the shape and the per-value rules of the file (described in
:mod:`backfill.inventory`); rules across values, such as unique names, are checked when the fleet
is built (:mod:`backfill.inventory.fleet_from_spec`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from backfill.domain.fleet import MAX_KEY_PART_LENGTH, MAX_NODE_NAME_LENGTH, MIN_NOTICE_SECONDS
from backfill.inventory.document import Loc

MAX_NODES_PER_POOL = 100_000
MAX_GPUS_PER_NODE = 16

FLEET_NAME_PATTERN = r"^[A-Za-z0-9._-]+$"
REGION_PATTERN = r"^[a-z0-9-]+$"
ACCELERATOR_PATTERN = r"^[A-Za-z0-9._-]+$"
NODE_NAME_PATTERN = r"^[A-Za-z0-9._-]+$"


def exact_price(value: object) -> Decimal:
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


Price = Annotated[Decimal, BeforeValidator(exact_price)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PricesSpec(_Spec):
    """A pool's list prices per GPU-hour, as written in the file."""

    on_demand: Price
    reserved: Price
    spot_floor: Price


class NodeSpec(_Spec):
    """One node named explicitly in the file."""

    name: str = Field(min_length=1, max_length=MAX_NODE_NAME_LENGTH, pattern=NODE_NAME_PATTERN)
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

    accelerator: str = Field(max_length=MAX_KEY_PART_LENGTH, pattern=ACCELERATOR_PATTERN)
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

    name: str = Field(max_length=MAX_KEY_PART_LENGTH, pattern=REGION_PATTERN)
    pools: list[PoolSpec] = Field(min_length=1)


class FleetSpec(_Spec):
    """A whole fleet file."""

    name: str = Field(min_length=1, max_length=64, pattern=FLEET_NAME_PATTERN)
    notice_seconds: int | None = Field(default=None, ge=MIN_NOTICE_SECONDS)
    regions: list[RegionSpec] = Field(min_length=1)


def field_loc(loc: tuple[str | int, ...]) -> Loc:
    """A pydantic error ``loc`` without the tag of the ``nodes`` union (count or list)."""
    kept: list[str | int] = []
    for segment in loc:
        if kept and kept[-1] == "nodes" and segment in _NODES_FORMS:
            continue
        kept.append(segment)
    return tuple(kept)
