"""YAML fleet files: a strict safe loader, and where a value or an error sits in the node tree.

Plain data only: tags beyond it, duplicate keys and aliases that expand past
:data:`MAX_YAML_VALUES` values are refused, each as InvalidFleetFile with its line (and field
when it can be found).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import yaml

from backfill.errors import InvalidFleetFile
from backfill.inventory.document import Document, Loc, dotted

MAX_YAML_VALUES = 1_000_000
"""Values a YAML fleet file may hold once its aliases are expanded (an alias bomb is refused)."""


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
        return None if mapping_loc is None else dotted((*mapping_loc, exc.key))
    mark = exc.problem_mark
    if isinstance(exc, yaml.constructor.ConstructorError) and mark is not None:
        return dotted(_yaml_loc(root, lambda node: node.start_mark.index == mark.index) or ())
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


def parse_yaml(text: str, path: Path) -> Document:
    """Parse a YAML fleet file: compose and construct one document with the strict loader."""
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
        return Document(path=path, data=None, root_line=None, line_of=lambda loc: None)
    found = root
    return Document(
        path=path,
        data=data,
        root_line=found.start_mark.line + 1,
        line_of=lambda loc: _yaml_line(found, loc),
    )
