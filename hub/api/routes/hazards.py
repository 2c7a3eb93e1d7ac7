"""``/api/v1/hazards``: the hazard register (隐患台账) — register a recurring hazard, review it, close it."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from alerts.hazards import Hazard, HazardState
from alerts.model import Grade
from hub.api.deps import CommunityWide, CurrentPrincipal, RuntimeDep, acting_as
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.problems import service_errors
from hub.api.times import moment

router = APIRouter(tags=["hazards"], dependencies=[CommunityWide])


class HazardIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    grid: str = Field(min_length=1, max_length=64)
    place: str = Field(min_length=1, max_length=200, description="where, e.g. 2栋1层电动车充电走廊")
    title: str = Field(min_length=1, max_length=500)
    grade: str = Field(pattern="^(I|II|III|IV)$")
    owner: str = Field(min_length=1, max_length=64, description="person id responsible for it")
    alerts: list[str] = Field(default_factory=list, max_length=100, description="ids of the alerts that showed it")


class ReviewIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    finding: str = Field(min_length=1, max_length=2000)
    close: bool = Field(default=False, description="the hazard is removed for good")


class HazardPublic(BaseModel):
    id: str
    grid: str
    place: str
    title: str
    grade: str
    owner: str
    state: HazardState
    next_review: datetime
    last_review: datetime | None
    last_finding: str
    alerts: list[str]
    review_overdue: bool

    @classmethod
    def of(cls, hazard: Hazard, now_ms: int) -> "HazardPublic":
        return cls(
            id=hazard.id,
            grid=hazard.grid,
            place=hazard.place,
            title=hazard.title,
            grade=hazard.grade.name,
            owner=hazard.owner,
            state=hazard.state,
            next_review=moment(hazard.next_review_ms),
            last_review=None if hazard.last_review_ms is None else moment(hazard.last_review_ms),
            last_finding=hazard.last_finding,
            alerts=list(hazard.alerts),
            review_overdue=hazard.state is HazardState.OPEN and hazard.next_review_ms <= now_ms,
        )


def _now_ms() -> int:
    return round(datetime.now().timestamp() * 1000)


@router.post("/hazards", status_code=201)
async def register(runtime: RuntimeDep, principal: CurrentPrincipal, body: HazardIn) -> HazardPublic:
    with service_errors("hazard"):
        hazard = await runtime.alerts.register_hazard(
            community=runtime.registry.community,
            grid=body.grid,
            place=body.place,
            title=body.title,
            grade=Grade[body.grade],
            owner=body.owner,
            by=acting_as(principal, body.by),
            channel="api",
            alerts=body.alerts,
        )
    return HazardPublic.of(hazard, _now_ms())


_HAZARD_PAGES = paging("hazards", default=100, maximum=1000, shape=(int, str))


@router.get("/hazards", responses=LINKED)
async def list_hazards(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    open_only: Annotated[bool, Query()] = False,
    page: PageRequest = _HAZARD_PAGES,
) -> list[HazardPublic]:
    """The register, soonest review first; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    now = _now_ms()
    found = await runtime.alerts.hazards(open_only=open_only)
    return [
        HazardPublic.of(h, now) for h in page_of(request, response, page, found, lambda h: (h.next_review_ms, h.id))
    ]


@router.post("/hazards/{hazard_id}/review")
async def review(runtime: RuntimeDep, principal: CurrentPrincipal, hazard_id: str, body: ReviewIn) -> HazardPublic:
    with service_errors("hazard"):
        hazard = await runtime.alerts.review_hazard(
            hazard_id, by=acting_as(principal, body.by), channel="api", finding=body.finding, close=body.close
        )
    return HazardPublic.of(hazard, _now_ms())
