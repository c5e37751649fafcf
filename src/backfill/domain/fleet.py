"""The fleet: regions × accelerator generations, as pools of nodes of GPUs.

A pool is the unit that is priced and sold (``us-east/H100``). Nodes of a pool may differ in size
(a real inventory has 1-, 4- and 8-GPU nodes of one model); a lease never spans nodes unless it
takes whole nodes of the pool's largest size.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

DEFAULT_NOTICE_SECONDS = 120
MIN_NOTICE_SECONDS = 30
DEFAULT_SELLABLE_SHARE = Decimal("0.5")
MAX_NODE_GPUS = 64
MAX_NODE_NAME_LENGTH = 253
MAX_KEY_PART_LENGTH = 64
"""Characters in a region or an accelerator name, the two halves of a pool key."""
MAX_PRICE = Decimal(1_000_000)
"""The highest list price per GPU-hour."""
PRICE_PLACES = 6
"""Decimal places a price may have: money is kept in micro-units."""
PRICE_UNIT = Decimal(1).scaleb(-PRICE_PLACES)

_NOT_IN_NAMES = re.compile(r"[\s/]")
"""Whitespace and ``/`` (the separator of a pool key) are not allowed in names."""


class InvalidFleetValue(ValueError):
    """A fleet value that breaks a rule; ``field`` names the field at fault in its object."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _is_int(value: object) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_name(field: str, value: object, max_length: int, what: str) -> None:
    """A name must be 1..``max_length`` characters, none of them whitespace or ``/``."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= max_length
        or _NOT_IN_NAMES.search(value) is not None
    ):
        raise InvalidFleetValue(
            field,
            f"{what} must be 1..{max_length} characters without whitespace or '/', not {value!r}",
        )


@dataclass(frozen=True)
class Prices:
    """List prices of one pool, per GPU-hour, in the fleet's currency."""

    on_demand: Decimal
    reserved: Decimal
    spot_floor: Decimal

    def __post_init__(self) -> None:
        for name in ("on_demand", "reserved", "spot_floor"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise InvalidFleetValue(
                    name, f"price {name} must be a finite, non-negative Decimal"
                )
            if value > MAX_PRICE:
                raise InvalidFleetValue(
                    name, f"price {name} must be at most {MAX_PRICE} per GPU-hour, not {value}"
                )
            if value.quantize(PRICE_UNIT) != value:
                raise InvalidFleetValue(
                    name,
                    f"price {name} must have at most {PRICE_PLACES} decimal places "
                    f"(money is kept in micro-units), not {value}",
                )
        if self.spot_floor > self.on_demand:
            raise InvalidFleetValue("spot_floor", "spot_floor must not exceed the on_demand price")


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int

    def __post_init__(self) -> None:
        _check_name("name", self.name, MAX_NODE_NAME_LENGTH, "a node name")
        if not _is_int(self.gpus):
            raise InvalidFleetValue(
                "gpus", f"node {self.name!r}: gpus must be an int, not {type(self.gpus).__name__}"
            )
        if not 1 <= self.gpus <= MAX_NODE_GPUS:
            raise InvalidFleetValue(
                "gpus",
                f"node {self.name!r} must have at least one GPU and at most {MAX_NODE_GPUS}: "
                f"gpus is {self.gpus}",
            )


@dataclass(frozen=True)
class Pool:
    """One region × accelerator: the unit priced and sold."""

    region: str
    accelerator: str
    nodes: tuple[Node, ...]
    prices: Prices
    notice_seconds: int = DEFAULT_NOTICE_SECONDS
    sellable_floor: int | None = None
    """GPUs that reserved + on-demand leases may hold at once; ``None`` is half the pool."""

    def __post_init__(self) -> None:
        _check_name("region", self.region, MAX_KEY_PART_LENGTH, "a pool's region")
        _check_name("accelerator", self.accelerator, MAX_KEY_PART_LENGTH, "a pool's accelerator")
        if not self.nodes:
            raise InvalidFleetValue("nodes", f"pool {self.key} has no nodes")
        if not _is_int(self.notice_seconds):
            raise InvalidFleetValue(
                "notice_seconds",
                f"pool {self.key}: notice_seconds must be an int, "
                f"not {type(self.notice_seconds).__name__}",
            )
        if self.notice_seconds < MIN_NOTICE_SECONDS:
            raise InvalidFleetValue(
                "notice_seconds",
                f"pool {self.key}: notice_seconds must be ≥ {MIN_NOTICE_SECONDS}",
            )
        if self.sellable_floor is None:
            return
        if not _is_int(self.sellable_floor):
            raise InvalidFleetValue(
                "sellable_floor",
                f"pool {self.key}: sellable_floor must be an int or None, "
                f"not {type(self.sellable_floor).__name__}",
            )
        if not 0 <= self.sellable_floor <= self.gpus:
            raise InvalidFleetValue(
                "sellable_floor",
                f"pool {self.key}: sellable_floor must be between 0 and {self.gpus}",
            )

    @cached_property
    def key(self) -> str:
        return pool_key(self.region, self.accelerator)

    @cached_property
    def gpus(self) -> int:
        return sum(node.gpus for node in self.nodes)

    @cached_property
    def max_node_gpus(self) -> int:
        return max(node.gpus for node in self.nodes)

    @property
    def floor(self) -> int:
        """GPUs that may be sold as reserved + on-demand (the sellable floor)."""
        if self.sellable_floor is not None:
            return self.sellable_floor
        return int(self.gpus * DEFAULT_SELLABLE_SHARE)


def pool_key(region: str, accelerator: str) -> str:
    return f"{region}/{accelerator}"


@dataclass(frozen=True)
class Fleet:
    name: str
    pools: tuple[Pool, ...]
    _by_key: dict[str, Pool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidFleetValue(
                "name", f"a fleet name must be a non-empty string, not {self.name!r}"
            )
        if not self.pools:
            raise InvalidFleetValue("pools", f"fleet {self.name!r} has no pools")
        by_key: dict[str, Pool] = {}
        node_names: set[str] = set()
        for pool in self.pools:
            if pool.key in by_key:
                raise InvalidFleetValue("pools", f"pool {pool.key} is defined twice")
            by_key[pool.key] = pool
            for node in pool.nodes:
                if node.name in node_names:
                    raise InvalidFleetValue(
                        "pools", f"node {node.name!r} appears twice in the fleet"
                    )
                node_names.add(node.name)
        object.__setattr__(self, "_by_key", by_key)

    def pool(self, key: str) -> Pool:
        """The pool named ``key``; KeyError when there is none."""
        return self._by_key[key]

    def has_pool(self, key: str) -> bool:
        return key in self._by_key

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted({pool.region for pool in self.pools}))

    @property
    def accelerators(self) -> tuple[str, ...]:
        return tuple(sorted({pool.accelerator for pool in self.pools}))

    @property
    def gpus(self) -> int:
        return sum(pool.gpus for pool in self.pools)

    @property
    def node_count(self) -> int:
        return sum(len(pool.nodes) for pool in self.pools)

    def matching(self, region: str | None, accelerator: str | None) -> Iterable[Pool]:
        """Pools in ``region`` with ``accelerator`` (either may be ``None``: any)."""
        for pool in self.pools:
            if region is not None and pool.region != region:
                continue
            if accelerator is not None and pool.accelerator != accelerator:
                continue
            yield pool
