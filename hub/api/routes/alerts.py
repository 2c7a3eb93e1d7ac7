"""``/api/v1/alerts``: list, read, and the call-response steps — acknowledge (接单), en route, on site, resolve,
verify, close, reopen — and the audit trail; every change is audited by the service."""

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal, cast

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import AwareDatetime, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts.message import kind_names, rule_name_zh
from alerts.model import OPEN_STATES, Alert, AlertState, Transition
from hub.api.deps import Authorized, CommunityWide, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.paging import LINKED, PageRequest, paged, paging
from hub.api.problems import service_errors
from hub.api.times import moment
from hub.api.visible import alert_in_view
from hub.identity import Principal
from hub.runtime import Runtime

router = APIRouter(tags=["alerts"], dependencies=[Authorized])


class AlertPublic(BaseModel):
    id: str
    key: str
    state: AlertState
    grade: str = Field(description="IV, III, II or I")
    grade_label_zh: str
    colour: str
    community: str
    grid: str
    sensor: str
    kind: str
    kind_zh: str
    kind_en: str
    location: str
    rule: str
    rule_zh: str
    source: str
    value: float
    unit: str
    threshold: float | None
    opened_at: datetime | None
    updated_at: datetime | None
    notified_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolved_note: str | None
    cleared_at: datetime | None
    escalation_level: int = Field(description="0: the grid's managers; n: the n-th level of the escalation chain")
    assigned_to: list[str] = Field(description="people it was handed to (指派), who see and may handle it")
    next_deadline: datetime | None = Field(
        description="when the alert's timer fires: escalation while open, a re-page while nobody is on site, "
        "reopening while resolved but still in alarm"
    )

    @classmethod
    def of(cls, alert: Alert) -> "AlertPublic":
        event = alert.last_event
        kind_zh, kind_en = kind_names(event)
        return cls(
            id=alert.id,
            key=alert.key,
            state=alert.state,
            grade=alert.grade.name,
            grade_label_zh=alert.grade.title_zh,
            colour=alert.grade.colour,
            community=alert.community,
            grid=alert.grid,
            sensor=event.sensor,
            kind=event.kind,
            kind_zh=kind_zh,
            kind_en=kind_en,
            location=event.location_zh,
            rule=event.rule,
            rule_zh=rule_name_zh(event),
            source=event.source,
            value=event.value,
            unit=event.unit,
            threshold=event.threshold,
            opened_at=moment(alert.opened_at_ms),
            updated_at=moment(alert.updated_at_ms),
            notified_at=moment(alert.notified_at_ms),
            acknowledged_by=alert.acknowledged_by,
            acknowledged_at=moment(alert.acknowledged_at_ms),
            resolved_by=alert.resolved_by,
            resolved_at=moment(alert.resolved_at_ms),
            resolved_note=alert.resolved_note,
            cleared_at=moment(alert.cleared_at_ms),
            escalation_level=alert.level,
            assigned_to=list(alert.assigned_to),
            next_deadline=moment(alert.escalate_at_ms),
        )


class AcknowledgeIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who takes the alert (接单)")


class ResolveIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=2000, description="what was found and done on site")


class StepIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who takes the step")
    note: str = Field(default="", max_length=2000)


class ReopenIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    note: str = Field(min_length=1, max_length=2000, description="why the fix did not hold")


class AssignIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who assigns it")
    to: str = Field(min_length=1, max_length=64, description="person id of who is to take it (paged at once)")
    note: str = Field(default="", max_length=2000)


class CommentIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


class TransitionPublic(BaseModel):
    from_state: AlertState | None
    to_state: AlertState
    by: str
    channel: str
    time: datetime | None
    note: str

    @classmethod
    def of(cls, t: Transition) -> "TransitionPublic":
        return cls(from_state=t.from_state, to_state=t.to_state, by=t.by, channel=t.channel, time=moment(t.time_ms),
                   note=t.note)  # fmt: skip


_ALERT_PAGES = paging("alerts", default=100, maximum=1000, shape=(int, str))


@router.get("/alerts", responses=LINKED)
async def list_alerts(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    state: AlertState | None = None,
    active: Annotated[bool, Query(description="only alerts still to handle (open … on site)")] = False,
    grade: Annotated[list[Literal["I", "II", "III", "IV"]] | None, Query(description="repeatable")] = None,
    grid: str | None = None,
    sensor: str | None = None,
    kind: str | None = None,
    since: Annotated[AwareDatetime | None, Query(description="opened at or after (with its UTC offset)")] = None,
    page: PageRequest = _ALERT_PAGES,
) -> list[AlertPublic]:
    """Alerts newest first, only those in the caller's scope (a grid manager's grids and escalations, a property
    company's buildings), narrowed by state (or ``active``), grades, grid, sensor, kind and opening time; paged
    with ``limit`` and ``cursor`` (the next page in the ``Link`` header)."""
    scope = principal.scope
    if scope.sees_no_alerts:
        return []
    grades = frozenset(grade or ())
    since_ms = None if since is None else round(since.timestamp() * 1000)
    filters = (grades, grid, sensor, kind, since_ms, active)

    def wanted(alert: Alert) -> bool:
        event = alert.last_event
        return (
            (scope.community_wide or scope.sees_alert(alert))
            and (not grades or alert.grade.name in grades)
            and (grid is None or alert.grid == grid)
            and (sensor is None or event.sensor == sensor)
            and (kind is None or event.kind == kind)
            and (since_ms is None or alert.opened_at_ms >= since_ms)
        )

    matching = None if scope.community_wide and not any(f for f in filters[:-1]) else wanted
    states = OPEN_STATES if active else None
    after = cast("tuple[int, str] | None", page.after)
    found = await runtime.alerts.list_alerts(
        state=state, states=states, limit=page.limit + 1, matching=matching, after=after
    )
    return [AlertPublic.of(a) for a in paged(request, response, page, found, lambda a: (a.opened_at_ms, a.id))]


