"""Readings: raw points of one sensor, aggregated buckets, and the latest value of every sensor (or a grid's).

- ``GET /api/v1/readings``: one sensor's raw readings in [start, end).
- ``GET /api/v1/readings/buckets``: one sensor's count/min/max/mean per 1 min … 1 day bucket (epoch-aligned UTC),
  served from the store's 1-minute rollups, so months cost what days do.
- ``GET /api/v1/readings/latest``: the newest reading of each sensor of the community, or of one grid.
- ``GET /api/v1/readings/window``: every reading of one grid's sensors in a time window.

A reading whose device clock was off when it arrived carries ``clock_skew: true`` (hub.ingest).
"""

import asyncio
import dataclasses
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel

from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep
from hub.api.paging import LINKED, PageRequest, paged, paging
from hub.api.times import moment
from hub.api.visible import sensor_in_view
from hub.store.base import ReadingFlag

router = APIRouter(tags=["readings"], dependencies=[Authorized])

_DEFAULT_SPAN_MS = 3_600_000


class ReadingPublic(BaseModel):
    time: datetime
    time_ms: int
    value: float
    clock_skew: bool = False


class BucketPublic(BaseModel):
    start: datetime
    start_ms: int
    count: int
    min: float
    max: float
    mean: float


class BucketsPublic(BaseModel):
    sensor: str
    kind: str
    unit: str
    start_ms: int
    end_ms: int
    width_s: int
    buckets: list[BucketPublic]


class LatestPublic(BaseModel):
    sensor: str
    kind: str
    unit: str
    grid: str
    location: str
    time: datetime
    time_ms: int
    value: float


class ReadingsPublic(BaseModel):
    sensor: str
    kind: str
    unit: str
    start_ms: int
    end_ms: int
    count: int
    readings: list[ReadingPublic]


def parse_instant(text: str | None, name: str, default_ms: int) -> int:
    """An instant given as Unix milliseconds or ISO 8601 (with offset; naive times are refused)."""
    if text is None:
        return default_ms
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}={text!r} is neither Unix milliseconds nor ISO 8601") from None
    if parsed.tzinfo is None:
        raise HTTPException(422, f"{name}={text!r} has no UTC offset; add Z or +08:00")
    return int(parsed.timestamp() * 1000)


_READING_PAGES = paging("readings", default=10_000, maximum=100_000, shape=(int,))
_WINDOW_PAGES = paging("readings-window", default=10_000, maximum=100_000, shape=(int, str))


@router.get("/readings", responses=LINKED)
async def readings(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    sensor: Annotated[str, Query(pattern=r"^[a-z0-9-]{1,64}$")],
    start: str | None = None,
    end: str | None = None,
    page: PageRequest = _READING_PAGES,
) -> ReadingsPublic:
    """A sensor's readings in [start, end), oldest first; paged with ``limit`` and ``cursor`` (the ``Link`` header:
    keep ``end`` explicit when paging, or the window's default end moves with the clock)."""
    info = sensor_in_view(runtime, principal, sensor)
    end_ms = parse_instant(end, "end", int(time.time() * 1000) + 1)
    start_ms = parse_instant(start, "start", end_ms - _DEFAULT_SPAN_MS)
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    # one reading per (sensor, device time): the time alone is a position no later write moves
    from_ms = start_ms if page.after is None else max(start_ms, int(page.after[0]) + 1)
    found = await asyncio.to_thread(runtime.store.readings, sensor, from_ms, end_ms, page.limit + 1)
    rows = paged(request, response, page, found, lambda r: (r.time_ms,))
    return ReadingsPublic(
        sensor=sensor,
        kind=info.kind.name,
        unit=info.kind.unit,
        start_ms=start_ms,
        end_ms=end_ms,
        count=len(rows),
        readings=[
            ReadingPublic(
                time=moment(r.time_ms),
                time_ms=r.time_ms,
                value=r.value,
                clock_skew=bool(r.flags & ReadingFlag.CLOCK_SKEW),
            )
            for r in rows
        ],
    )


_WIDTHS_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21_600, "1d": 86_400}


