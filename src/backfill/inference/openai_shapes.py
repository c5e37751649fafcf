"""What OpenAI's API takes and answers: the checks of a request body, token estimates, and
errors shaped as OpenAI's (``{"error": {"message", "type", "param", "code"}}``), which the
official client reads."""

from __future__ import annotations

import math
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response

MAX_BODY = 1024 * 1024
CHARS_PER_TOKEN = 3
"""For estimates made before the engine counts (holds, token limits): generous on purpose."""


def error_body(message: str, *, code: str, type: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error object (an answer's body, or an event that ends a stream)."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def openai_error(
    status: int, message: str, *, code: str, type: str, param: str | None = None
) -> JSONResponse:
    """An error as OpenAI's API answers it (the official client reads ``error.message``)."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    body = error_body(message, code=code, type=type, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def too_large() -> JSONResponse:
    message = f"the body is larger than {MAX_BODY} bytes"
    return openai_error(413, message, code="too_large", type="invalid_request_error")


class Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def parse(raw: bytes, kind: str) -> dict[str, Any]:
    if len(raw) > MAX_BODY:
        raise Refused(too_large())
    try:
        body = orjson.loads(raw)
    except ValueError as exc:
        raise Refused(
            openai_error(
                400,
                f"the body is not valid JSON: {exc}",
                code="invalid_json",
                type="invalid_request_error",
            )
        ) from None
    if not isinstance(body, dict):
        raise Refused(_invalid("the body must be a JSON object", None))
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Refused(
            _invalid("model is required: the name of a model from GET /v1/models", "model")
        )
    if kind == "chat.completions":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refused(_invalid("messages must be a non-empty list", "messages"))
    elif not isinstance(body.get("prompt"), (str, list)):
        raise Refused(_invalid("prompt must be a string or a list", "prompt"))
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    if limit is not None and (type(limit) is not int or not 1 <= limit <= 1_000_000):
        raise Refused(_invalid("max_tokens must be a whole number from 1", "max_tokens"))
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Refused(_invalid("stream must be true or false", "stream"))
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise Refused(_invalid("stream_options must be an object", "stream_options"))
    return body


def _invalid(message: str, param: str | None) -> JSONResponse:
    return openai_error(
        400, message, code="invalid_request", type="invalid_request_error", param=param
    )


def estimate(raw: bytes, body: dict[str, Any], context_length: int) -> tuple[int, int]:
    """(prompt tokens, completion tokens) the request may use at most: its prompt generously
    (a token per 3 bytes of the body), and its max_tokens (or the whole context)."""
    prompt = math.ceil(len(raw) / CHARS_PER_TOKEN)
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    return prompt, min(limit, context_length) if isinstance(limit, int) else context_length


def count(value: Any) -> int:
    return value if type(value) is int and value >= 0 else 0


def counted_so_far(chunk: dict[str, Any]) -> dict[str, int] | None:
    """The engine's own count of tokens at this chunk of a stream, as OpenAI's ``usage``."""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        return {
            "prompt_tokens": count(usage.get("prompt_tokens")),
            "completion_tokens": count(usage.get("completion_tokens")),
        }
    timings = chunk.get("timings")  # llama-server: prompt_n evaluated + cache_n reused
    if isinstance(timings, dict):
        return {
            "prompt_tokens": count(timings.get("prompt_n")) + count(timings.get("cache_n")),
            "completion_tokens": count(timings.get("predicted_n")),
        }
    return None


def unavailable(model: str) -> JSONResponse:
    response = openai_error(
        503,
        f"no replica of {model} can take the request now; try again shortly",
        code="model_unavailable",
        type="server_error",
    )
    response.headers["Retry-After"] = "1"
    return response
