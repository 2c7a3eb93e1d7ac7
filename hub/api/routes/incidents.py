"""``/api/v1/incidents``: emergency mode (Art. 25) — declare an incident for an area (its volunteers asked to join),
collect and verify each household's status, export the register (CSV) and its counts, close it. The board
(``GET /incidents/{id}``) also shows the notices sent, the volunteers and the measures (routes/mobilisation.py)."""

from datetime import datetime

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from alerts.incidents import HouseholdStatus, Incident, IncidentKind, ResidentReport, export_csv, summary
from hub.api.deps import Authorized, CommunityWide, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.problems import service_errors
from hub.api.routes.mobilisation import MeasurePublic, NoticePublic, VolunteersPublic
from hub.api.times import moment
from hub.api.visible import IncidentInView

router = APIRouter(tags=["incidents"], dependencies=[Authorized, IncidentInView])


class DeclareIn(BaseModel):
    id: str | None = Field(
        default=None,
        pattern=r"^inc-[a-z0-9-]{4,60}$",
        description="the caller's id for the incident, which makes declaring it idempotent: declared again with the "
        "same id and the same kind, title and area, the incident is answered as it is (200); with another, 409. The "
        "district node declares one incident under one id in each of its communities. Omitted: a new id.",
    )
    by: str = Field(min_length=1, max_length=64)
    kind: IncidentKind
    title: str = Field(min_length=1, max_length=500)
    grids: list[str] = Field(default_factory=list, max_length=200, description="empty: the whole community")
    buildings: list[str] = Field(
        default_factory=list, max_length=200, description="only these buildings of the area (the deployment's ids)"
    )
    fields: list[str] = Field(default_factory=list, max_length=20, description="an epidemic's required fields")
    mobilise: bool = Field(default=True, description="ask the volunteers covering the area to join at once")


class ReportIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    household: str = Field(min_length=1, max_length=64, description="building and flat, e.g. 2栋502")
    status: HouseholdStatus
    note: str = Field(default="", max_length=2000)
    values: dict[str, str] = Field(default_factory=dict, max_length=20)


class ByIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=2000)


class ReportPublic(BaseModel):
    household: str
    status: HouseholdStatus
    note: str
    values: dict[str, str]
    reported_by: str
    reported_at: datetime
    verified_by: str | None
    verified_at: datetime | None

    @classmethod
    def of(cls, r: ResidentReport) -> "ReportPublic":
        return cls(household=r.household, status=r.status, note=r.note, values=dict(r.values),
                   reported_by=r.reported_by, reported_at=moment(r.reported_ms), verified_by=r.verified_by,
                   verified_at=None if r.verified_ms is None else moment(r.verified_ms))  # fmt: skip


class IncidentPublic(BaseModel):
    id: str
    kind: str
    title: str
    grids: list[str]
    buildings: list[str]
    fields: list[str]
    declared_by: str
    declared_at: datetime
    active: bool
    closed_at: datetime | None
    alerts: list[str]
    counts: dict[str, int] | None = None
    volunteers: VolunteersPublic | None = None
    notices: list[NoticePublic] | None = None
    measures: list[MeasurePublic] | None = None
    overdue_measures: list[str] | None = None

    @classmethod
    def of(cls, incident: Incident, counts: dict[str, int] | None = None) -> "IncidentPublic":
        return cls(id=incident.id, kind=incident.kind, title=incident.title, grids=list(incident.grids),
                   buildings=list(incident.buildings), fields=list(incident.fields), declared_by=incident.declared_by,
                   declared_at=moment(incident.declared_ms), active=incident.active,
                   closed_at=None if incident.closed_ms is None else moment(incident.closed_ms),
                   alerts=list(incident.alerts), counts=counts)  # fmt: skip


