"""The NUL character (U+0000) is refused wherever a request carries text, before anything reads it.

PostgreSQL cannot store NUL in a text column, nor compare with it (the driver refuses the query),
while SQLite stores it: a NUL that reached the store answered 500 on one database and was kept on
the other. So it never gets there. Path and query parameters are checked by one app-wide
dependency (``refuse_in_parameters``), the string fields of JSON bodies by the request schemas'
base class (``refuse_in_text``); both say which parameter or field holds it. Usage events, which
are checked by hand for speed, refuse it in ``backfill.domain.events``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from pydantic_core import PydanticCustomError

from backfill.errors import InvalidRequest

NUL = "\x00"
IN_URL = "must not contain the NUL character (U+0000, %00 in a URL)"
IN_JSON = "must not contain the NUL character (U+0000, \\u0000 in JSON)"


def refuse_in_parameters(request: Request) -> None:
    """An app-wide dependency: 422 when one of the route's path or query parameters holds a NUL.

    It runs before the route's own dependencies (authentication too). Only the query parameters
    the route declares are checked: any other is ignored, as it always was, and the OpenAI routes
    (which declare none) keep answering in OpenAI's shape."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and NUL in value:
            raise InvalidRequest(f"{name} {IN_URL}", field=name)
    if b"%00" not in request.scope.get("query_string", b""):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    declared = _query_names(dependant) if isinstance(dependant, Dependant) else set()
    for name, value in request.query_params.multi_items():
        if name in declared and NUL in value:
            raise InvalidRequest(f"{name} {IN_URL}", field=name)


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters a route reads, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def refuse_in_text(value: Any) -> Any:
    """A before-validator for every field of a request body: a string holding a NUL is refused
    (as the field's error), anything else goes on to the field's own checks."""
    if isinstance(value, str) and NUL in value:
        raise PydanticCustomError("nul_character", IN_JSON)
    return value
