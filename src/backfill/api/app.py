"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from starlette.types import ASGIApp

from backfill import __version__
from backfill.api import errors, metrics, nul
from backfill.api.fast_path import OpenAIFastPath
from backfill.api.limits import BodyLimit
from backfill.api.routers import (
    admin,
    budgets,
    catalog,
    events,
    inference,
    invoices,
    keys,
    leases,
    owner,
    usage,
    webhooks,
)
from backfill.inference.openai_shapes import MAX_BODY
from backfill.runtime import Runtime

MAX_FLEET_UPLOAD = 2 * 1024 * 1024


def create_asgi(runtime: Runtime) -> ASGIApp:
    """What a server runs: the OpenAI routes' fast path in front of the whole FastAPI app, so
    that a tenant's completion crosses none of FastAPI's and Starlette's middleware (the same
    routes inside the app serve any server that mounts ``create_app`` alone)."""
    return OpenAIFastPath(create_app(runtime), gateway=lambda: runtime.gateway)


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await runtime.gateway.close()  # its connections belong to this event loop

    app = FastAPI(
        title="Backfill",
        version=__version__,
        description="Lease a private fleet's idle GPUs: on-demand, spot with notice, reserved; "
        "and open models behind an OpenAI-compatible API.",
        lifespan=lifespan,
        dependencies=[Depends(nul.refuse_in_parameters)],  # before any route reads one
    )
    app.state.runtime = runtime
    errors.install(app)
    for module in (
        catalog,
        leases,
        usage,
        events,
        budgets,
        invoices,
        inference,
        webhooks,
        keys,
        admin,
        owner,
    ):
        app.include_router(module.router)
    for extra in (
        events.admin,
        budgets.admin,
        budgets.holds,
        invoices.admin,
        inference.admin,
        owner.metrics,
    ):
        app.include_router(extra)
    app.state.metrics = metrics.registry(runtime.ctx, runtime.gateway)  # per app, at scrape
    app.add_middleware(
        BodyLimit,
        max_bytes=runtime.settings.max_body_bytes,
        larger={
            "/v1/admin/fleet/check": MAX_FLEET_UPLOAD,
            "/v1/events": events.MAX_EVENTS_BODY,
            "/v1/chat/completions": MAX_BODY,
            "/v1/completions": MAX_BODY,
        },
    )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "engine": runtime.engine.name}

    return app
