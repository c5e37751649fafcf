"""From a validated fleet-file spec to the domain fleet, checking the rules across values.

A region is defined once, an accelerator once per region and a node name once in the fleet,
which has at most :data:`MAX_FLEET_NODES` nodes. A rule the domain objects refuse
(:class:`~backfill.domain.fleet.InvalidFleetValue`) is placed at the file field it came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from backfill.domain.fleet import (
    DEFAULT_NOTICE_SECONDS,
    Fleet,
    InvalidFleetValue,
    Node,
    Pool,
    Prices,
)
from backfill.inventory.document import Loc, dotted
from backfill.inventory.schema import FleetSpec, PoolSpec

MAX_FLEET_NODES = 1_000_000

_T = TypeVar("_T")


class FleetProblem(Exception):
    """A rule broken by a valid-looking fleet file, at ``loc``."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.message = message
        self.loc = loc


def _construct(build: Callable[[], _T], loc_of: Callable[[str], Loc]) -> _T:
    """``build()``, with a domain InvalidFleetValue turned into a problem at ``loc_of(field)``."""
    try:
        return build()
    except InvalidFleetValue as exc:
        raise FleetProblem(str(exc), loc_of(exc.field)) from exc


def _node_loc(spec: PoolSpec, loc: Loc, index: int, field: str) -> Loc:
    """Where node ``index`` of the pool spec at ``loc`` gets its ``name`` or ``gpus``."""
    if isinstance(spec.nodes, list):
        return (*loc, "nodes", index, field)
    return (*loc, "gpus_per_node") if field == "gpus" else (*loc, "nodes")


def _pool_nodes(region: str, spec: PoolSpec, loc: Loc) -> tuple[Node, ...]:
    """The nodes of the pool spec at ``loc``: listed in the file, or generated from a count."""
    if isinstance(spec.nodes, list):
        defined = [(node.name, node.gpus) for node in spec.nodes]
    else:
        prefix = f"{region}-{spec.accelerator.lower()}"
        gpus = spec.gpus_per_node
        assert gpus is not None, "PoolSpec requires gpus_per_node with a node count"
        defined = [(f"{prefix}-{n:03d}", gpus) for n in range(1, spec.nodes + 1)]
    nodes: list[Node] = []
    for index, (name, gpus) in enumerate(defined):
        try:
            nodes.append(Node(name=name, gpus=gpus))
        except InvalidFleetValue as exc:
            raise FleetProblem(str(exc), _node_loc(spec, loc, index, exc.field)) from exc
    return tuple(nodes)


def _claim_node_names(
    nodes: tuple[Node, ...], spec: PoolSpec, loc: Loc, owners: dict[str, Loc]
) -> None:
    """Record where each node name is defined; a name defined twice is a problem."""
    for index, node in enumerate(nodes):
        here = _node_loc(spec, loc, index, "name")
        first = owners.get(node.name)
        if first is not None:
            raise FleetProblem(f"node {node.name!r} is already defined at {dotted(first)}", here)
        owners[node.name] = here


def _build_pool(
    region: str,
    spec: PoolSpec,
    nodes: tuple[Node, ...],
    fleet_notice: int,
    region_loc: Loc,
    loc: Loc,
) -> Pool:
    """The domain pool of the pool spec at ``loc``, in the region at ``region_loc``."""
    prices = _construct(
        lambda: Prices(
            on_demand=spec.prices.on_demand,
            reserved=spec.prices.reserved,
            spot_floor=spec.prices.spot_floor,
        ),
        lambda field: (*loc, "prices", field),
    )
    notice_loc: Loc = (*loc, "notice_seconds")
    notice = spec.notice_seconds
    if notice is None:
        notice, notice_loc = fleet_notice, ("notice_seconds",)
    elsewhere = {"region": (*region_loc, "name"), "notice_seconds": notice_loc}
    return _construct(
        lambda: Pool(
            region=region,
            accelerator=spec.accelerator,
            nodes=nodes,
            prices=prices,
            notice_seconds=notice,
            sellable_floor=spec.sellable_floor,
        ),
        lambda field: elsewhere.get(field, (*loc, field)),
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
                raise FleetProblem(
                    f"the fleet has more than {MAX_FLEET_NODES} nodes",
                    ("regions", r, "pools", p, "nodes"),
                )


def build_fleet(spec: FleetSpec) -> Fleet:
    """The domain fleet for a validated fleet spec; raises FleetProblem for broken rules."""
    _check_fleet_size(spec)
    notice = spec.notice_seconds if spec.notice_seconds is not None else DEFAULT_NOTICE_SECONDS
    regions: set[str] = set()
    node_owners: dict[str, Loc] = {}
    pools: list[Pool] = []
    for r, region in enumerate(spec.regions):
        if region.name in regions:
            raise FleetProblem(f"region {region.name!r} is defined twice", ("regions", r, "name"))
        regions.add(region.name)
        accelerators: set[str] = set()
        region_loc: Loc = ("regions", r)
        for p, pool in enumerate(region.pools):
            loc: Loc = (*region_loc, "pools", p)
            if pool.accelerator in accelerators:
                raise FleetProblem(
                    f"accelerator {pool.accelerator!r} appears twice in region {region.name!r}",
                    (*loc, "accelerator"),
                )
            accelerators.add(pool.accelerator)
            nodes = _pool_nodes(region.name, pool, loc)
            _claim_node_names(nodes, pool, loc, node_owners)
            pools.append(_build_pool(region.name, pool, nodes, notice, region_loc, loc))
    in_file = {"pools": ("regions",)}
    return _construct(
        lambda: Fleet(name=spec.name, pools=tuple(pools)),
        lambda field: in_file.get(field, (field,)),
    )
