"""``POST /api/v1/events``: risk events from other systems (video analytics spotting a blocked fire lane, a
district platform's warning, a resident hotline) enter the same alert pipeline as the hub's own detection.

A producer names itself (``system``) and its condition (``id``); every event about that condition carries the same
pair, so it opens one alert, upgrades it, and ``cleared`` closes the condition — exactly as a detector's events do.
The key is ``{community}/ext/{system}/{id}``, so no producer can touch the hub's own alerts or another producer's.

Each event of a batch is checked on its own: the good ones are taken, the bad ones are named (index, field, why)
and counted in ``anju_api_risk_events_total{outcome="rejected",reason=…}``; one bad event never loses the others.
Grade I needs ``confirmed_by``, a person of the deployment (SENSORS.md: evidence alone reaches II at most).
"""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from alerts.model import Grade, RiskEvent
from hub.api.deps import CommunityWide, RuntimeDep
from hub.api.problems import problem
from hub.runtime import Runtime

router = APIRouter(tags=["events"], dependencies=[CommunityWide])

MAX_EVENTS = 500
"""Events in one request: a burst of a district platform fits; more is a client to fix (413-like, 422 here)."""
FUTURE_TOLERANCE_MS = 5 * 60_000
"""How far ahead of the hub's clock an event's time may be (another system's clock is off by that much at most)."""

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
ConditionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class EventIn(BaseModel):
    """One risk event from another system."""

    model_config = ConfigDict(extra="forbid")

    system: Name = Field(description="the producing system, e.g. video-ai (part of the alert key)")
    id: ConditionId = Field(
        description="the producer's id of the condition (e.g. cam-b1-east/fire-lane): the same for every event about it"
    )
    status: Literal["firing", "cleared"] = "firing"
    grade: Literal["I", "II", "III", "IV"] = Field(description="the grade the producer suggests")
    grid: Name = Field(description="the deployment's grid the place is in")
    kind: Name = Field(description="what kind of risk, e.g. fire-lane-blocked (a sensor kind where it is one)")
    kind_zh: str = Field(default="", max_length=64, description="the kind's Chinese name, e.g. 消防通道占用")
    kind_en: str = Field(default="", max_length=64, description="the kind's English name")
    location_zh: Text = Field(description="where, as residents say it: 红星社区 2栋东侧消防通道")
    rule: Text = Field(description="what was seen, in English (or the set point's name)")
    rule_zh: str = Field(default="", max_length=200, description="what was seen, in Chinese")
    time: datetime = Field(description="when the producer saw it (ISO 8601 with offset)")
    value: float = Field(default=1.0, allow_inf_nan=False, description="the measured value, if any")
    unit: str = Field(default="", max_length=32)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    below: bool | None = None
    place: str = Field(default="", max_length=64, description="the building, one the deployment's sensors are in")
    device: str = Field(default="", max_length=64, description="the producer's device (camera, panel); default id")
    source: str = Field(default="", max_length=500, description="the standard or procedure behind the grade")
    maintenance: bool = Field(default=False, description="an equipment fault: goes to the property company first")
    confirmed_by: str | None = Field(
        default=None, max_length=64, description="the person (of the deployment) who confirmed it; needed for I"
    )
    community: str | None = Field(default=None, description="if given, must be this hub's community")


class BatchIn(BaseModel):
    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_EVENTS)


class Taken(BaseModel):
    index: int
    key: str
    alert_id: str | None = Field(description="the alert it opened or changed; null: it changed nothing")
    state: str | None
    grade: str | None


@dataclass(frozen=True, slots=True)
class _Known:
    """What of the deployment an event may name (built once a request, not once an event)."""

    community: str
    grids: frozenset[str]
    buildings: frozenset[str]
    people: frozenset[str]

    @classmethod
    def of(cls, runtime: Runtime) -> "_Known":
        deployment = runtime.deployment
        return cls(
            community=deployment.community.id,
            grids=frozenset(g.id for g in deployment.grids),
            buildings=frozenset(s.building for _, s in deployment.sensors() if s.building),
            people=frozenset(p.id for p in deployment.people),
        )