@router.post("/incidents", status_code=201, dependencies=[CommunityWide])
async def declare(
    runtime: RuntimeDep, principal: CurrentPrincipal, body: DeclareIn, response: Response
) -> IncidentPublic:
    known = {sensor.building for _, sensor in runtime.deployment.sensors() if sensor.building}
    unknown = [b for b in body.buildings if b not in known]
    if unknown:
        raise HTTPException(422, f"buildings: no sensor of this deployment is in {', '.join(unknown)}")
    by = acting_as(principal, body.by)
    if body.id is not None:
        existing = await runtime.alerts.incident(body.id)
        if existing is not None:
            asked = (body.kind, body.title, tuple(body.grids), tuple(body.buildings), tuple(body.fields))
            if asked != (existing.kind, existing.title, existing.grids, existing.buildings, existing.fields):
                raise HTTPException(409, f"事件编号 {body.id} 已用于另一事件 / incident id {body.id!r} is another "
                                    "incident's (another kind, title or area)")  # fmt: skip
            response.status_code = 200
            return IncidentPublic.of(existing)
    with service_errors("incident"):
        incident = await runtime.alerts.declare_incident(
            community=runtime.registry.community, kind=body.kind, title=body.title, by=by,
            grids=body.grids, buildings=body.buildings, fields=body.fields, incident_id=body.id,
        )  # fmt: skip
        if not body.mobilise:
            return IncidentPublic.of(incident)
        await runtime.emergency.call_volunteers(incident.id, by=acting_as(principal, body.by))
        board = await runtime.emergency.board(incident.id)
    return IncidentPublic.of(incident).model_copy(update={"volunteers": VolunteersPublic.of(board)})


_INCIDENT_PAGES = paging("incidents", default=100, maximum=1000, shape=(int, str))
_HOUSEHOLD_PAGES = paging("households", default=1000, maximum=5000, shape=(str,))


@router.get("/incidents", responses=LINKED)
async def list_incidents(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    active_only: bool = False,
    page: PageRequest = _INCIDENT_PAGES,
) -> list[IncidentPublic]:
    """Incidents in the caller's view: the whole community's, and those of their grids or buildings; newest
    declared first, paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    incidents = [i for i in await runtime.alerts.incidents(active_only=active_only) if principal.scope.sees_incident(i)]
    return [IncidentPublic.of(i) for i in page_of(request, response, page, incidents, lambda i: (-i.declared_ms, i.id))]


@router.get("/incidents/{incident_id}")
async def get_incident(runtime: RuntimeDep, incident_id: str) -> IncidentPublic:
    """The incident board: the incident, its alerts, the households counted by status, the volunteers (who is
    mobilised, with skills), the notices sent and the measures (``overdue_measures``: not confirmed in time)."""
    with service_errors("incident"):
        board = await runtime.emergency.board(incident_id)
    return IncidentPublic.of(board.incident, summary(board.reports)).model_copy(
        update={
            "volunteers": VolunteersPublic.of(board),
            "notices": [NoticePublic.of(board, n) for n in board.notices],
            "measures": [MeasurePublic.of(board, m) for m in board.measures],
            "overdue_measures": [m.id for m in board.overdue()],
        }
    )


@router.post("/incidents/{incident_id}/households")
async def report(runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, body: ReportIn) -> ReportPublic:
    with service_errors("incident"):
        return ReportPublic.of(await runtime.alerts.report_household(
            incident_id, household=body.household, status=body.status, by=acting_as(principal, body.by),
            note=body.note, values=body.values,
        ))  # fmt: skip


@router.get("/incidents/{incident_id}/households", responses=LINKED)
async def households(
    request: Request, response: Response, runtime: RuntimeDep, incident_id: str, page: PageRequest = _HOUSEHOLD_PAGES
) -> list[ReportPublic]:
    """By household; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    with service_errors("incident"):
        _, reports = await runtime.alerts.incident_register(incident_id)
    return [ReportPublic.of(r) for r in page_of(request, response, page, reports, lambda r: (r.household,))]


@router.post("/incidents/{incident_id}/households/{household}/verify")
async def verify(
    runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, household: str, body: ByIn
) -> ReportPublic:
    with service_errors("incident"):
        return ReportPublic.of(
            await runtime.alerts.verify_household(incident_id, household=household, by=acting_as(principal, body.by))
        )


@router.get("/incidents/{incident_id}/export.csv")
async def export(runtime: RuntimeDep, incident_id: str) -> Response:
    """The register as CSV for the sub-district (UTF-8 with a BOM, one row per household)."""
    with service_errors("incident"):
        incident, reports = await runtime.alerts.incident_register(incident_id)
    text = export_csv(incident, reports, lambda ms: moment(ms).isoformat(timespec="seconds"))
    headers = {"Content-Disposition": f'attachment; filename="{incident_id}.csv"'}
    return Response(text.encode("utf-8"), media_type="text/csv; charset=utf-8", headers=headers)


@router.post("/incidents/{incident_id}/close", dependencies=[CommunityWide])
async def close(runtime: RuntimeDep, principal: CurrentPrincipal, incident_id: str, body: ByIn) -> IncidentPublic:
    with service_errors("incident"):
        return IncidentPublic.of(
            await runtime.alerts.close_incident(incident_id, by=acting_as(principal, body.by), note=body.note)
        )
