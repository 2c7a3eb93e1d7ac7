"""``/api/v1/incidents/{id}/…``: mobilisation in emergency mode (Art. 25–26) — notices to the residents of the area
through its broadcast receivers, the volunteers asked and their answers, measures for property companies and their
confirmations, and the printable summary for the sub-district."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import AwareDatetime, BaseModel, Field

from alerts.incident_summary import summary_html
from alerts.mobilisation import Answer, Callout, IncidentBoard, IncidentMessage, Measure, Notice, mobilised_skills
from hub.api.deps import Authorized, CommunityWide, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.problems import service_errors
from hub.api.times import moment
from hub.api.visible import IncidentInView

__all__ = ["MeasurePublic", "NoticePublic", "VolunteersPublic", "router"]

router = APIRouter(tags=["incidents"], dependencies=[Authorized, IncidentInView])


class NoticeIn(BaseModel):
    id: str | None = Field(
        default=None,
        pattern=r"^ntc-[a-z0-9-]{4,60}$",
        description="the caller's id for the notice, which makes sending it idempotent: sent again with the same id, "
        "the notice already sent is answered (200) and nothing goes out twice; with another text, 409",
    )
    by: str = Field(min_length=1, max_length=64)
    text_zh: str = Field(min_length=1, max_length=5000, description="Chinese first; at most 500 characters are sent")
    text_en: str = Field(default="", max_length=5000, description="English second; at most 1,000 characters")


class CallIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    volunteers: list[str] | None = Field(
        default=None, max_length=500, description="volunteer ids; none: every volunteer covering the area"
    )


class AnswerIn(BaseModel):
    answer: Answer
    by: str | None = Field(
        default=None, min_length=1, max_length=64, description="who records it; default: the volunteer"
    )
    note: str = Field(default="", max_length=2000)


class MeasureIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    department: str = Field(
        min_length=1, max_length=64, description="a department of the deployment (property company)"
    )
    text: str = Field(min_length=1, max_length=5000)
    due: AwareDatetime = Field(description="deadline, with its UTC offset")


class ConfirmIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="one of the department's people")
    note: str = Field(min_length=1, max_length=2000, description="what was done")


class DeliveryPublic(BaseModel):
    recipient_kind: str
    recipient: str
    recipient_name: str
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None

    @classmethod
    def of(cls, board: IncidentBoard, m: IncidentMessage) -> "DeliveryPublic":
        return cls(recipient_kind=m.recipient_kind, recipient=m.recipient_id, recipient_name=board.recipient_name(m),
                   status=m.status, attempts=m.attempts, last_error=m.last_error,
                   sent_at=moment(m.sent_ms))  # fmt: skip


class NoticePublic(BaseModel):
    id: str
    text_zh: str
    text_en: str
    by: str
    sent_at: datetime | None
    broadcasts: list[str]
    deliveries: list[DeliveryPublic]

    @classmethod
    def of(cls, board: IncidentBoard, n: Notice) -> "NoticePublic":
        return cls(id=n.id, text_zh=n.text_zh, text_en=n.text_en, by=n.by, sent_at=moment(n.sent_ms),
                   broadcasts=list(n.broadcasts),
                   deliveries=[DeliveryPublic.of(board, m) for m in board.deliveries(n.id)])  # fmt: skip


class VolunteerPublic(BaseModel):
    id: str
    name: str
    skills: list[str]
    asked_by: str
    asked_at: datetime | None
    answer: Answer | None
    answered_by: str | None
    answered_at: datetime | None
    note: str
    mobilised: bool

    @classmethod
    def of(cls, board: IncidentBoard, c: Callout) -> "VolunteerPublic":
        volunteer = board.volunteers.get(c.volunteer_id)
        return cls(id=c.volunteer_id, name=volunteer.name if volunteer else c.volunteer_id,
                   skills=list(volunteer.skills) if volunteer else [], asked_by=c.asked_by, asked_at=moment(c.asked_ms),
                   answer=c.answer, answered_by=c.answered_by, answered_at=moment(c.answered_ms), note=c.note,
                   mobilised=c.mobilised)  # fmt: skip


class VolunteersPublic(BaseModel):
    asked: int
    mobilised: int
    skills: dict[str, int] = Field(description="skills of the mobilised volunteers, how many have each")
    volunteers: list[VolunteerPublic]

    @classmethod
    def of(cls, board: IncidentBoard) -> "VolunteersPublic":
        return cls(asked=len(board.callouts), mobilised=len(board.mobilised()),
                   skills=mobilised_skills(board.callouts, board.volunteers),
                   volunteers=[VolunteerPublic.of(board, c) for c in board.callouts])  # fmt: skip


class MeasurePublic(BaseModel):
    id: str
    department: str
    department_name: str
    text: str
    due: datetime | None
    assigned_by: str
    assigned_at: datetime | None
    confirmed_by: str | None
    confirmed_at: datetime | None
    note: str
    overdue: bool
    deliveries: list[DeliveryPublic]

    @classmethod
    def of(cls, board: IncidentBoard, m: Measure) -> "MeasurePublic":
        department = board.departments.get(m.department)
        return cls(id=m.id, department=m.department, department_name=department.name if department else m.department,
                   text=m.text, due=moment(m.due_ms), assigned_by=m.assigned_by, assigned_at=moment(m.assigned_ms),
                   confirmed_by=m.confirmed_by, confirmed_at=moment(m.confirmed_ms), note=m.note,
                   overdue=m.overdue(board.now_ms),
                   deliveries=[DeliveryPublic.of(board, d) for d in board.deliveries(m.id)])  # fmt: skip


@router.post("/incidents/{incident_id}/notices", status_code=201, dependencies=[CommunityWide])
async def send_notice(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, body: NoticeIn, response: Response
) -> NoticePublic:
    """Send a notice to the residents of the incident's area through every broadcast receiver covering it."""
    by = acting_as(principal, body.by)
    with service_errors("incident"):
        if body.id is not None:
            board = await runtime.emergency.board(incident_id)
            sent = next((n for n in board.notices if n.id == body.id), None)
            if sent is not None:
                if (sent.text_zh, sent.text_en) != (body.text_zh.strip(), body.text_en.strip()):
                    raise HTTPException(409, f"通知编号 {body.id} 已用于另一通知 / notice id {body.id!r} is another "
                                        "notice's")  # fmt: skip
                response.status_code = 200
                return NoticePublic.of(board, sent)
        notice = await runtime.emergency.send_notice(incident_id, text_zh=body.text_zh, text_en=body.text_en, by=by,
                                                     notice_id=body.id)  # fmt: skip
        board = await runtime.emergency.board(incident_id)
    return NoticePublic.of(board, notice)


