"""``GET /api/v1/sensors/status``: is each sensor reporting, when was it last heard, and what the hub expects.

For the property company's dashboard and the grid manager before a visit: ``fresh``, ``stale`` (with the reason:
silent for 3 report intervals, or its gateway offline) or ``unseen`` (nothing since the hub started, not judged
yet), the expected interval and where it comes from (learned, the deployment file's ``report_interval_s``, or the
default while learning). A community holds thousands of sensors, so the answer is paged and can be narrowed to one
gateway or one status; an unknown gateway is 404 (problem+json).
"""

import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep

router = APIRouter(tags=["sensors"], dependencies=[Authorized])


def _at(time_ms: int) -> datetime:
    return datetime.fromtimestamp(time_ms / 1000).astimezone()


class SensorStatusPublic(BaseModel):
    sensor: str
    gateway: str
    kind: str
    status: Literal["fresh", "stale", "unseen"]
    reason: Literal["stale", "gateway-offline"] | None = Field(description="why a stale sensor is stale")
    last_seen: datetime | None = Field(description="when the hub last received a reading from it (hub clock)")
    age_s: float | None = Field(description="seconds since then")
    expected_interval_s: float = Field(description="seconds expected between two of its readings")
    interval_source: Literal["learned", "override", "default"]
    stale_after_s: float = Field(description="silence after which it is declared stale (3 intervals)")


class SensorsStatusPublic(BaseModel):
    community: str
    total: int = Field(description="sensors matching the filters (all pages)")
    offset: int
    sensors: list[SensorStatusPublic]


@router.get("/sensors/status")
async def sensors_status(
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    gateway: str | None = None,
    status: Literal["fresh", "stale", "unseen"] | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> SensorsStatusPublic:
    scope = principal.scope
    only = None if scope.community_wide else scope.sensors
    in_view = gateway in runtime.registry.gateways and (
        only is None or any(s in only for s in runtime.registry.on_gateway[gateway])
    )
    if gateway is not None and not in_view:
        raise HTTPException(404, f"no gateway {gateway} in this deployment")
    now_ms = time.time_ns() // 1_000_000
    total, page = runtime.ingest.liveness.sensor_page(
        now_ms, gateway=gateway, status=status, offset=offset, limit=limit, only=only
    )
    return SensorsStatusPublic(
        community=runtime.registry.community,
        total=total,
        offset=offset,
        sensors=[
            SensorStatusPublic(
                sensor=item.sensor,
                gateway=item.gateway,
                kind=item.kind,
                status=item.status,
                reason=item.reason,
                last_seen=_at(item.last_seen_ms) if item.last_seen_ms is not None else None,
                age_s=item.age_s,
                expected_interval_s=item.interval_s,
                interval_source=item.interval_source,
                stale_after_s=item.stale_after_s,
            )
            for item in page
        ],
    )
