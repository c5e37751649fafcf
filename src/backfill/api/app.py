"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from backfill import __version__
from backfill.api import errors, metrics
from backfill.api.limits import BodyLimit
from backfill.api.routers import (
    admin,
    budgets,
    catalog,
    events,
    invoices,
    leases,
    owner,
    usage,
    webhooks,
)
from backfill.runtime import Runtime

MAX_FLEET_UPLOAD = 2 * 1024 * 1024


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="Backfill",
        version=__version__,
        description="Lease a private fleet's idle GPUs: on-demand, spot with notice, reserved.",
    )
    app.state.runtime = runtime
    errors.install(app)
    for module in (catalog, leases, usage, events, budgets, invoices, webhooks, admin, owner):
        app.include_router(module.router)
    for extra in (events.admin, budgets.admin, budgets.holds, invoices.admin, owner.metrics):
        app.include_router(extra)
    app.state.metrics = metrics.registry(runtime.ctx)  # one registry per app, read at scrape
    app.add_middleware(
        BodyLimit,
        max_bytes=runtime.settings.max_body_bytes,
        larger={"/v1/admin/fleet/check": MAX_FLEET_UPLOAD, "/v1/events": events.MAX_EVENTS_BODY},
    )

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "engine": runtime.engine.name}

    return app