_NOTICE_PAGES = paging("notices", default=100, maximum=1000, shape=(int, str))
_MEASURE_PAGES = paging("measures", default=100, maximum=1000, shape=(int, str))


@router.get("/incidents/{incident_id}/notices", responses=LINKED)
async def notices(
    request: Request, response: Response, runtime: RuntimeDep, incident_id: str, page: PageRequest = _NOTICE_PAGES
) -> list[NoticePublic]:
    """The notices sent, oldest first, with each broadcast receiver's delivery status; paged with ``limit`` and
    ``cursor`` (the ``Link`` header)."""
    with service_errors("incident"):
        board = await runtime.emergency.board(incident_id)
    return [
        NoticePublic.of(board, n) for n in page_of(request, response, page, board.notices, lambda n: (n.sent_ms, n.id))
    ]


@router.post("/incidents/{incident_id}/volunteers/call", dependencies=[CommunityWide])
async def call_volunteers(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, body: CallIn
) -> VolunteersPublic:
    """Ask volunteers to join (those named, or every volunteer covering the area); nobody is asked twice."""
    with service_errors("incident"):
        await runtime.emergency.call_volunteers(
            incident_id, by=acting_as(principal, body.by), volunteers=body.volunteers
        )
        return VolunteersPublic.of(await runtime.emergency.board(incident_id))


@router.get("/incidents/{incident_id}/volunteers")
async def volunteers(runtime: RuntimeDep, incident_id: str) -> VolunteersPublic:
    """Who was asked, who answered what, and the skills of those mobilised."""
    with service_errors("incident"):
        return VolunteersPublic.of(await runtime.emergency.board(incident_id))


@router.post("/incidents/{incident_id}/volunteers/{volunteer_id}/answer")
async def answer(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, volunteer_id: str, body: AnswerIn
) -> VolunteerPublic:
    """A volunteer's answer: available or unavailable (a later answer replaces an earlier one)."""
    with service_errors("volunteer"):
        by = acting_as(principal, body.by or volunteer_id)
        callout = await runtime.emergency.answer(incident_id, volunteer_id, answer=body.answer, by=by, note=body.note)
        board = await runtime.emergency.board(incident_id)
    return VolunteerPublic.of(board, callout)


@router.post("/incidents/{incident_id}/measures", status_code=201, dependencies=[CommunityWide])
async def assign_measure(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, body: MeasureIn
) -> MeasurePublic:
    """Assign a measure with a deadline to a property company (its people are notified)."""
    due_ms = round(body.due.timestamp() * 1000)
    with service_errors("incident"):
        measure = await runtime.emergency.assign_measure(incident_id, department=body.department, text=body.text,
                                                         due_ms=due_ms, by=acting_as(principal, body.by))  # fmt: skip
        board = await runtime.emergency.board(incident_id)
    return MeasurePublic.of(board, measure)


@router.get("/incidents/{incident_id}/measures", responses=LINKED)
async def measures(
    request: Request, response: Response, runtime: RuntimeDep, incident_id: str, page: PageRequest = _MEASURE_PAGES
) -> list[MeasurePublic]:
    """The incident's measures, oldest first; ``overdue``: not confirmed by the deadline. Paged with ``limit`` and
    ``cursor`` (the ``Link`` header)."""
    with service_errors("incident"):
        board = await runtime.emergency.board(incident_id)
    return [
        MeasurePublic.of(board, m)
        for m in page_of(request, response, page, board.measures, lambda m: (m.assigned_ms, m.id))
    ]


@router.post("/incidents/{incident_id}/measures/{measure_id}/confirm")
async def confirm_measure(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, measure_id: str, body: ConfirmIn
) -> MeasurePublic:
    """One of the company's people confirms the measure, saying what was done (once)."""
    with service_errors("measure"):
        measure = await runtime.emergency.confirm_measure(
            incident_id, measure_id, by=acting_as(principal, body.by), note=body.note
        )
        board = await runtime.emergency.board(incident_id)
    return MeasurePublic.of(board, measure)


@router.get("/incidents/{incident_id}/summary.html", response_class=HTMLResponse)
async def summary_page(runtime: RuntimeDep, incident_id: str) -> HTMLResponse:
    """The printable summary for the sub-district (A4, Chinese first)."""
    with service_errors("incident"):
        board = await runtime.emergency.board(incident_id)
    names = {p.id: p.name for p in runtime.deployment.people} | {v.id: v.name for v in runtime.deployment.volunteers}
    return HTMLResponse(summary_html(board, timezone=runtime.emergency.timezone, names=names))
