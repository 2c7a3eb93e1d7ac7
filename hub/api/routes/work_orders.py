"""Work orders (协同整治): dispatched from an alert to a department, accepted, done with evidence, verified."""

from datetime import datetime
from typing import Literal, cast

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from alerts.model import Alert
from alerts.work_orders import Evidence, WorkOrder, WorkOrderState
from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.paging import LINKED, PageRequest, paged, paging
from hub.api.problems import service_errors
from hub.api.times import moment
from hub.api.visible import alert_in_view, work_order_in_view

router = APIRouter(tags=["work orders"], dependencies=[Authorized])

STEP_TO_STATE: dict[str, WorkOrderState] = {
    "accept": WorkOrderState.ACCEPTED,
    "done": WorkOrderState.DONE,
    "verify": WorkOrderState.VERIFIED,
    "reject": WorkOrderState.DISPATCHED,
    "cancel": WorkOrderState.CANCELLED,
}


class DispatchIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    department: str = Field(min_length=1, max_length=64, description="a department id of the deployment")
    task: str = Field(min_length=1, max_length=2000)
    due_at: datetime = Field(description="deadline, ISO 8601 with offset")


class EvidenceIn(BaseModel):
    phase: Literal["before", "after"]
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://\S+$")
    note: str = Field(default="", max_length=500)


class StepIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)
    evidence: list[EvidenceIn] = Field(default_factory=list, max_length=20)


class EvidencePublic(BaseModel):
    phase: str
    url: str
    by: str
    time: datetime
    note: str


class WorkOrderPublic(BaseModel):
    id: str
    alert_id: str
    department: str
    task: str
    state: WorkOrderState
    due_at: datetime
    created_by: str
    created_at: datetime
    updated_at: datetime
    evidence: list[EvidencePublic]

    @classmethod
    def of(cls, order: WorkOrder) -> "WorkOrderPublic":
        return cls(
            id=order.id,
            alert_id=order.alert_id,
            department=order.department,
            task=order.task,
            state=order.state,
            due_at=moment(order.due_ms),
            created_by=order.created_by,
            created_at=moment(order.created_ms),
            updated_at=moment(order.updated_ms),
            evidence=[
                EvidencePublic(phase=e.phase, url=e.url, by=e.by, time=moment(e.time_ms), note=e.note)
                for e in order.evidence
            ],
        )


@router.post("/alerts/{alert_id}/work-orders", status_code=201)
async def dispatch(
    runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str, body: DispatchIn
) -> WorkOrderPublic:
    await alert_in_view(runtime, principal, alert_id)
    if body.due_at.tzinfo is None:
        raise HTTPException(422, "due_at needs an offset (…+08:00 or …Z)")
    with service_errors("work order or alert"):
        order = await runtime.alerts.dispatch(
            alert_id,
            department=body.department,
            task=body.task,
            due_ms=round(body.due_at.timestamp() * 1000),
            by=acting_as(principal, body.by),
            channel="api",
        )
    return WorkOrderPublic.of(order)


@router.get("/alerts/{alert_id}/work-orders")
async def list_work_orders(runtime: RuntimeDep, principal: CurrentPrincipal, alert_id: str) -> list[WorkOrderPublic]:
    await alert_in_view(runtime, principal, alert_id)
    return [WorkOrderPublic.of(order) for order in await runtime.alerts.work_orders(alert_id)]


class WorkOrderListed(WorkOrderPublic):
    alert_grade: str
    alert_kind: str
    alert_sensor: str
    alert_location: str


_ORDER_PAGES = paging("work-orders", default=200, maximum=1000, shape=(int, str))
_SCAN_BATCH = 500
"""Orders read per query while a scoped caller's page fills (most of them may be out of its view)."""


@router.get("/work-orders", responses=LINKED)
async def all_work_orders(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    open_only: bool = False,
    page: PageRequest = _ORDER_PAGES,
) -> list[WorkOrderListed]:
    """Work orders newest first, each with what its alert is about, only those in the caller's view (sent to the
    caller's department, or of an alert it sees); ``open_only``: still dispatched, accepted or done (not verified or
    cancelled) — a property company's maintenance list. Paged with ``limit`` and ``cursor`` (``Link`` header)."""
    scope = principal.scope
    after = cast("tuple[int, str] | None", page.after)
    found: list[tuple[WorkOrder, Alert]] = []
    while len(found) <= page.limit:
        batch = await runtime.alerts.list_work_orders(
            open_only=open_only, limit=page.limit + 1 if scope.community_wide else _SCAN_BATCH, after=after
        )
        found += [(o, a) for o, a in batch if scope.community_wide or scope.sees_work_order(o, a)]
        if scope.community_wide or len(batch) < _SCAN_BATCH:
            break
        after = (batch[-1][0].created_ms, batch[-1][0].id)
    shown = paged(request, response, page, found[: page.limit + 1], lambda pair: (pair[0].created_ms, pair[0].id))
    return [
        WorkOrderListed(
            **WorkOrderPublic.of(order).model_dump(),
            alert_grade=alert.grade.name,
            alert_kind=alert.last_event.kind,
            alert_sensor=alert.last_event.sensor,
            alert_location=alert.last_event.location_zh,
        )
        for order, alert in shown
    ]


@router.post("/work-orders/{order_id}/{step}")
async def work_order_step(
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    order_id: str,
    step: Literal["accept", "done", "verify", "reject", "cancel"],
    body: StepIn,
) -> WorkOrderPublic:
    """accept, done (with an "after" evidence link), verify, reject (back to the department) or cancel."""
    await work_order_in_view(runtime, principal, order_id)
    with service_errors("work order or alert"):
        now_ms = round(datetime.now().timestamp() * 1000)
        evidence = [
            Evidence(phase=e.phase, url=e.url, by=acting_as(principal, body.by), time_ms=now_ms, note=e.note)
            for e in body.evidence
        ]
        order = await runtime.alerts.work_order_step(
            order_id,
            STEP_TO_STATE[step],
            by=acting_as(principal, body.by),
            channel="api",
            note=body.note,
            evidence=evidence,
        )
    return WorkOrderPublic.of(order)
