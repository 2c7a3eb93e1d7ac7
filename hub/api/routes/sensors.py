"""``GET /api/v1/sensors`` (and ``/sensors/{id}``): the sensors in view, where each is, its state and newest reading.
``GET /api/v1/sensors/status``: is each sensor reporting, when was it last heard, and what the hub expects.

For the property company's dashboard and the grid manager before a visit: ``fresh``, ``stale`` (with the reason:
silent for 3 report intervals, or its gateway offline) or ``unseen`` (nothing since the hub started, not judged
yet), the expected interval and where it comes from (learned, the deployment file's ``report_interval_s``, or the
default while learning). A community holds thousands of sensors, so the answer is paged and can be narrowed to one
gateway or one status; an unknown gateway is 404 (problem+json).
"""

import asyncio
import time
from datetime import datetime
from typing import Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep
from hub.api.paging import LINKED, PageRequest, page_of, paged, paging
from hub.api.times import moment
from hub.api.visible import sensor_in_view
from hub.ingest.registry import SensorInfo
from hub.runtime import Runtime

router = APIRouter(tags=["sensors"], dependencies=[Authorized])


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
    offset: int = Field(description="sensors matching the filters before this page (pages are read by cursor)")
    sensors: list[SensorStatusPublic]


_STATUS_PAGES = paging("sensors-status", default=1000, maximum=10_000, shape=(int,))
_SENSOR_PAGES = paging("sensors", default=1000, maximum=5000, shape=(int,))


