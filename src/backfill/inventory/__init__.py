"""Load a fleet from a file: a YAML or TOML fleet file, or a real node inventory (CSV).

The domain stays pure; reading, parsing and validating files happens here. Every problem becomes
:class:`~backfill.errors.InvalidFleetFile`, naming the file, the 1-based line when it can be found
and the field as a dotted path such as ``regions[0].pools[1].prices.on_demand``.

A fleet file (``.yaml``/``.yml`` or ``.toml``, at most 1 MiB of UTF-8)::

    name: demo                 # fleet name, required, 1..64 chars [A-Za-z0-9._-]
    notice_seconds: 120        # optional fleet default (>= 30; 120 when absent)
    regions:                   # required, non-empty
      - name: us-east          # 1..64 chars [a-z0-9-], unique
        pools:                 # required, non-empty
          - accelerator: H100  # 1..64 chars [A-Za-z0-9._-], unique within the region
            nodes: 4           # EITHER a count (1..100000) of nodes named
            gpus_per_node: 8   #   "<region>-<accelerator lowercased>-<NNN>" from 001, of 1..16 GPUs
            notice_seconds: 120      # optional, overrides the fleet default
            sellable_floor: 16       # optional, GPUs (0..pool GPUs; half the pool when absent)
            prices:                  # required; per GPU-hour, as exact Decimals
              on_demand: "2.49"      # strings or numbers; not bool, NaN, infinite or negative;
              reserved: "1.99"       #   at most 1000000 and 6 decimal places (micro-units)
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

The modules: :mod:`~backfill.inventory.fleet_file` loads a fleet file, parsed by
:mod:`~backfill.inventory.yaml_document` or :mod:`~backfill.inventory.toml_document`, checked
against :mod:`~backfill.inventory.schema` and built by :mod:`~backfill.inventory.fleet_from_spec`;
:mod:`~backfill.inventory.alibaba` loads a node inventory; :mod:`~backfill.inventory.document`
holds what they share (reading a file, and locating a value in it).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from backfill.domain.fleet import Fleet
from backfill.inventory.alibaba import (
    DEFAULT_INVENTORY_PRICES,
    FALLBACK_INVENTORY_PRICES,
    INVENTORY_COLUMNS,
    MAX_INVENTORY_BYTES,
    load_alibaba_inventory,
)
from backfill.inventory.document import Loc
from backfill.inventory.fleet_file import MAX_FLEET_FILE_BYTES, load_fleet_file
from backfill.inventory.fleet_from_spec import MAX_FLEET_NODES
from backfill.inventory.schema import (
    ACCELERATOR_PATTERN,
    FLEET_NAME_PATTERN,
    MAX_GPUS_PER_NODE,
    MAX_NODES_PER_POOL,
    NODE_NAME_PATTERN,
    REGION_PATTERN,
    FleetSpec,
    NodeSpec,
    PoolSpec,
    Price,
    PricesSpec,
    RegionSpec,
)
from backfill.inventory.yaml_document import MAX_YAML_VALUES

__all__ = [
    "ACCELERATOR_PATTERN",
    "DEFAULT_INVENTORY_PRICES",
    "DEMO_FLEET_FILE",
    "FALLBACK_INVENTORY_PRICES",
    "FLEET_NAME_PATTERN",
    "INVENTORY_COLUMNS",
    "MAX_FLEET_FILE_BYTES",
    "MAX_FLEET_NODES",
    "MAX_GPUS_PER_NODE",
    "MAX_INVENTORY_BYTES",
    "MAX_NODES_PER_POOL",
    "MAX_YAML_VALUES",
    "NODE_NAME_PATTERN",
    "REGION_PATTERN",
    "FleetSpec",
    "Loc",
    "NodeSpec",
    "PoolSpec",
    "Price",
    "PricesSpec",
    "RegionSpec",
    "demo_fleet_path",
    "load_alibaba_inventory",
    "load_fleet",
    "load_fleet_file",
]

DEMO_FLEET_FILE = "demo-fleet.yaml"


def load_fleet(path: str | Path) -> Fleet:
    """The fleet in ``path``: a node inventory for ``.csv``, otherwise a fleet file."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_alibaba_inventory(path)
    return load_fleet_file(path)


def demo_fleet_path() -> Path:
    """The demo fleet file shipped with the package (two regions, three generations)."""
    resource = files("backfill.data").joinpath(DEMO_FLEET_FILE)
    if not isinstance(resource, Path):
        raise RuntimeError("backfill must be installed as files for the demo fleet to be read")
    return resource
