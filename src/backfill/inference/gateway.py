"""The OpenAI-compatible gateway: tenants' requests to the replica with the fewest in flight.

One request, in order: the tenant's key (cached a few seconds, so the database is not on the hot
path); the model, which must be public or the tenant's own (else 404, as if it did not exist);
the rate limits of the key and the tenant (429 with ``Retry-After``); the budget, when the tenant
is on credit or the key is capped (a hold of what the request may cost at most, else 402); then
the replica. A replica that fails before its first byte is marked and the request goes to
another; one that dies mid-stream ends the stream with an OpenAI-shaped error event. The engine's
own ``usage`` (asked for with ``stream_options.include_usage`` on streams, and passed on only if
the tenant asked for it too) becomes a usage event for the tenant, written to the usage spool
before the answer (or a stream's end) is sent and in the store within about a second,
exactly once (its id is the request's); it settles the hold at its rated cost. On a stream the
engine also reports its count as it goes (``_COUNT_AS_YOU_GO``), so a stream the tenant
abandons, or a replica that dies, is billed for what the engine generated up to then; the
replica's connection is closed, and the engine stops generating for nobody.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import orjson
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy import select
from starlette.types import Send

from backfill.domain.ratelimit import Bucket, admit
from backfill.domain.ratelimit import headers as limit_headers
from backfill.errors import BackfillError
from backfill.inference.openai_shapes import (
    Refused,
    count,
    counted_so_far,
    error_body,
    estimate,
    openai_error,
    parse,
    unavailable,
)
from backfill.inference.replicas import Replica, ReplicaSupervisor
from backfill.inference.upstream import Answer, Upstream, UpstreamError
from backfill.services import budgets, deployments, pricebook, tenants
from backfill.services.context import Context
from backfill.services.spool import UsageSpool
from backfill.services.tenants import Principal
from backfill.store.models import Budget, Deployment, RateLimit

log = logging.getLogger("backfill.gateway")

CACHE_SECONDS = 5.0
"""How long a key, a deployment list or a tenant's limits are trusted without a database read:
a revoked key stops working within this."""
ATTEMPTS = 3
REQUEST_ID = "x-request-id"
"""The header that names a request, as OpenAI's does: the id of its usage event, so that a
tenant can find what one request was billed (``GET /v1/events``) or quote it to support."""
MAX_CACHED = 10_000


_COUNT_AS_YOU_GO: dict[str, dict[str, Any]] = {
    "llama.cpp": {"stream_options": {"include_usage": True}, "timings_per_token": True},
    "vllm": {"stream_options": {"include_usage": True, "continuous_usage_stats": True}},
}
"""What each engine is asked for on a stream, so that the gateway knows the engine's own count
at every chunk (llama-server's ``timings``, vLLM's ``usage``) and a stream the tenant abandons,
or a replica that dies, is still billed for what was generated, and no more."""


class _EventStream(StreamingResponse):
    """An event stream whose source is closed as soon as it ends, however it ends: the tenant
    hung up, or it was read to the end (Starlette leaves a cancelled one to the garbage
    collector), so that the replica stops at once and what it generated is metered."""

    body_iterator: AsyncGenerator[bytes, None]

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


def _model(deployment: Deployment) -> dict[str, Any]:
    """A deployment as OpenAI describes a model."""
    return {
        "id": deployment.model,
        "object": "model",
        "created": int(deployment.created_at.timestamp()),
        "owned_by": "tenant" if deployment.tenant_id else "backfill",
    }


def _asked_by_us(engine: str, body: dict[str, Any]) -> tuple[str, ...]:
    """The fields of a stream's chunks that are there because the gateway asked the engine for
    its count (``_COUNT_AS_YOU_GO``), not the tenant: taken out before the tenant sees them."""
    if engine == "llama.cpp" and not body.get("timings_per_token"):
        return ("timings",)
    if engine == "vllm" and not (body.get("stream_options") or {}).get("continuous_usage_stats"):
        return ("usage",)
    return ()


@dataclass
class Counts:
    """What the gateway answered and metered, per model, since it started (``/metrics``). Plain
    integers under the gateway's lock: a request adds to them in well under a microsecond."""

    answers: dict[tuple[str, int], int] = field(default_factory=dict)
    """Per (model, HTTP status): the model is "" when the request named none that the tenant
    may use (a label per made-up name would let a tenant grow the metrics without end)."""
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    """Per (model, "input" or "output"): the engine's counts, as billed."""

    def answered(self, model: str, status: int) -> None:
        self.answers[(model, status)] = self.answers.get((model, status), 0) + 1

    def metered(self, model: str, prompt: int, completion: int) -> None:
        for kind, n in (("input", prompt), ("output", completion)):
            self.tokens[(model, kind)] = self.tokens.get((model, kind), 0) + n