def _check(known: _Known, event: EventIn, now_ms: int) -> list[tuple[str, str]]:
    """What is wrong with ``event`` against this deployment, as (field, why) (empty: nothing)."""
    wrong: list[tuple[str, str]] = []
    if event.community is not None and event.community != known.community:
        wrong.append(("community", f"community: {event.community!r} is not this hub's ({known.community!r})"))
    if event.grid not in known.grids:
        wrong.append(("grid", f"grid: no grid {event.grid!r} in this deployment"))
    if event.time.tzinfo is None:
        wrong.append(("time", "time: needs an offset (…+08:00 or …Z)"))
    elif round(event.time.timestamp() * 1000) > now_ms + FUTURE_TOLERANCE_MS:
        wrong.append(("time", f"time: {event.time.isoformat()} is more than {FUTURE_TOLERANCE_MS // 60_000} min ahead"))
    if event.place and event.place not in known.buildings:
        wrong.append(("place", f"place: no sensor of this deployment is in building {event.place!r}"))
    if event.confirmed_by is not None and event.confirmed_by not in known.people:
        wrong.append(("confirmed_by", f"confirmed_by: no person {event.confirmed_by!r} in this deployment"))
    if event.grade == "I" and event.status == "firing" and event.confirmed_by is None:
        wrong.append(
            ("grade", "grade: I needs confirmed_by, a person who confirmed it (evidence alone reaches II at most)")
        )
    return wrong


def _risk_event(community: str, event: EventIn) -> RiskEvent:
    return RiskEvent(
        key=f"{community}/ext/{event.system}/{event.id}",
        community=community,
        grid=event.grid,
        sensor=event.device or event.id,
        kind=event.kind,
        kind_zh=event.kind_zh,
        kind_en=event.kind_en,
        location_zh=event.location_zh,
        rule=event.rule,
        rule_zh=event.rule_zh,
        grade=Grade[event.grade],
        value=event.value,
        unit=event.unit,
        threshold=event.threshold,
        below=event.below,
        time_ms=round(event.time.timestamp() * 1000),
        status=event.status,
        source=event.source or f"reported by {event.system}",
        confirmed_by_person=event.confirmed_by is not None,
        maintenance=event.maintenance,
        place=event.place,
    )


def _field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """(reason, text) of each problem pydantic found: the reason is the field (or ``shape``)."""
    found = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "event"
        found.append((str(error["loc"][0]) if error["loc"] else "shape", f"{where}: {error['msg']}"))
    return found


@router.post("/events", status_code=202, response_model=None)
async def post_events(runtime: RuntimeDep, body: Annotated[BatchIn, Body()]) -> dict[str, Any] | JSONResponse:
    """Take each good event into the alert pipeline (in order) and name each bad one. 202 when all were taken;
    422 (problem details) when any was refused — the good ones are taken all the same and listed in ``taken``."""
    now_ms = time.time_ns() // 1_000_000
    known = _Known.of(runtime)
    counter = runtime.metrics.api_risk_events
    good: list[tuple[int, RiskEvent]] = []
    refused: list[dict[str, Any]] = []
    for index, raw in enumerate(body.events):
        try:
            event = EventIn.model_validate(raw)
        except ValidationError as exc:
            found = _field_errors(exc)
        else:
            found = _check(known, event, now_ms)
        if found:
            counter.inc(outcome="rejected", reason=found[0][0])
            refused.append({"index": index, "errors": [text for _, text in found]})
        else:
            good.append((index, _risk_event(known.community, event)))
    alerts = await runtime.alerts.submit_many([risk for _, risk in good])
    counter.inc(len(good), outcome="taken")
    taken = [
        Taken(
            index=index,
            key=risk.key,
            alert_id=None if alert is None else alert.id,
            state=None if alert is None else alert.state.value,
            grade=None if alert is None else Grade(alert.grade).name,
        )
        for (index, risk), alert in zip(good, alerts, strict=True)
    ]
    result = {"taken": [t.model_dump() for t in taken], "refused": refused}
    if not refused:
        return result
    detail = "; ".join(f"events[{r['index']}] {', '.join(r['errors'])}" for r in refused)
    return problem(422, "Invalid request", f"{len(refused)} of {len(body.events)} events refused: {detail}", **result)
