"""TOML fleet files: parsing (floats as exact Decimals), and the line a value sits on."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from backfill.errors import InvalidFleetFile
from backfill.inventory.document import Document, Loc

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


def parse_toml(text: str, path: Path) -> Document:
    """Parse a TOML fleet file, floats as exact Decimals."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_ERROR_LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        message = _TOML_ERROR_LINE.sub("", str(exc)).strip()
        raise InvalidFleetFile(f"not valid TOML: {message}", path=str(path), line=line) from exc
    except RecursionError as exc:
        raise InvalidFleetFile("the TOML is nested too deeply", path=str(path)) from exc
    return Document(path=path, data=data, root_line=1, line_of=lambda loc: _toml_line(text, loc))