@router.get("/sensors/status", responses=LINKED)
async def sensors_status(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    gateway: str | None = None,
    status: Literal["fresh", "stale", "unseen"] | None = None,
    page: PageRequest = _STATUS_PAGES,
) -> SensorsStatusPublic:
    """Each sensor's liveness in configuration order; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    scope = principal.scope
    only = None if scope.community_wide else scope.sensors
    in_view = gateway in runtime.registry.gateways and (
        only is None or any(s in only for s in runtime.registry.on_gateway[gateway])
    )
    if gateway is not None and not in_view:
        raise HTTPException(404, f"no gateway {gateway} in this deployment")
    now_ms = time.time_ns() // 1_000_000
    after = -1 if page.after is None else int(page.after[0])
    total, skipped, found = runtime.ingest.liveness.sensor_page(
        now_ms, gateway=gateway, status=status, after_row=after, limit=page.limit + 1, only=only
    )
    index = runtime.registry.by_id
    shown = paged(request, response, page, found, lambda item: (index[item.sensor].index,))
    return SensorsStatusPublic(
        community=runtime.registry.community,
        total=total,
        offset=skipped,
        sensors=[
            SensorStatusPublic(
                sensor=item.sensor,
                gateway=item.gateway,
                kind=item.kind,
                status=item.status,
                reason=item.reason,
                last_seen=moment(item.last_seen_ms),
                age_s=item.age_s,
                expected_interval_s=item.interval_s,
                interval_source=item.interval_source,
                stale_after_s=item.stale_after_s,
            )
            for item in shown
        ],
    )


class SetPointPublic(BaseModel):
    name: str
    value: float = Field(description="in the unit of the sensor's kind")
    clear: float = Field(description="the level the value must come back past to clear (hysteresis)")
    above: bool = Field(description="true: values above are the dangerous side")
    grade: str = Field(description="IV … I, the grade it suggests")
    source: str


class PositionPublic(BaseModel):
    x: float = Field(description="metres east of the site plan's north-west corner")
    y: float = Field(description="metres south of it")
    floor: int


class SensorPublic(BaseModel):
    sensor: str
    gateway: str
    kind: str
    kind_zh: str
    kind_en: str
    unit: str
    grid: str
    building: str | None
    space: str | None
    location: str
    tags: list[str]
    position: PositionPublic | None = Field(description="on the community's site plan, when the deployment says")
    status: Literal["fresh", "stale", "unseen"]
    reason: Literal["stale", "gateway-offline"] | None
    last_seen: datetime | None = Field(description="when the hub last received a reading from it (hub clock)")
    value: float | None = Field(description="its newest stored reading (device time below), in ``unit``")
    time: datetime | None


class SensorDetailPublic(SensorPublic):
    set_points: list[SetPointPublic] = Field(description="the standard's set points of its kind (SENSORS.md)")


class SensorsPublic(BaseModel):
    community: str
    total: int = Field(description="sensors matching the filters (all pages)")
    offset: int = Field(description="sensors matching the filters before this page (pages are read by cursor)")
    sensors: list[SensorPublic]


_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}


async def _views(runtime: Runtime, infos: list[SensorInfo]) -> list[SensorPublic]:
    """Each sensor with where it is (the deployment file), its liveness and its newest stored reading."""
    configs = {sensor.id: sensor for _, sensor in runtime.deployment.sensors()}
    liveness = runtime.ingest.liveness
    rows = np.array([info.index for info in infos], np.intp)
    statuses = liveness.sensor_statuses(rows)
    last = liveness.sensors.last_ms[rows].tolist()
    latest = await asyncio.to_thread(runtime.store.latest, [info.id for info in infos])
    views = []
    for info, (status, reason), seen in zip(infos, statuses, last, strict=True):
        config, reading = configs[info.id], latest.get(info.id)
        views.append(
            SensorPublic(
                sensor=info.id,
                gateway=info.gateway,
                kind=info.kind.name,
                kind_zh=info.kind.label_zh,
                kind_en=info.kind.label_en,
                unit=info.kind.unit,
                grid=info.grid,
                building=config.building,
                space=config.space,
                location=info.location,
                tags=list(config.tags),
                position=None if config.position is None else PositionPublic(**config.position.model_dump()),
                status=status,
                reason=reason,
                last_seen=moment(int(seen)) if seen >= 0 else None,
                value=reading.value if reading is not None else None,
                time=moment(reading.time_ms) if reading is not None else None,
            )
        )
    return views


@router.get("/sensors", responses=LINKED)
async def list_sensors(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    grid: str | None = None,
    gateway: str | None = None,
    building: str | None = None,
    kind: str | None = None,
    status: Literal["fresh", "stale", "unseen"] | None = None,
    page: PageRequest = _SENSOR_PAGES,
) -> SensorsPublic:
    """The sensors in the caller's view with where each is, its state and its newest reading: what the overview
    draws. Narrowed by grid, gateway, building, kind or status; a filter naming nothing in view is 404. In
    configuration order, paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    scope = principal.scope
    infos = sorted(
        (i for i in runtime.registry.by_id.values() if scope.community_wide or i.id in scope.sensors),
        key=lambda i: i.index,
    )
    buildings = {sensor.id: sensor.building for _, sensor in runtime.deployment.sensors()}
    for name, value, present in (
        ("grid", grid, {i.grid for i in infos}),
        ("gateway", gateway, {i.gateway for i in infos}),
        ("building", building, {buildings[i.id] for i in infos}),
        ("kind", kind, {i.kind.name for i in infos}),
    ):
        if value is not None and value not in present:
            raise HTTPException(404, f"no {name} {value!r} with sensors in view")
    infos = [
        i
        for i in infos
        if (grid is None or i.grid == grid)
        and (gateway is None or i.gateway == gateway)
        and (building is None or buildings[i.id] == building)
        and (kind is None or i.kind.name == kind)
    ]
    if status is not None:
        rows = np.array([i.index for i in infos], np.intp)
        infos = [
            i for i, (s, _) in zip(infos, runtime.ingest.liveness.sensor_statuses(rows), strict=True) if s == status
        ]
    skipped = 0 if page.after is None else sum(1 for i in infos if (i.index,) <= page.after)
    shown = page_of(request, response, page, infos, lambda i: (i.index,))
    return SensorsPublic(
        community=runtime.registry.community, total=len(infos), offset=skipped, sensors=await _views(runtime, shown)
    )


@router.get("/sensors/{sensor_id}")
async def get_sensor(runtime: RuntimeDep, principal: CurrentPrincipal, sensor_id: str) -> SensorDetailPublic:
    """One sensor as in the list, with its kind's set points (to draw on its chart)."""
    info = sensor_in_view(runtime, principal, sensor_id)
    [view] = await _views(runtime, [info])
    points = [
        SetPointPublic(name=p.name, value=p.value, clear=p.clear, above=p.above, grade=_ROMAN[p.grade], source=p.source)
        for p in info.kind.set_points
    ]
    return SensorDetailPublic(**view.model_dump(), set_points=points)