@router.get("/readings/buckets")
async def buckets(
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    sensor: Annotated[str, Query(pattern=r"^[a-z0-9-]{1,64}$")],
    width: str = "1m",
    start: str | None = None,
    end: str | None = None,
) -> BucketsPublic:
    """``width`` is one of 1m, 5m, 15m, 1h, 6h, 1d; at most 10,000 buckets per call."""
    info = sensor_in_view(runtime, principal, sensor)
    width_s = _WIDTHS_S.get(width)
    if width_s is None:
        raise HTTPException(422, f"width={width!r} is not one of {', '.join(_WIDTHS_S)}")
    end_ms = parse_instant(end, "end", int(time.time() * 1000) + 1)
    start_ms = parse_instant(start, "start", end_ms - 86_400_000)
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    if (end_ms - start_ms) // (width_s * 1000) > 10_000:
        raise HTTPException(422, f"{width} buckets from start to end would be more than 10,000; widen them")
    rows = await asyncio.to_thread(runtime.store.buckets, sensor, start_ms, end_ms, width_s * 1000)
    return BucketsPublic(
        sensor=sensor,
        kind=info.kind.name,
        unit=info.kind.unit,
        start_ms=start_ms,
        end_ms=end_ms,
        width_s=width_s,
        buckets=[BucketPublic(start=moment(b.start_ms), **dataclasses.asdict(b)) for b in rows],
    )


class WindowReading(BaseModel):
    sensor: str
    time: datetime
    time_ms: int
    value: float
    clock_skew: bool = False


class WindowPublic(BaseModel):
    grid: str
    start_ms: int
    end_ms: int
    count: int
    truncated: bool
    readings: list[WindowReading]


@router.get("/readings/window", responses=LINKED)
async def window(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    grid: Annotated[str, Query(pattern=r"^[a-z0-9-]{1,64}$")],
    start: str | None = None,
    end: str | None = None,
    page: PageRequest = _WINDOW_PAGES,
) -> WindowPublic:
    """Every reading of a grid's sensors in [start, end) (default: the last 10 minutes), by time then sensor; paged
    with ``limit`` and ``cursor`` (the ``Link`` header; ``truncated``: more follow)."""
    scope = principal.scope
    sensors = [i.id for i in runtime.registry.by_id.values() if i.grid == grid and scope.sees_sensor(i.id)]
    if not sensors:
        raise HTTPException(404, f"no grid {grid!r} with sensors in this deployment")
    end_ms = parse_instant(end, "end", int(time.time() * 1000) + 1)
    start_ms = parse_instant(start, "start", end_ms - 600_000)
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    if page.after is None:
        found = await asyncio.to_thread(runtime.store.window, sensors, start_ms, end_ms, page.limit + 1)
    else:
        # rows at the cursor's own time may come before it (one per sensor at most): read that many more, drop them
        after = (int(page.after[0]), str(page.after[1]))
        found = await asyncio.to_thread(
            runtime.store.window, sensors, max(start_ms, after[0]), end_ms, page.limit + 1 + len(sensors)
        )
        found = [r for r in found if (r.time_ms, r.sensor) > after][: page.limit + 1]
    rows = paged(request, response, page, found, lambda r: (r.time_ms, r.sensor))
    return WindowPublic(
        grid=grid,
        start_ms=start_ms,
        end_ms=end_ms,
        count=len(rows),
        truncated=len(found) > len(rows),
        readings=[
            WindowReading(
                sensor=r.sensor,
                time=moment(r.time_ms),
                time_ms=r.time_ms,
                value=r.value,
                clock_skew=bool(r.flags & ReadingFlag.CLOCK_SKEW),
            )
            for r in rows
        ],
    )


@router.get("/readings/latest")
async def latest(
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    grid: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{1,64}$")] = None,
) -> list[LatestPublic]:
    """Every sensor of the community (or of ``grid``) in the caller's scope that has a reading, with its newest one."""
    scope = principal.scope
    infos = [i for i in runtime.registry.by_id.values() if (grid is None or i.grid == grid) and scope.sees_sensor(i.id)]
    if grid is not None and not infos:
        raise HTTPException(404, f"no grid {grid!r} with sensors in this deployment")
    rows = await asyncio.to_thread(runtime.store.latest, [i.id for i in infos])
    return [
        LatestPublic(
            sensor=i.id,
            kind=i.kind.name,
            unit=i.kind.unit,
            grid=i.grid,
            location=i.location,
            time=moment(rows[i.id].time_ms),
            time_ms=rows[i.id].time_ms,
            value=rows[i.id].value,
        )
        for i in infos
        if i.id in rows
    ]
