"""The OpenAI routes straight to the gateway, outside FastAPI's routing and middleware.

Every millisecond the gateway adds is the tenant's. This ASGI layer answers ``POST
/v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` and ``GET /v1/models/{id}``
itself (reading the body
under the same 1 MiB cap) and hands everything else to the FastAPI app. The same routes stay
declared in ``routers/inference.py``, for the OpenAPI document and for any server that mounts the
app without this layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from backfill.inference.gateway import Gateway
from backfill.inference.openai_shapes import MAX_BODY, openai_error, too_large

log = logging.getLogger("backfill.gateway")

ROUTES = {
    ("POST", "/v1/chat/completions"): "chat.completions",
    ("POST", "/v1/completions"): "completions",
    ("GET", "/v1/models"): "models",
}
ONE_MODEL = "/v1/models/"


class OpenAIFastPath:
    def __init__(self, app: ASGIApp, gateway: Callable[[], Gateway]) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method", ""), scope.get("path", "")
        route = ROUTES.get((method, path))
        if route is None and method == "GET" and path.startswith(ONE_MODEL) and path != ONE_MODEL:
            route = "model"  # OpenAI's "retrieve model": the rest of the path is its id
        if scope["type"] != "http" or route is None:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            if route == "models":
                response = await self.gateway().models(authorization)
            elif route == "model":
                response = await self.gateway().models(authorization, path[len(ONE_MODEL) :])
            else:
                body = await _body(receive)
                if body is None:
                    response = too_large()
                else:
                    response = await self.gateway().complete(route, authorization, body)
        except Exception:  # an answer, not a dropped connection
            log.exception("the gateway failed on %s", scope["path"])
            response = openai_error(
                500,
                "an unexpected error occurred; it has been logged",
                code="internal_error",
                type="server_error",
            )
        await response(scope, receive, send)


async def _body(receive: Receive) -> bytes | None:
    """The request body, or None past MAX_BODY (read no further)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
