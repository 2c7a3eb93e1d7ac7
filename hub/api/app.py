"""``create_app(settings)``: assembles the API; the lifespan opens the hub runtime. Nothing at import time."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from hub.api.limits import BodyLimit
from hub.api.paging import load_cursor_key
from hub.api.problems import install_problem_handlers
from hub.api.routes import (
    alerts,
    audit,
    auth,
    community,
    dead_letters,
    disclosure,
    events,
    gateways,
    hazards,
    health,
    incidents,
    metrics,
    mobilisation,
    readings,
    risk_events,
    rosters,
    sensors,
    silences,
    stream,
    users,
    work_orders,
)
from hub.runtime import open_runtime
from hub.settings import HubSettings
from hub.web import install_pages
from systemd_notify import serving

__all__ = ["create_app"]


def create_app(settings: HubSettings) -> FastAPI:
    """The API and pages of one hub. Every API route but health, metrics, login and the public disclosure feed
    needs a principal: a user's session (``anju-hub users add``), an API token, or ``settings.api_token`` (an admin
    integration token; optional now that users can log in)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            app.state.cursor_key = await asyncio.to_thread(load_cursor_key, settings.data_dir)
            async with serving("hub-systemd-watchdog"):  # under systemd (Type=notify): the runtime is up
                yield

    app = FastAPI(
        title="Anju 安居 hub API",
        version="1",
        description="社区安全物联网中枢 API — readings, risks and graded alerts of a smart community.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)

    def count_refused() -> None:
        runtime = getattr(app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.api_refused.inc(reason="body_too_large")

    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes, refused=count_refused)
    for module in (
        health,
        community,
        rosters,
        readings,
        alerts,
        events,
        risk_events,
        silences,
        work_orders,
        hazards,
        incidents,
        mobilisation,
        disclosure,
        dead_letters,
        gateways,
        sensors,
        stream,
        auth,
        users,
        audit,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(auth.me_router, prefix="/api/v1")
    app.include_router(metrics.router)
    install_pages(app)
    return app
