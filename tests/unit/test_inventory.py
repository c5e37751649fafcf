"""Loading fleets: the YAML/TOML fleet file, the demo fleet and the Alibaba node inventory."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from backfill.domain.fleet import InvalidFleetValue, Prices
from backfill.errors import InvalidFleetFile
from backfill.inventory import (
    DEFAULT_INVENTORY_PRICES,
    FALLBACK_INVENTORY_PRICES,
    MAX_FLEET_FILE_BYTES,
    demo_fleet_path,
    load_alibaba_inventory,
    load_fleet,
    load_fleet_file,
)
from backfill.inventory.fleet_from_spec import FleetProblem, build_fleet
from backfill.inventory.schema import FleetSpec, NodeSpec, PoolSpec, PricesSpec, RegionSpec

ALIBABA_INVENTORY = Path(__file__).parents[3] / "shared/fleets/alibaba_v2026_spot_nodes.csv"

# A small valid fleet file; the line numbers of the rejection tests below refer to it.
SMALL = """\
name: small
regions:
  - name: us-east
    pools:
      - accelerator: H100
        nodes: 2
        gpus_per_node: 8
        prices:
          on_demand: 2.49
          reserved: "1.99"
          spot_floor: "0.90"
"""

DEMO_TOML = """\
name = "demo"
notice_seconds = 120

[[regions]]
name = "us-east"

[[regions.pools]]
accelerator = "H100"
nodes = 6
gpus_per_node = 8
prices = { on_demand = "2.99", reserved = "2.39", spot_floor = "0.95" }

[[regions.pools]]
accelerator = "H200"
nodes = 4
gpus_per_node = 8

[regions.pools.prices]
on_demand = 3.79
reserved = 2.99
spot_floor = 1.30

[[regions.pools]]
accelerator = "A100"
nodes = 6
gpus_per_node = 8
prices = { on_demand = "1.79", reserved = "1.39", spot_floor = "0.55" }

[[regions]]
name = "eu-west"

[[regions.pools]]
accelerator = "H100"
nodes = 4
gpus_per_node = 8
prices = { on_demand = "2.99", reserved = "2.39", spot_floor = "0.95" }

