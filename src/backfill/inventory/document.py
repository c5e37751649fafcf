"""A fleet document: its text, read within a size limit, its data, and where each value sits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backfill.errors import InvalidFleetFile

Loc = tuple[str | int, ...]
"""Where a value sits in a document: keys and list indexes, as in pydantic's ``loc``."""


def dotted(loc: Loc) -> str | None:
    """``("regions", 0, "name")`` as ``"regions[0].name"``; ``None`` for the whole document."""
    text = ""
    for segment in loc:
        text += f"[{segment}]" if isinstance(segment, int) else f".{segment}" if text else segment
    return text or None


def read_text(path: Path, *, limit: int, encoding: str = "utf-8") -> str:
    """The file's text; too big, unreadable or not in ``encoding`` is InvalidFleetFile."""
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


@dataclass(frozen=True)
class Document:
    """A parsed fleet file, and how to find the line of a value in it."""

    path: Path
    data: object
    root_line: int | None
    line_of: Callable[[Loc], int | None]

    def invalid(self, message: str, loc: Loc) -> InvalidFleetFile:
        """The problem ``message`` at ``loc`` (the whole file when empty), with its line."""
        return InvalidFleetFile(
            message,
            path=str(self.path),
            line=self.line_of(loc) if loc else None,
            field=dotted(loc),
        )
