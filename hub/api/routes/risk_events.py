"""``GET /api/v1/risk-events``: what detection and other systems reported lately, before grading and grouping.

The risk events the alert service took since the hub started (the newest 10,000, kept in memory), newest first:
each with its condition, value, grade suggested, status (firing / cleared), whether a silence, inhibition or quiet
hours muted it, and the alert it opened or changed. For the "why did (or didn't) I get paged?" question; the alerts
are the record that lasts. Only events in the caller's view: its sensors, its grids, its buildings.
"""

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from alerts.model import RiskEvent
from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep
from hub.api.paging import LINKED, PageRequest, paged, paging
from hub.api.times import moment

router = APIRouter(tags=["risk events"], dependencies=[Authorized])


class RiskEventPublic(BaseModel):
    key: str
    grid: str
    sensor: str
    kind: str
    location: str
    rule: str
    source: str
    grade: str = Field(description="the grade the producer suggests (IV … I); the alert's may differ")
    status: str
    value: float
    unit: str
    threshold: float | None
    time: datetime = Field(description="when the condition was seen (device time)")
    received: datetime = Field(description="when the alert service took it (hub clock)")
    outcome: Literal["muted", "taken"]
    alert_id: str | None = Field(description="the alert it opened or changed (null: muted, or nothing changed)")


_EVENT_PAGES = paging("risk-events", default=100, maximum=1000, shape=(int,))


@router.get("/risk-events", responses=LINKED)
async def risk_events(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    grid: str | None = None,
    sensor: str | None = None,
    kind: str | None = None,
    status: Literal["firing", "cleared"] | None = None,
    page: PageRequest = _EVENT_PAGES,
) -> list[RiskEventPublic]:
    """Newest first; paged with ``limit`` and ``cursor`` (the next page in the ``Link`` header)."""
    scope = principal.scope

    def wanted(event: RiskEvent) -> bool:
        visible = (
            scope.community_wide
            or event.sensor in scope.sensors
            or event.grid in scope.grids
            or (bool(event.place) and event.place in scope.buildings)
        )
        return (
            visible
            and (grid is None or event.grid == grid)
            and (sensor is None or event.sensor == sensor)
            and (kind is None or event.kind == kind)
            and (status is None or event.status == status)
        )

    return [
        RiskEventPublic(
            key=r.event.key, grid=r.event.grid, sensor=r.event.sensor, kind=r.event.kind, location=r.event.location_zh,
            rule=r.event.rule, source=r.event.source, grade=r.event.grade.name, status=r.event.status,
            value=r.event.value, unit=r.event.unit, threshold=r.event.threshold, time=moment(r.event.time_ms),
            received=moment(r.received_ms), outcome=r.outcome, alert_id=None if r.alert is None else r.alert.id,
        )
        for r in paged(request, response, page, runtime.alerts.recent_events(
            matching=wanted, limit=page.limit + 1, before=None if page.after is None else int(page.after[0])
        ), lambda r: (r.seq,))
    ]  # fmt: skip