@dataclass
class _Cached:
    value: Any
    until: float


@dataclass
class Gateway:
    ctx: Context
    supervisor: ReplicaSupervisor
    spool: UsageSpool
    """Where usage is written before the tenant hears back (see ``services.spool``)."""
    default_rpm: int | None = None
    default_tpm: int | None = None
    _upstream: Upstream | None = None
    """Connections to the replicas, made in the server's event loop at first use and closed
    with the server (``inference.upstream``: why not a general HTTP client)."""
    _cache: dict[tuple[str, str], _Cached] = field(default_factory=dict)
    _buckets: dict[tuple[str, str, str], Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counts = field(default_factory=Counts)

    # -- the routes -------------------------------------------------------------------------

    async def models(self, authorization: str | None, model: str | None = None) -> Response:
        """The models the tenant may use, or the one named ``model`` (404 if not theirs)."""
        try:
            who = await self._principal(authorization)
            if model is not None:
                return JSONResponse(_model(await self._deployment(model, who)))
        except Refused as refused:
            return refused.response
        visible = [d for d in await self._deployments() if d.tenant_id in (None, who.tenant_id)]
        return JSONResponse({"object": "list", "data": [_model(d) for d in visible]})

    async def complete(self, kind: str, authorization: str | None, raw: bytes) -> Response:
        """``kind``: ``chat.completions`` or ``completions``."""
        model = ""
        try:
            who = await self._principal(authorization)
            body = parse(raw, kind)
            deployment = await self._deployment(str(body["model"]), who)
            model = deployment.model
            prompt, most = estimate(raw, body, deployment.context_length)
            headers = await self._limit(who, prompt + most)
            hold = await self._hold(who, deployment.model, prompt, most)
        except Refused as refused:
            self._answered(model, refused.response.status_code)
            return refused.response
        headers[REQUEST_ID] = f"req_{uuid.uuid4().hex}"
        path = "/v1/chat/completions" if kind == "chat.completions" else "/v1/completions"
        tokens = prompt + most
        if body.get("stream"):
            response = await self._stream(who, deployment, path, body, headers, hold, tokens)
        else:
            response = await self._once(who, deployment, path, raw, headers, hold, tokens)
        self._answered(model, response.status_code)
        return response

    def _answered(self, model: str, status: int) -> None:
        with self._lock:
            self.counts.answered(model, status)

    def counted(self) -> Counts:
        """A copy of what was answered and metered so far (``/metrics``)."""
        with self._lock:
            return Counts(dict(self.counts.answers), dict(self.counts.tokens))

    # -- upstream -----------------------------------------------------------------------------

    def _replicas(self, model: str) -> Iterator[Replica]:
        """Up to ATTEMPTS replicas of ``model``, a different one each time, each counted in
        flight from when it is handed out (the caller releases it)."""
        tried: set[str] = set()
        for _ in range(ATTEMPTS):
            replica = self.supervisor.acquire(model, tried)
            if replica is None:
                return
            tried.add(replica.id)
            yield replica

    async def _once(
        self,
        who: Principal,
        deployment: Deployment,
        path: str,
        raw: bytes,
        headers: dict[str, str],
        hold: str | None,
        estimate: int,
    ) -> Response:
        """``headers``: the answer's own (``x-request-id``, the id of its usage event, and the
        rate limits' ``x-ratelimit-*``)."""
        request_id = headers[REQUEST_ID]
        for replica in self._replicas(deployment.model):
            answer: Answer | None = None
            try:
                answer = await self._connections().post(
                    replica.host, replica.port, path, raw, replica.secret
                )
                status, content = answer.status, await answer.read()
            except UpstreamError as exc:
                log.warning("replica %s failed before answering: %s", replica.id, exc)
                self.supervisor.failed(replica)
                continue
            finally:
                if answer is not None:
                    answer.release()
                self.supervisor.release(replica)
            if status >= 500:
                self.supervisor.failed(replica)
                continue
            if status >= 400:
                await self._settle(who, hold, None)
                return Response(content, status, media_type="application/json")
            try:
                usage = orjson.loads(content).get("usage") or {}
            except (orjson.JSONDecodeError, AttributeError):
                usage = {}
            await self._meter(who, deployment, request_id, usage, hold, estimate)
            return Response(content, 200, headers, media_type="application/json")
        await self._settle(who, hold, None)
        return unavailable(deployment.model)

    async def _stream(
        self,
        who: Principal,
        deployment: Deployment,
        path: str,
        body: dict[str, Any],
        headers: dict[str, str],
        hold: str | None,
        estimate: int,
    ) -> Response:
        request_id = headers[REQUEST_ID]
        upstream_body = orjson.dumps({**body, **_COUNT_AS_YOU_GO[deployment.engine]})
        for replica in self._replicas(deployment.model):
            try:
                answer = await self._connections().post(
                    replica.host, replica.port, path, upstream_body, replica.secret
                )
            except UpstreamError as exc:
                log.warning("replica %s failed before its first byte: %s", replica.id, exc)
                self.supervisor.release(replica)
                self.supervisor.failed(replica)
                continue
            if answer.status >= 500:
                answer.release()
                self.supervisor.release(replica)
                self.supervisor.failed(replica)
                continue
            if answer.status >= 400:
                try:
                    content = await answer.read()
                except UpstreamError:
                    content = b""
                answer.release()
                self.supervisor.release(replica)
                await self._settle(who, hold, None)
                return Response(content, answer.status, media_type="application/json")
            chunks = self._relay(answer, replica, who, deployment, request_id, hold, estimate, body)
            return _EventStream(chunks, headers=headers, media_type="text/event-stream")
        await self._settle(who, hold, None)
        return unavailable(deployment.model)

    async def _relay(
        self,
        answer: Answer,
        replica: Replica,
        who: Principal,
        deployment: Deployment,
        request_id: str,
        hold: str | None,
        estimate: int,
        body: dict[str, Any],
    ) -> AsyncGenerator[bytes, None]:
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        usage: dict[str, Any] = {}
        metered = False
        ours = _asked_by_us(deployment.engine, body)
        try:
            async for line in answer.lines():
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":  # metered before the tenant hears the end: durable first
                    metered = True
                    await self._meter(who, deployment, request_id, usage, hold, estimate)
                else:
                    try:
                        chunk = orjson.loads(data)
                    except ValueError:
                        chunk = {}
                    if not isinstance(chunk, dict):
                        chunk = {}
                    usage = counted_so_far(chunk) or usage
                    if chunk.get("choices"):
                        if any(name in chunk for name in ours):  # the count we asked for
                            for name in ours:
                                chunk.pop(name, None)
                            data = orjson.dumps(chunk)
                    elif chunk.get("usage") and not wants_usage:
                        continue  # the closing count: the tenant did not ask for it
                yield b"data: " + data + b"\n\n"
        except UpstreamError as exc:
            log.warning("replica %s died mid-stream: %s", replica.id, exc)
            self.supervisor.failed(replica)
            error = error_body(
                "the model server stopped in the middle of the answer; "
                "nothing after this was generated",
                code="replica_failed",
                type="server_error",
            )
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        finally:
            answer.release()  # a stream not read to its end: closed, and the engine stops
            self.supervisor.release(replica)
            if not metered:
                with anyio.CancelScope(shield=True):  # the tenant hung up: still settle the hold
                    await self._meter(who, deployment, request_id, usage, hold, estimate)

    # -- who, what, how much ----------------------------------------------------------------

    async def _principal(self, authorization: str | None) -> Principal:
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret or len(secret) > 256:
            raise Refused(
                openai_error(
                    401,
                    "send your API key as 'Authorization: Bearer <key>'",
                    code="invalid_api_key",
                    type="invalid_request_error",
                )
            )

        def read() -> Principal | bool:
            try:
                return tenants.authenticate(self.ctx, secret=secret)
            except BackfillError:
                return False  # remembered too: a wrong key costs one database read in 5 s

        found = await self._read_through(("key", secret), read)
        if found is False or found.role != tenants.TENANT:
            raise Refused(
                openai_error(
                    401,
                    "the API key is not valid (a tenant's key is needed)",
                    code="invalid_api_key",
                    type="invalid_request_error",
                )
            )
        return found  # type: ignore[no-any-return]

    async def _deployments(self) -> list[Deployment]:
        found: list[Deployment] = await self._read_through(
            ("deployments", ""), lambda: deployments.get_all(self.ctx), seconds=1.0
        )
        return found

    async def _deployment(self, model: str, who: Principal) -> Deployment:
        for deployment in await self._deployments():
            if deployment.model == model and deployment.tenant_id in (None, who.tenant_id):
                return deployment
        raise Refused(
            openai_error(
                404,
                f"the model {model[:128]!r} does not exist or you do not have access to it",
                code="model_not_found",
                type="invalid_request_error",
                param="model",
            )
        )

    async def _limit(self, who: Principal, tokens: int) -> dict[str, str]:
        """Admit the request under the key's and the tenant's limits (else 429); returns
        OpenAI's ``x-ratelimit-*`` headers for what is left."""
        assert who.tenant_id is not None
        limits = await self._limits(who)
        now = time.monotonic()
        with self._lock:
            pairs = []
            for scope, (rpm, tpm) in limits.items():
                pairs.append(
                    (
                        self._bucket(who.tenant_id, scope, "requests", rpm, now),
                        self._bucket(who.tenant_id, scope, "tokens", tpm, now),
                    )
                )
            wait = admit(pairs, tokens, now)
            left = limit_headers(pairs, now)
        if wait:
            response = openai_error(
                429,
                f"rate limit reached: try again in {wait} s",
                code="rate_limit_exceeded",
                type="requests",
            )
            response.headers.update({**left, "Retry-After": str(wait)})
            raise Refused(response)
        return left

    def _bucket(
        self, tenant: str, scope: str, kind: str, per_minute: int | None, now: float
    ) -> Bucket | None:
        if per_minute is None:
            return None
        key = (tenant, scope, kind)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.per_minute != per_minute:
            bucket = self._buckets[key] = Bucket.full(per_minute, now)
        return bucket

    async def _limits(self, who: Principal) -> dict[str, tuple[int | None, int | None]]:
        """Per scope (``tenant`` and the key's id): requests and tokens per minute."""
        assert who.tenant_id is not None
        tenant_id = who.tenant_id

        def read() -> dict[str, tuple[int | None, int | None]]:
            with self.ctx.unit_of_work() as session:
                rows = session.scalars(select(RateLimit).where(RateLimit.tenant_id == tenant_id))
                return {r.scope: (r.requests_per_minute, r.tokens_per_minute) for r in rows}

        found = await self._read_through(("limits", tenant_id), read)
        limits = {"tenant": found.get("tenant", (self.default_rpm, self.default_tpm))}
        if who.key_id in found:
            limits[who.key_id] = found[who.key_id]
        return limits

    async def _hold(self, who: Principal, model: str, prompt: int, most: int) -> str | None:
        """A hold of what the request may cost at most, when the tenant or key has a budget."""
        assert who.tenant_id is not None
        tenant_id = who.tenant_id

        def read() -> set[str]:
            with self.ctx.unit_of_work() as session:
                scopes = session.scalars(select(Budget.scope).where(Budget.tenant_id == tenant_id))
                return set(scopes)

        found = await self._read_through(("budgets", tenant_id), read)
        if not found or (budgets.TENANT not in found and who.key_id not in found):
            return None
        amount = max(await self._cost(model, prompt, most), Decimal("0.000001"))
        key = who.key_id if who.key_id in found else None
        try:
            hold = await anyio.to_thread.run_sync(
                lambda: budgets.reserve(
                    self.ctx,
                    tenant_id=tenant_id,
                    key_id=key,
                    amount=amount,
                    description=f"{model}: at most {prompt} + {most} tokens",
                )
            )
        except BackfillError as exc:
            raise Refused(
                openai_error(402, exc.message, code="insufficient_quota", type="insufficient_quota")
            ) from None
        return hold.id

    async def _cost(self, model: str, input_tokens: int, output_tokens: int) -> Decimal:
        def read() -> Decimal:
            now = self.ctx.engine_now()
            with self.ctx.unit_of_work() as session:
                book = pricebook.book(session, self.ctx.engine.fleet())
            total = Decimal(0)
            for dimension, tokens in (("input", input_tokens), ("output", output_tokens)):
                price = book.price_at("inference", model, dimension, now)
                if price is not None:
                    total += price * tokens / 1_000_000
            return total.quantize(Decimal("0.000001"))

        return await anyio.to_thread.run_sync(read)

    async def _meter(
        self,
        who: Principal,
        deployment: Deployment,
        request_id: str,
        usage: dict[str, Any],
        hold: str | None,
        estimate: int,
    ) -> None:
        """The engine's count as a usage event of the tenant (once: its id is the request's);
        the token buckets corrected to it; the hold settled at its cost."""
        prompt = count(usage.get("prompt_tokens"))
        completion = count(usage.get("completion_tokens"))
        with self._lock:  # the buckets the estimate was taken from: the tenant's and the key's
            self.counts.metered(deployment.model, prompt, completion)
            for scope in ("tenant", who.key_id):
                bucket = self._buckets.get((str(who.tenant_id), scope, "tokens"))
                if bucket is not None:
                    bucket.take(prompt + completion - estimate)
        if prompt == 0 and completion == 0:
            await self._settle(who, hold, None)
            return
        event = {
            "specversion": "1.0",
            "id": request_id,
            "source": "/backfill/gateway",
            "type": "backfill.inference.tokens",
            "subject": who.tenant_id,
            "time": self.ctx.engine_now().isoformat(),
            "keyid": who.key_id,
            "data": {
                "model": deployment.model,
                "input_tokens": prompt,
                "output_tokens": completion,
            },
        }
        self.spool.append(event)
        if hold is not None:
            await self._settle(who, hold, await self._cost(deployment.model, prompt, completion))

    async def _settle(self, who: Principal, hold: str | None, cost: Decimal | None) -> None:
        if hold is None:
            return

        def close() -> None:
            if cost is None:
                budgets.release(self.ctx, hold_id=hold)
            else:
                budgets.settle(self.ctx, hold_id=hold, amount=cost)

        try:
            await anyio.to_thread.run_sync(close)
        except BackfillError:
            log.exception("hold %s could not be closed", hold)

    # -- cache ----------------------------------------------------------------------------------

    async def _read_through(
        self, key: tuple[str, str], read: Callable[[], Any], seconds: float = CACHE_SECONDS
    ) -> Any:
        """What ``read`` answers (on a worker thread: it reads the database), remembered for
        ``seconds`` under ``key``."""
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry.until >= time.monotonic():
                return entry.value
        value = await anyio.to_thread.run_sync(read)
        with self._lock:
            if len(self._cache) >= MAX_CACHED:  # many keys tried (a guesser): start afresh
                self._cache.clear()
            self._cache[key] = _Cached(value, time.monotonic() + seconds)
        return value

    def forget(self) -> None:
        """Drop every cached key, deployment and limit (after the operator changed them)."""
        with self._lock:
            self._cache.clear()

    def _connections(self) -> Upstream:
        if self._upstream is None:
            self._upstream = Upstream()
        return self._upstream

    async def close(self) -> None:
        if self._upstream is not None:
            await self._upstream.close()
            self._upstream = None
