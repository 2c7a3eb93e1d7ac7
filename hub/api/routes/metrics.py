"""``GET /metrics`` in the Prometheus text format."""

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from hub.api.deps import RuntimeDep
from hub.metrics import render_alert_counters, render_emergency_counters

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(runtime: RuntimeDep) -> PlainTextResponse:
    text = (
        runtime.metrics.render()
        + render_alert_counters(runtime.alerts.counters)
        + render_emergency_counters(runtime.emergency.counters)
    )
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
