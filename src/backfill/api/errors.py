"""Every error the API answers is ``{"error": {"code", "message", "field"}}``; codes map to HTTP
statuses here and nowhere else."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backfill.errors import BackfillError, InvalidFile

log = logging.getLogger("backfill.api")

STATUS = {
    "invalid_json": 400,
    "unauthorized": 401,
    "budget_exhausted": 402,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "idempotency_key_reused": 409,
    "insufficient_capacity": 409,
    "quota_exceeded": 409,
    "slurm_refused": 409,
    "price_above_max": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "invalid_file": 422,
    "invalid_fleet_file": 422,
    "invalid_trace": 422,
    "shape_not_placeable": 422,
    "internal_error": 500,
    "engine_unavailable": 503,
}
_HTTP_CODES = {
    400: "invalid_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(code: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if code == "unauthorized" else None
    return JSONResponse(
        status_code=STATUS.get(code, 500),
        content={"error": {"code": code, "message": message, "field": field}},
        headers=headers,
    )


def _field(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


async def _backfill_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BackfillError)
    if isinstance(exc, InvalidFile):  # say where: file:line: field: what
        return error_response(exc.code, str(exc), exc.field)
    return error_response(exc.code, exc.message, exc.field)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response("invalid_json", f"the body is not valid JSON: {first['msg']}")
    messages = "; ".join(f"{_field(tuple(e['loc'])) or 'body'}: {e['msg']}" for e in errors[:5])
    return error_response("invalid_request", messages, _field(tuple(first["loc"])))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "internal_error")
    return error_response(code, str(exc.detail))


async def _refused_by_database(request: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot hold (a data exception, SQLSTATE class 22) that no check
    caught first: the last line of defence. The unit of work it came from has rolled back; the
    value came with the request, so the answer is a 422 that quotes the database, not a 500. It
    is logged: a check should refuse it before the store is reached."""
    assert isinstance(exc, DataError)
    reason = (str(exc.orig).splitlines() or ["a data exception"])[0][:200]
    log.warning("the database refused a value: %s %s: %s", request.method, request.url.path, reason)
    return error_response(
        "invalid_request", f"the database refused a value of this request: {reason}"
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    return error_response("internal_error", "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(BackfillError, _backfill_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _refused_by_database)
    app.add_exception_handler(Exception, _unexpected)
