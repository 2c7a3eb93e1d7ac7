"""``GET /api/v1/readings``: raw readings of one sensor in a time range (aggregates come with issue 4)."""

import asyncio
import time
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from hub.api.deps import Authorized, RuntimeDep

router = APIRouter(tags=["readings"], dependencies=[Authorized])

_DEFAULT_SPAN_MS = 3_600_000


class ReadingPublic(BaseModel):
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
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}={text!r} is neither Unix milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        raise HTTPException(422, f"{name}={text!r} has no UTC offset; add Z or +08:00")
    return int(moment.timestamp() * 1000)


@router.get("/readings")
async def readings(
    runtime: RuntimeDep,
    sensor: Annotated[str, Query(pattern=r"^[a-z0-9-]{1,64}$")],
    start: str | None = None,
    end: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> ReadingsPublic:
    info = runtime.registry.by_id.get(sensor)
    if info is None:
        raise HTTPException(404, f"no sensor {sensor!r} in this deployment")
    end_ms = parse_instant(end, "end", int(time.time() * 1000) + 1)
    start_ms = parse_instant(start, "start", end_ms - _DEFAULT_SPAN_MS)
    if start_ms >= end_ms:
        raise HTTPException(422, f"start ({start_ms}) must be before end ({end_ms})")
    rows = await asyncio.to_thread(runtime.store.readings, sensor, start_ms, end_ms, limit)
    return ReadingsPublic(
        sensor=sensor,
        kind=info.kind.name,
        unit=info.kind.unit,
        start_ms=start_ms,
        end_ms=end_ms,
        count=len(rows),
        readings=[
            ReadingPublic(time=datetime.fromtimestamp(r.time_ms / 1000).astimezone(), time_ms=r.time_ms, value=r.value)
            for r in rows
        ],
    )
