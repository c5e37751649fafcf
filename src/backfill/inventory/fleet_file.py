"""Loading a YAML or TOML fleet file: read, parse, validate against the schema, build the fleet."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import ValidationError

from backfill.domain.fleet import Fleet
from backfill.errors import InvalidFleetFile
from backfill.inventory.document import Document, read_text
from backfill.inventory.fleet_from_spec import FleetProblem, build_fleet
from backfill.inventory.schema import FleetSpec, field_loc
from backfill.inventory.toml_document import parse_toml
from backfill.inventory.yaml_document import parse_yaml

MAX_FLEET_FILE_BYTES = 1024 * 1024

_PARSERS: Mapping[str, Callable[[str, Path], Document]] = MappingProxyType(
    {".yaml": parse_yaml, ".yml": parse_yaml, ".toml": parse_toml}
)


def _validation_problem(exc: ValidationError, document: Document) -> InvalidFleetFile:
    """The first pydantic error as InvalidFleetFile (saying how many more there are)."""
    errors = exc.errors(include_url=False)
    message = errors[0]["msg"]
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return document.invalid(message, field_loc(errors[0]["loc"]))


def _fleet_from_document(document: Document) -> Fleet:
    """Validate a parsed document and build the fleet."""
    if document.data is None:
        raise InvalidFleetFile("the file holds no fleet", path=str(document.path))
    if not isinstance(document.data, dict):
        raise InvalidFleetFile(
            "the top level must be a mapping of fleet fields",
            path=str(document.path),
            line=document.root_line,
        )
    try:
        spec = FleetSpec.model_validate(document.data)
    except ValidationError as exc:
        raise _validation_problem(exc, document) from exc
    try:
        return build_fleet(spec)
    except FleetProblem as problem:
        raise document.invalid(problem.message, problem.loc) from problem


def load_fleet_file(path: str | Path) -> Fleet:
    """The fleet described by a YAML (``.yaml``/``.yml``) or TOML (``.toml``) fleet file."""
    path = Path(path)
    parse = _PARSERS.get(path.suffix.lower())
    if parse is None:
        raise InvalidFleetFile("a fleet file must end in .yaml, .yml or .toml", path=str(path))
    text = read_text(path, limit=MAX_FLEET_FILE_BYTES)
    if not text.strip():
        raise InvalidFleetFile("the file is empty", path=str(path))
    return _fleet_from_document(parse(text, path))
