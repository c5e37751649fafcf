"""The fleet: regions × accelerator generations, as pools of nodes of GPUs.

A pool is the unit that is priced and sold (``us-east/H100``). Nodes of a pool may differ in size
(a real inventory has 1-, 4- and 8-GPU nodes of one model); a lease never spans nodes unless it
takes whole nodes of the pool's largest size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

DEFAULT_NOTICE_SECONDS = 120
MIN_NOTICE_SECONDS = 30
DEFAULT_SELLABLE_SHARE = Decimal("0.5")


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
                raise ValueError(f"price {name} must be a finite, non-negative Decimal")
        if self.spot_floor > self.on_demand:
            raise ValueError("spot_floor must not exceed the on_demand price")


@dataclass(frozen=True)
class Node:
    name: str
    gpus: int

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ValueError(f"node {self.name!r} must have at least one GPU")


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
        if not self.nodes:
            raise ValueError(f"pool {self.key} has no nodes")
        if self.notice_seconds < MIN_NOTICE_SECONDS:
            raise ValueError(f"pool {self.key}: notice_seconds must be ≥ {MIN_NOTICE_SECONDS}")
        if self.sellable_floor is not None and not 0 <= self.sellable_floor <= self.gpus:
            raise ValueError(f"pool {self.key}: sellable_floor must be between 0 and {self.gpus}")

    @property
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
        by_key: dict[str, Pool] = {}
        node_names: set[str] = set()
        for pool in self.pools:
            if pool.key in by_key:
                raise ValueError(f"pool {pool.key} is defined twice")
            by_key[pool.key] = pool
            for node in pool.nodes:
                if node.name in node_names:
                    raise ValueError(f"node {node.name!r} appears twice in the fleet")
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