@router.get("/alerts/{alert_id}")
async def get_alert(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str) -> AlertPublic:
    return AlertPublic.of(await alert_in_view(runtime, principal, alert_id))


class AcknowledgeManyIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who takes the alerts (接单)")
    ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        min_length=1, max_length=1000, description="alert ids, e.g. a digest's ``alert_ids``"
    )


class Refusal(BaseModel):
    id: str
    status: int = Field(description="404 no such alert, 409 its state does not allow it")
    detail: str


class AcknowledgeManyOut(BaseModel):
    acknowledged: list[AlertPublic]
    refused: list[Refusal]


@router.post("/alerts/acknowledge")
async def acknowledge_many(
    runtime: RuntimeDep, principal: CurrentPrincipal, body: AcknowledgeManyIn
) -> AcknowledgeManyOut:
    """Take several alerts at once — the alerts of a digest page after a storm — each audited on its own; an id that
    cannot be taken (unknown, already taken) is listed with why, and the others are taken all the same."""
    if len(set(body.ids)) != len(body.ids):
        raise HTTPException(422, "ids: an alert id is listed twice")
    taken: list[AlertPublic] = []
    refused: list[Refusal] = []
    for alert_id in body.ids:
        try:
            await alert_in_view(runtime, principal, alert_id)
            with service_errors("alert"):
                taken.append(
                    AlertPublic.of(
                        await runtime.alerts.acknowledge(alert_id, by=acting_as(principal, body.by), channel="api")
                    )
                )
        except StarletteHTTPException as exc:  # what service_errors raises
            refused.append(Refusal(id=alert_id, status=exc.status_code, detail=str(exc.detail)))
    return AcknowledgeManyOut(acknowledged=taken, refused=refused)


async def _acted(
    runtime: Runtime, principal: Principal, alert_id: str, by: str, act: Callable[[str], Awaitable[Alert]]
) -> AlertPublic:
    """A person's step on an alert in the caller's view (404 otherwise), recorded as them (``acting_as``: 403 for
    another's name), the service's refusals as problem details (``service_errors``)."""
    await alert_in_view(runtime, principal, alert_id)
    who = acting_as(principal, by)
    with service_errors("alert"):
        return AlertPublic.of(await act(who))


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(
    runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: AcknowledgeIn
) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.acknowledge(alert_id, by=by, channel="api"),
    )


@router.post("/alerts/{alert_id}/resolve")
async def resolve(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: ResolveIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.resolve(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/en-route")
async def en_route(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: StepIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.en_route(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/on-site")
async def on_site(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: StepIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.on_site(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/verify")
async def verify(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: StepIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.verify(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/close")
async def close(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: StepIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.close(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/reopen")
async def reopen(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: ReopenIn) -> AlertPublic:
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.reopen(alert_id, by=by, note=body.note, channel="api"),
    )


@router.post("/alerts/{alert_id}/assign")
async def assign(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: AssignIn) -> AlertPublic:
    """Hand an open alert to a person of the deployment (指派), who is paged with it; audited, state unchanged."""
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.assign(alert_id, person=body.to, by=by, channel="api", note=body.note),
    )


@router.post("/alerts/{alert_id}/comment")
async def comment(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: CommentIn) -> AlertPublic:
    """A note on the alert's record (audited; nobody paged)."""
    return await _acted(
        runtime,
        principal,
        alert_id,
        body.by,
        lambda by: runtime.alerts.comment(alert_id, by=by, channel="api", text=body.text),
    )


@router.get("/alerts/{alert_id}/transitions")
async def transitions(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str) -> list[TransitionPublic]:
    """The alert's audit trail, oldest first: every step, escalation and page with who, when and how."""
    await alert_in_view(runtime, principal, alert_id)
    return [TransitionPublic.of(t) for t in await runtime.alerts.transitions(alert_id)]


class ResponseStatsPublic(BaseModel):
    group: str = Field(description="the person who acknowledged (- for never), the grid or the community")
    alerts: int
    unacknowledged: int
    escalated: int = Field(description="alerts paged past the grid for want of an acknowledgement")
    acknowledge_p50_s: float | None
    acknowledge_p90_s: float | None
    on_site_p50_s: float | None
    on_site_p90_s: float | None
    resolve_p50_s: float | None
    resolve_p90_s: float | None


@router.get("/response-times", dependencies=[CommunityWide])
async def response_times(
    runtime: RuntimeDep,
    since: datetime,
    until: datetime | None = None,
    by: Literal["person", "grid", "community"] = "grid",
) -> list[ResponseStatsPublic]:
    """How fast alerts opened in [since, until) were acknowledged, reached on site and resolved, per group
    (median and 90th percentile in seconds): the performance figures of grid management (Articles 4 and 45)."""
    if since.tzinfo is None or (until is not None and until.tzinfo is None):
        raise HTTPException(422, "times need an offset (…+08:00 or …Z)")
    end = until or datetime.now().astimezone()
    if end <= since:
        raise HTTPException(422, "until must be after since")
    stats = await runtime.alerts.response_stats(
        since_ms=round(since.timestamp() * 1000), until_ms=round(end.timestamp() * 1000), by=by
    )
    return [ResponseStatsPublic(**dataclasses.asdict(s)) for s in stats]
