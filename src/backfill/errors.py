"""One error tree, with stable codes.

    BackfillError
    ├── InvalidRequest          invalid_request        the request is malformed or breaks a rule
    │   ├── InvalidJson         invalid_json           the body is not JSON
    │   ├── InvalidFile         invalid_file           a file cannot be loaded (says file:line)
    │   │   ├── InvalidFleetFile invalid_fleet_file    a fleet file or inventory
    │   │   └── InvalidTrace    invalid_trace          a workload trace
    │   └── ShapeNotPlaceable   shape_not_placeable    the request can never fit the pool's nodes
    ├── UnsupportedMediaType    unsupported_media_type the body's Content-Type is not one taken
    ├── Unauthorized            unauthorized           no key, or a key that is not valid
    ├── Forbidden               forbidden              a valid key that may not do this
    ├── NotFound                not_found              no such object (or not yours)
    ├── Conflict                conflict               the request clashes with the current state
    │   ├── IdempotencyKeyReused idempotency_key_reused  same key, different request
    │   ├── InsufficientCapacity insufficient_capacity   no GPUs to be had for it now
    │   ├── QuotaExceeded       quota_exceeded         past the tenant's GPU quota
    │   └── PriceAboveMax       price_above_max        spot price is over the tenant's max_price
    ├── BudgetExhausted         budget_exhausted       the credit or a key's budget is spent
    └── EngineUnavailable       engine_unavailable     the fleet engine does not answer

The API maps codes to HTTP statuses in one place (``backfill.api.errors``).
"""

from __future__ import annotations


class BackfillError(Exception):
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidRequest(BackfillError):
    code = "invalid_request"


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class UnsupportedMediaType(BackfillError):
    code = "unsupported_media_type"


class InvalidFile(InvalidRequest):
    """A file that cannot be loaded; says the file, line and field at fault."""

    code = "invalid_file"

    def __init__(
        self, message: str, *, path: str, line: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class InvalidFleetFile(InvalidFile):
    """A fleet file or inventory that cannot be loaded."""

    code = "invalid_fleet_file"


class InvalidTrace(InvalidFile):
    """A workload trace that cannot be loaded; a truncated file is an error, not a shorter one."""

    code = "invalid_trace"


class ShapeNotPlaceable(InvalidRequest):
    code = "shape_not_placeable"


class Unauthorized(BackfillError):
    code = "unauthorized"


class Forbidden(BackfillError):
    code = "forbidden"


class NotFound(BackfillError):
    code = "not_found"


class Conflict(BackfillError):
    code = "conflict"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class InsufficientCapacity(Conflict):
    code = "insufficient_capacity"


class QuotaExceeded(Conflict):
    code = "quota_exceeded"


class PriceAboveMax(Conflict):
    code = "price_above_max"


class BudgetExhausted(BackfillError):
    code = "budget_exhausted"


class EngineUnavailable(BackfillError):
    code = "engine_unavailable"