[[regions.pools]]
accelerator = "A100"
nodes = 4
gpus_per_node = 8
prices = { on_demand = "1.79", reserved = "1.39", spot_floor = "0.55" }
"""

CSV_HEADER = "gpu_model,gpu_capacity_num,cpu_num,node_name\n"


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rejection(path: Path) -> InvalidFleetFile:
    with pytest.raises(InvalidFleetFile) as caught:
        load_fleet(path)
    assert caught.value.path == str(path)
    return caught.value


def prices(on_demand: str, reserved: str, spot_floor: str) -> Prices:
    return Prices(Decimal(on_demand), Decimal(reserved), Decimal(spot_floor))


# --- the demo fleet ------------------------------------------------------------------------------


def test_the_demo_fleet_has_two_regions_three_generations_and_192_gpus() -> None:
    fleet = load_fleet_file(demo_fleet_path())

    assert fleet.name == "demo"
    assert fleet.regions == ("eu-west", "us-east")
    assert fleet.accelerators == ("A100", "H100", "H200")
    assert fleet.gpus == 192
    assert fleet.node_count == 24
    assert {pool.key: pool.gpus for pool in fleet.pools} == {
        "us-east/H100": 48,
        "us-east/H200": 32,
        "us-east/A100": 48,
        "eu-west/H100": 32,
        "eu-west/A100": 32,
    }


def test_the_demo_fleet_prices_notice_and_floors() -> None:
    fleet = load_fleet_file(demo_fleet_path())

    assert fleet.pool("us-east/H200").prices == prices("3.79", "2.99", "1.30")
    assert fleet.pool("eu-west/H100").prices == prices("2.99", "2.39", "0.95")
    assert fleet.pool("us-east/A100").prices == prices("1.79", "1.39", "0.55")
    assert all(pool.notice_seconds == 120 for pool in fleet.pools)
    assert all(pool.sellable_floor is None for pool in fleet.pools)
    assert fleet.pool("us-east/H100").floor == 24


def test_generated_node_names_are_region_accelerator_and_a_padded_number() -> None:
    pool = load_fleet_file(demo_fleet_path()).pool("us-east/H100")

    assert [node.name for node in pool.nodes] == [f"us-east-h100-00{n}" for n in range(1, 7)]
    assert {node.gpus for node in pool.nodes} == {8}


def test_the_demo_fleet_file_is_inside_the_package() -> None:
    path = demo_fleet_path()

    assert path.is_file()
    assert path.parent.name == "data"
    assert path.parent.parent.name == "backfill"


# --- fleet files that load -----------------------------------------------------------------------


def test_a_toml_fleet_file_loads_the_same_fleet_as_the_demo_yaml(tmp_path: Path) -> None:
    toml = load_fleet(write(tmp_path, "demo.toml", DEMO_TOML))

    assert toml == load_fleet(demo_fleet_path())


def test_yml_suffix_and_load_fleet_file_work_alike(tmp_path: Path) -> None:
    fleet = load_fleet_file(write(tmp_path, "small.yml", SMALL))

    assert fleet.pools[0].key == "us-east/H100"
    assert fleet.gpus == 16


def test_explicit_node_lists_keep_their_names_and_sizes(tmp_path: Path) -> None:
    text = SMALL.replace("nodes: 2\n        gpus_per_node: 8", "nodes:\n")
    text = text.replace(
        "nodes:\n",
        "nodes:\n"
        "          - {name: h100-a, gpus: 8}\n"
        "          - name: h100-b\n"
        "            gpus: 4\n"
        "          - {name: h100-c, gpus: 1}\n",
    )
    pool = load_fleet(write(tmp_path, "explicit.yaml", text)).pools[0]

    assert [(node.name, node.gpus) for node in pool.nodes] == [
        ("h100-a", 8),
        ("h100-b", 4),
        ("h100-c", 1),
    ]
    assert pool.gpus == 13
    assert pool.max_node_gpus == 8


def test_node_numbers_grow_past_three_digits(tmp_path: Path) -> None:
    text = SMALL.replace("nodes: 2", "nodes: 1000").replace("gpus_per_node: 8", "gpus_per_node: 1")
    pool = load_fleet(write(tmp_path, "big.yaml", text)).pools[0]

    assert pool.nodes[0].name == "us-east-h100-001"
    assert pool.nodes[-1].name == "us-east-h100-1000"


def test_prices_are_exact_decimals_from_strings_yaml_floats_and_ints(tmp_path: Path) -> None:
    text = SMALL.replace('"0.90"', "0")
    price = load_fleet(write(tmp_path, "small.yaml", text)).pools[0].prices

    assert price.on_demand == Decimal("2.49")
    assert str(price.on_demand) == "2.49"
    assert str(price.reserved) == "1.99"
    assert price.spot_floor == Decimal(0)


def test_toml_floats_are_exact_decimals(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, "demo.toml", DEMO_TOML))

    assert str(fleet.pool("us-east/H200").prices.on_demand) == "3.79"


def test_fleet_and_pool_notice_and_sellable_floor(tmp_path: Path) -> None:
    text = SMALL.replace("name: small\n", "name: small\nnotice_seconds: 300\n")
    text = text.replace(
        "      - accelerator: H100\n", "      - accelerator: H100\n        sellable_floor: 4\n"
    )
    text += (
        "      - accelerator: A100\n"
        "        nodes: 1\n"
        "        gpus_per_node: 8\n"
        "        notice_seconds: 30\n"
        "        prices: {on_demand: 1, reserved: 1, spot_floor: 1}\n"
    )
    fleet = load_fleet(write(tmp_path, "notice.yaml", text))

    assert fleet.pool("us-east/H100").notice_seconds == 300
    assert fleet.pool("us-east/H100").floor == 4
    assert fleet.pool("us-east/A100").notice_seconds == 30


def test_a_yaml_merge_key_may_share_prices(tmp_path: Path) -> None:
    text = SMALL.replace("        prices:\n", "        prices: &h100\n")
    text += (
        "      - accelerator: H200\n"
        "        nodes: 1\n"
        "        gpus_per_node: 8\n"
        "        prices: {<<: *h100, on_demand: 3}\n"
    )
    fleet = load_fleet(write(tmp_path, "merge.yaml", text))

    assert fleet.pool("us-east/H200").prices == prices("3", "1.99", "0.90")


# --- fleet files that do not -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        pytest.param(
            '"1.99"', '"-1.99"', 10, "regions[0].pools[0].prices.reserved", id="negative-price"
        ),
        pytest.param("2.49", ".nan", 9, "regions[0].pools[0].prices.on_demand", id="nan-price"),
        pytest.param("2.49", "-.inf", 9, "regions[0].pools[0].prices.on_demand", id="inf-price"),
        pytest.param("2.49", "true", 9, "regions[0].pools[0].prices.on_demand", id="bool-price"),
        pytest.param("2.49", "cheap", 9, "regions[0].pools[0].prices.on_demand", id="word-price"),
        pytest.param(
            '"0.90"', '"2.50"', 11, "regions[0].pools[0].prices.spot_floor", id="floor-over-od"
        ),
        pytest.param(
            "        nodes: 2\n",
            "        colour: red\n        nodes: 2\n",
            6,
            "regions[0].pools[0].colour",
            id="unknown-key",
        ),
        pytest.param("nodes: 2", "nodes: 0", 6, "regions[0].pools[0].nodes", id="no-nodes"),
        pytest.param(
            "nodes: 2", "nodes: 100001", 6, "regions[0].pools[0].nodes", id="too-many-nodes"
        ),
        pytest.param("nodes: 2", "nodes: true", 6, "regions[0].pools[0].nodes", id="bool-nodes"),
        pytest.param("nodes: 2", 'nodes: "2"', 6, "regions[0].pools[0].nodes", id="string-nodes"),
        pytest.param(
            "gpus_per_node: 8",
            "gpus_per_node: 17",
            7,
            "regions[0].pools[0].gpus_per_node",
            id="big-node",
        ),
        pytest.param(
            "        gpus_per_node: 8\n",
            "",
            5,
            "regions[0].pools[0].gpus_per_node",
            id="count-without-gpus-per-node",
        ),
        pytest.param(
            "nodes: 2",
            "nodes: [{name: a, gpus: 8}]",
            7,
            "regions[0].pools[0].gpus_per_node",
            id="list-with-gpus-per-node",
        ),
        pytest.param(
            "nodes: 2\n        gpus_per_node: 8",
            "nodes:\n          - {name: a, gpus: 8}\n          - {name: b, gpus: 0}",
            8,
            "regions[0].pools[0].nodes[1].gpus",
            id="node-without-gpus",
        ),
        pytest.param(
            "nodes: 2\n        gpus_per_node: 8",
            "nodes:\n          - {name: a, gpus: 8}\n          - {name: a, gpus: 8}",
            8,
            "regions[0].pools[0].nodes[1].name",
            id="node-named-twice",
        ),
        pytest.param(
            "        prices:\n",
            "        notice_seconds: 29\n        prices:\n",
            8,
            "regions[0].pools[0].notice_seconds",
            id="short-notice",
        ),
        pytest.param(
            "name: small\n",
            "name: small\nnotice_seconds: 10\n",
            2,
            "notice_seconds",
            id="short-fleet-notice",
        ),
        pytest.param(
            "        prices:\n",
            "        sellable_floor: 17\n        prices:\n",
            8,
            "regions[0].pools[0].sellable_floor",
            id="floor-above-pool",
        ),
        pytest.param("name: us-east", "name: US-East", 3, "regions[0].name", id="region-case"),
        pytest.param("name: small", "name: a b", 1, "name", id="fleet-name"),
        pytest.param(
            "accelerator: H100",
            "accelerator: H/100",
            5,
            "regions[0].pools[0].accelerator",
            id="accelerator-slash",
        ),
        pytest.param("name: small\n", "", 1, "name", id="no-name"),
    ],
)
def test_a_bad_value_is_named_with_its_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str
) -> None:
    assert old in SMALL
    error = rejection(write(tmp_path, "bad.yaml", SMALL.replace(old, new)))

    assert (error.line, error.field) == (line, field)
    assert error.code == "invalid_fleet_file"


def test_a_missing_prices_block_points_at_its_pool(tmp_path: Path) -> None:
    text = SMALL.split("        prices:")[0]
    error = rejection(write(tmp_path, "bad.yaml", text))

    assert (error.line, error.field) == (5, "regions[0].pools[0].prices")
    assert "required" in error.message.lower()


def test_the_message_says_where(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", SMALL.replace('"1.99"', '"-1"'))

    assert str(rejection(path)) == (
        f"{path}:10: regions[0].pools[0].prices.reserved: a price must not be negative"
    )


def test_a_duplicate_key_is_rejected_at_its_second_line(tmp_path: Path) -> None:
    text = SMALL.replace("        nodes: 2\n", "        nodes: 2\n        nodes: 3\n")
    error = rejection(write(tmp_path, "bad.yaml", text))

    assert (error.line, error.field) == (7, "regions[0].pools[0].nodes")
    assert "line 6" in error.message


def test_a_duplicate_top_level_key_is_rejected(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "bad.yaml", SMALL + "name: again\n"))

    assert (error.line, error.field) == (12, "name")


def test_a_tab_is_a_syntax_error_on_its_line(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "bad.yaml", SMALL.replace("        nodes: 2", "\tnodes: 2")))

    assert error.line == 6
    assert "YAML" in error.message


def test_an_unclosed_bracket_is_a_syntax_error_on_its_line(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "bad.yaml", SMALL.replace('"1.99"', "[1.99")))

    assert error.line == 11


def test_python_yaml_tags_are_refused(tmp_path: Path) -> None:
    text = SMALL.replace('"1.99"', '!!python/object/apply:os.system ["echo pwned"]')
    error = rejection(write(tmp_path, "bad.yaml", text))

    assert (error.line, error.field) == (10, "regions[0].pools[0].prices.reserved")
    assert "python/object" in error.message


def test_two_yaml_documents_are_refused(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "bad.yaml", SMALL + "---\nname: other\n"))

    assert error.line == 12


def test_a_region_defined_twice_is_refused(tmp_path: Path) -> None:
    again = SMALL.split("regions:\n")[1].replace("H100", "A100")
    error = rejection(write(tmp_path, "bad.yaml", SMALL + again))

    assert (error.line, error.field) == (12, "regions[1].name")


def test_an_accelerator_twice_in_a_region_is_refused(tmp_path: Path) -> None:
    again = SMALL.split("    pools:\n")[1]
    error = rejection(write(tmp_path, "bad.yaml", SMALL + again))

    assert (error.line, error.field) == (12, "regions[0].pools[1].accelerator")


def test_node_names_are_unique_across_regions(tmp_path: Path) -> None:
    text = (
        "name: clash\n"
        "regions:\n"
        "  - name: a\n"
        "    pools:\n"
        "      - accelerator: b-c\n"
        "        nodes: 1\n"
        "        gpus_per_node: 8\n"
        "        prices: {on_demand: 1, reserved: 1, spot_floor: 1}\n"
        "  - name: a-b\n"
        "    pools:\n"
        "      - accelerator: C\n"
        "        nodes: 1\n"
        "        gpus_per_node: 8\n"
        "        prices: {on_demand: 1, reserved: 1, spot_floor: 1}\n"
    )
    error = rejection(write(tmp_path, "bad.yaml", text))

    assert (error.line, error.field) == (12, "regions[1].pools[0].nodes")
    assert "a-b-c-001" in error.message
    assert "regions[0].pools[0].nodes" in error.message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("  \n\n", id="blank"),
        pytest.param("# only a comment\n", id="comment"),
    ],
)
def test_an_empty_fleet_file_is_refused(tmp_path: Path, text: str) -> None:
    error = rejection(write(tmp_path, "empty.yaml", text))

    assert error.line is None


def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "bad.yaml", "# a list\n- name: demo\n"))

    assert error.line == 2
    assert "mapping" in error.message


def test_a_fleet_file_over_one_mib_is_refused(tmp_path: Path) -> None:
    text = SMALL + "#" * MAX_FLEET_FILE_BYTES
    error = rejection(write(tmp_path, "big.yaml", text))

    assert "larger" in error.message


def test_a_fleet_file_that_is_not_utf8_is_refused_at_the_bad_line(tmp_path: Path) -> None:
    data = SMALL.replace("name: small", "name: sm\xe4ll").encode("latin-1")
    error = rejection(write(tmp_path, "bad.yaml", data))

    assert error.line == 1
    assert "UTF-8" in error.message


def test_deeply_nested_yaml_is_refused(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "deep.yaml", "name: " + "[" * 1_000))

    assert "YAML" in error.message


def test_a_yaml_alias_bomb_is_refused_before_validation(tmp_path: Path) -> None:
    pool = "{accelerator: H, nodes: 1, gpus_per_node: 8, prices: {on_demand: 1, reserved: 1}}"
    text = f"name: bomb\nregions:\n  - &r {{name: a, pools: [&p {pool}{', *p' * 2000}]}}\n"
    text += "  - *r\n" * 2000  # 66 kB that expand to 4 million pools
    error = rejection(write(tmp_path, "bomb.yaml", text))

    assert "aliases" in error.message


def test_a_yaml_alias_to_itself_is_refused(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "loop.yaml", "name: loop\nregions: &r [*r]\n"))

    assert error.line == 2


def test_a_fleet_of_more_than_a_million_nodes_is_refused(tmp_path: Path) -> None:
    text = SMALL.replace("nodes: 2", "nodes: 100000")
    text += SMALL.split("    pools:\n")[1].replace("nodes: 2", "nodes: 100000") * 10
    error = rejection(write(tmp_path, "huge.yaml", text))

    assert error.field == "regions[0].pools[10].nodes"
    assert "1000000 nodes" in error.message


def test_an_unknown_suffix_is_refused(tmp_path: Path) -> None:
    error = rejection(write(tmp_path, "fleet.json", "{}"))

    assert ".toml" in error.message


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    error = rejection(tmp_path / "absent.yaml")

    assert "cannot read" in error.message


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    error = rejection(
        write(tmp_path, "bad.toml", DEMO_TOML.replace("nodes = 4\n", "nodes = \n", 1))
    )

    assert error.line == 15
    assert "TOML" in error.message


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        pytest.param(
            "spot_floor = 1.30",
            "spot_floor = -1.30",
            21,
            "regions[0].pools[1].prices.spot_floor",
            id="negative-price-in-a-table",
        ),
        pytest.param(
            'name = "eu-west"\n',
            'name = "eu-west"\ncolour = "red"\n',
            31,
            "regions[1].colour",
            id="unknown-key",
        ),
        pytest.param(
            'accelerator = "A100"\nnodes = 4',
            'accelerator = "A100"\nnodes = 0',
            40,
            "regions[1].pools[1].nodes",
            id="no-nodes",
        ),
        pytest.param(
            'prices = { on_demand = "2.99"',
            'prices = { on_demand = "-2.99"',
            11,
            "regions[0].pools[0].prices.on_demand",
            id="inline-table",
        ),
        pytest.param(
            "notice_seconds = 120", "notice_seconds = 120.0", 2, "notice_seconds", id="float-notice"
        ),
    ],
)
def test_a_bad_toml_value_is_named_with_its_line_and_field(
    tmp_path: Path, old: str, new: str, line: int, field: str
) -> None:
    assert old in DEMO_TOML
    error = rejection(write(tmp_path, "bad.toml", DEMO_TOML.replace(old, new, 1)))

    assert (error.line, error.field) == (line, field)


@pytest.mark.parametrize(
    ("name", "text", "old", "new", "line", "field"),
    [
        pytest.param(
            "bad.yaml",
            SMALL,
            "2.49",
            "2.4900001",
            9,
            "regions[0].pools[0].prices.on_demand",
            id="yaml-seven-places",
        ),
        pytest.param(
            "bad.yaml",
            SMALL,
            '"1.99"',
            '"1000000.01"',
            10,
            "regions[0].pools[0].prices.reserved",
            id="yaml-over-a-million",
        ),
        pytest.param(
            "bad.toml",
            DEMO_TOML,
            "spot_floor = 1.30",
            "spot_floor = 1.3000001",
            21,
            "regions[0].pools[1].prices.spot_floor",
            id="toml-seven-places",
        ),
    ],
)
def test_a_price_the_domain_refuses_is_named_with_its_line_and_field(
    tmp_path: Path, name: str, text: str, old: str, new: str, line: int, field: str
) -> None:
    assert old in text
    error = rejection(write(tmp_path, name, text.replace(old, new, 1)))

    assert (error.line, error.field) == (line, field)
    assert field.rsplit(".", 1)[1] in error.message


def test_a_price_of_six_places_loads(tmp_path: Path) -> None:
    fleet = load_fleet(write(tmp_path, "micro.yaml", SMALL.replace("2.49", "2.490001")))

    assert fleet.pools[0].prices.on_demand == Decimal("2.490001")


def spec(**changes: object) -> FleetSpec:
    """A fleet spec built without validation, to reach the rules only the domain checks."""
    nodes = changes.pop("nodes", 2)
    pool = PoolSpec.model_construct(
        accelerator=changes.pop("accelerator", "H100"),
        nodes=nodes,
        gpus_per_node=changes.pop("gpus_per_node", None if isinstance(nodes, list) else 8),
        notice_seconds=changes.pop("pool_notice", None),
        sellable_floor=None,
        prices=PricesSpec.model_construct(
            on_demand=Decimal("2.49"), reserved=Decimal("1.99"), spot_floor=Decimal("0.90")
        ),
    )
    region = RegionSpec.model_construct(name=changes.pop("region", "us-east"), pools=[pool])
    return FleetSpec.model_construct(
        name=changes.pop("name", "small"),
        notice_seconds=changes.pop("notice_seconds", None),
        regions=[region],
    )


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        pytest.param({"notice_seconds": 10}, ("notice_seconds",), id="fleet-notice"),
        pytest.param(
            {"pool_notice": 10}, ("regions", 0, "pools", 0, "notice_seconds"), id="pool-notice"
        ),
        pytest.param({"region": "r" * 65}, ("regions", 0, "name"), id="region"),
        pytest.param(
            {"accelerator": "A" * 65}, ("regions", 0, "pools", 0, "accelerator"), id="accelerator"
        ),
        pytest.param(
            {"accelerator": "H/100"}, ("regions", 0, "pools", 0, "nodes"), id="generated-node-name"
        ),
        pytest.param(
            {"nodes": [NodeSpec.model_construct(name="a", gpus=65)]},
            ("regions", 0, "pools", 0, "nodes", 0, "gpus"),
            id="listed-node-gpus",
        ),
        pytest.param(
            {"nodes": [NodeSpec.model_construct(name="a b", gpus=8)]},
            ("regions", 0, "pools", 0, "nodes", 0, "name"),
            id="listed-node-name",
        ),
        pytest.param(
            {"gpus_per_node": 65},
            ("regions", 0, "pools", 0, "gpus_per_node"),
            id="counted-node-gpus",
        ),
        pytest.param({"name": ""}, ("name",), id="fleet-name"),
    ],
)
def test_a_rule_only_the_domain_checks_is_placed_at_the_field_it_names(
    changes: dict[str, object], loc: tuple[str | int, ...]
) -> None:
    with pytest.raises(FleetProblem) as caught:
        build_fleet(spec(**changes))

    assert caught.value.loc == loc
    assert isinstance(caught.value.__cause__, InvalidFleetValue)


def test_a_spec_the_domain_accepts_builds_the_fleet() -> None:
    assert build_fleet(spec()).gpus == 16


# --- the Alibaba node inventory ------------------------------------------------------------------


def test_the_real_alibaba_inventory_loads() -> None:
    if not ALIBABA_INVENTORY.is_file():
        pytest.skip(f"the shared Alibaba inventory is not at {ALIBABA_INVENTORY}")
    fleet = load_fleet(ALIBABA_INVENTORY)

    assert fleet.node_count == 4278
    assert fleet.gpus == 10_412
    assert fleet.regions == ("alibaba",)
    gpus = {pool.accelerator: pool.gpus for pool in fleet.pools}
    assert gpus["A100-SXM4-80GB"] == 3456
    assert gpus["A10"] == 2494
    assert gpus["H800"] == 1752
    assert set(gpus) == {
        "A100-SXM4-80GB",
        "A800-SXM4-80GB",
        "A10",
        "H800",
        "GPU-series-1",
        "GPU-series-2",
    }
    sizes = {node.gpus for pool in fleet.pools for node in pool.nodes}
    assert sizes == {1, 4, 8}
    assert fleet.pool("alibaba/H800").prices == DEFAULT_INVENTORY_PRICES["H800"]
    assert fleet.pool("alibaba/GPU-series-1").prices == FALLBACK_INVENTORY_PRICES


def small_inventory(directory: Path, rows: str, name: str = "nodes.csv") -> Path:
    return write(directory, name, CSV_HEADER + rows)


def test_an_inventory_makes_one_pool_per_model_with_prefixed_node_names(tmp_path: Path) -> None:
    path = small_inventory(tmp_path, "H800,8,128,0\nA10,1,64,1\nH800,4,64,2\n")
    fleet = load_alibaba_inventory(path, region="cn-hz")

    assert [pool.key for pool in fleet.pools] == ["cn-hz/A10", "cn-hz/H800"]
    assert [(n.name, n.gpus) for n in fleet.pool("cn-hz/H800").nodes] == [
        ("node-0", 8),
        ("node-2", 4),
    ]


def test_the_prices_table_prices_each_model_and_can_be_overridden(tmp_path: Path) -> None:
    path = small_inventory(tmp_path, "H800,8,128,0\nA10,1,64,1\nX9,1,8,2\n")
    cheap = prices("2", "1.5", "0.5")
    fleet = load_alibaba_inventory(path, prices={"H800": cheap})

    assert fleet.pool("alibaba/H800").prices == cheap
    assert fleet.pool("alibaba/A10").prices == prices("0.60", "0.45", "0.20")
    assert fleet.pool("alibaba/X9").prices == prices("1.00", "0.80", "0.30")
    assert DEFAULT_INVENTORY_PRICES["A100-SXM4-80GB"] == prices("1.80", "1.40", "0.60")
    assert DEFAULT_INVENTORY_PRICES["A800-SXM4-80GB"] == prices("1.70", "1.30", "0.55")
    assert DEFAULT_INVENTORY_PRICES["H800"] == prices("3.50", "2.80", "1.20")


def test_an_inventory_with_crlf_line_ends_and_a_bom_loads(tmp_path: Path) -> None:
    text = "\ufeff" + (CSV_HEADER + "A10,1,64,1\nA10,1,64,2\n").replace("\n", "\r\n")
    fleet = load_fleet(write(tmp_path, "nodes.csv", text))

    assert fleet.gpus == 2


def test_a_bad_header_is_refused_on_line_1(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes.csv", "gpu_model,gpus,cpu_num,node_name\nA10,1,64,1\n")
    error = rejection(path)

    assert (error.line, error.field) == (1, "gpu_capacity_num")


@pytest.mark.parametrize(
    ("count", "reason"),
    [
        ("eight", "word"),
        ("0", "zero"),
        ("-1", "negative"),
        ("", "empty"),
        ("1.5", "fraction"),
        ("17", "too-big"),
    ],
)
def test_a_bad_gpu_count_is_refused_on_its_line(tmp_path: Path, count: str, reason: str) -> None:
    path = small_inventory(tmp_path, f"A10,1,64,1\nA10,{count},64,2\nA10,1,64,3\n")
    error = rejection(path)

    assert (error.line, error.field) == (3, "gpu_capacity_num"), reason


def test_a_truncated_last_row_is_refused_on_its_line(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, "A10,1,64,1\nA10,1,64,2\nA10,1,6"))

    assert (error.line, error.field) == (4, "node_name")
    assert "ends in the middle" in error.message


def test_a_row_with_too_many_columns_is_refused(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, "A10,1,64,1\nA10,1,64,2,extra\n"))

    assert error.line == 3
    assert "columns" in error.message


def test_a_duplicate_node_name_is_refused_on_its_second_line(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, "A10,1,64,7\nH800,8,64,8\nA10,1,64,7\n"))

    assert (error.line, error.field) == (4, "node_name")
    assert "line 2" in error.message


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (",1,64,1", "gpu_model"),
        ("A10,1,,1", "cpu_num"),
        ("A10,1,64,", "node_name"),
        ("A 10,1,64,1", "gpu_model"),
    ],
)
def test_an_empty_or_bad_column_is_refused(tmp_path: Path, row: str, field: str) -> None:
    error = rejection(small_inventory(tmp_path, row + "\n"))

    assert (error.line, error.field) == (2, field)


def test_an_unclosed_quote_is_refused(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, 'A10,1,64,1\nA10,1,64,"2\n'))

    assert error.line is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), (CSV_HEADER, "no nodes"), ("\n\n", "empty")],
)
def test_an_inventory_without_nodes_is_refused(tmp_path: Path, text: str, message: str) -> None:
    error = rejection(write(tmp_path, "nodes.csv", text))

    assert message in error.message


def test_an_inventory_that_is_not_utf8_is_refused_on_its_line(tmp_path: Path) -> None:
    data = (CSV_HEADER + "A10,1,64,1\nA10,1,64,n\xe4\n").encode("latin-1")
    error = rejection(write(tmp_path, "nodes.csv", data))

    assert error.line == 3


def test_a_bad_region_is_a_programming_error(tmp_path: Path) -> None:
    path = small_inventory(tmp_path, "A10,1,64,1\n")

    with pytest.raises(ValueError, match="region"):
        load_alibaba_inventory(path, region="Not A Region")


def test_a_gpu_model_longer_than_64_characters_is_refused_on_its_line(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, f"A10,1,64,1\n{'G' * 65},1,64,2\n"))

    assert (error.line, error.field) == (3, "gpu_model")


def test_a_node_name_too_long_for_the_domain_is_refused_on_its_line(tmp_path: Path) -> None:
    error = rejection(small_inventory(tmp_path, f"A10,1,64,1\nA10,1,64,{'7' * 249}\n"))

    assert (error.line, error.field) == (3, "node_name")
    assert "253" in error.message


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ('"A10\n",1,64,1', "gpu_model"),
        ('A10,"1\n",64,1', "gpu_capacity_num"),
        ('A10,1,"64\n",1', "cpu_num"),
        ('A10,1,64,"1\n"', "node_name"),
    ],
)
def test_a_value_with_a_trailing_newline_is_refused(tmp_path: Path, row: str, field: str) -> None:
    error = rejection(small_inventory(tmp_path, row + "\n"))

    assert (error.line, error.field) == (3, field)


def test_a_region_too_long_for_a_pool_key_is_a_programming_error(tmp_path: Path) -> None:
    path = small_inventory(tmp_path, "A10,1,64,1\n")

    with pytest.raises(ValueError, match="region"):
        load_alibaba_inventory(path, region="r" * 65)
    assert load_alibaba_inventory(path, region="r" * 64).pools[0].region == "r" * 64
