"""``/api/v1/silences``: maintenance windows (a property company testing its detectors); set, list, lift; audited.

Community-wide roles silence anything a silence can name. A property company silences its own detectors: a window
names sensors, every one in the buildings it manages (another's is 404, as if it did not exist), optionally
narrowed by kind, and no grid or key prefix (those reach past its buildings); it sees and lifts only windows on its
own detectors. Other roles may not use silences (403).
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field, model_validator

from alerts.silence import Silence, SilenceMatch
from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep, acting_as, requires
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.problems import service_errors
from hub.api.times import moment
from hub.identity import COMMUNITY_WIDE, Principal, Role

router = APIRouter(
    tags=["silences"], dependencies=[Authorized, Depends(requires(*COMMUNITY_WIDE, Role.PROPERTY_COMPANY))]
)

Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=500)]


class SilenceIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who sets it")
    reason: str = Field(min_length=1, max_length=500, description="why, e.g. 2栋烟感年度测试")
    ends_at: datetime = Field(description="when the window ends (ISO 8601 with offset); at most 7 days after start")
    starts_at: datetime | None = Field(default=None, description="when it begins (default now)")
    sensors: Names = Field(default_factory=list)
    kinds: Names = Field(default_factory=list)
    grids: Names = Field(default_factory=list)
    key_prefixes: Names = Field(default_factory=list)
    include_grade_ii: bool = False

    @model_validator(mode="after")
    def _aware(self) -> "SilenceIn":
        for given in (self.ends_at, self.starts_at):
            if given is not None and given.tzinfo is None:
                raise ValueError("times need an offset (…+08:00 or …Z)")
        return self


class SilencePublic(BaseModel):
    id: str
    sensors: list[str]
    kinds: list[str]
    grids: list[str]
    key_prefixes: list[str]
    include_grade_ii: bool
    starts_at: datetime
    ends_at: datetime
    created_by: str
    created_at: datetime
    reason: str
    lifted_by: str | None
    lifted_at: datetime | None
    muted: int = Field(description="events muted so far")

    @classmethod
    def of(cls, silence: Silence) -> "SilencePublic":
        match = silence.match
        return cls(
            id=silence.id,
            sensors=list(match.sensors),
            kinds=list(match.kinds),
            grids=list(match.grids),
            key_prefixes=list(match.key_prefixes),
            include_grade_ii=match.include_grade_ii,
            starts_at=moment(silence.starts_at_ms),
            ends_at=moment(silence.ends_at_ms),
            created_by=silence.created_by,
            created_at=moment(silence.created_ms),
            reason=silence.reason,
            lifted_by=silence.cancelled_by,
            lifted_at=None if silence.cancelled_ms is None else moment(silence.cancelled_ms),
            muted=silence.muted,
        )


class LiftIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _in_view(principal: Principal, silence: Silence) -> bool:
    """Community-wide roles see every window; a property company those on its own detectors only."""
    scope = principal.scope
    match = silence.match
    return scope.community_wide or (
        bool(match.sensors) and not match.grids and not match.key_prefixes and set(match.sensors) <= scope.sensors
    )


def _check_own_detectors(principal: Principal, body: SilenceIn) -> None:
    scope = principal.scope
    if scope.community_wide:
        return
    if body.grids or body.key_prefixes or not body.sensors:
        raise HTTPException(
            422,
            "物业只能静默本公司管理楼栋的探测器：请列出 sensors / a property company silences its own detectors: "
            "name them in sensors (grids and key_prefixes reach past its buildings)",
        )
    unknown = [sensor for sensor in body.sensors if sensor not in scope.sensors]
    if unknown:
        raise HTTPException(404, f"no sensor {', '.join(repr(s) for s in unknown[:5])} in this deployment")


@router.post("/silences", status_code=201)
async def set_silence(runtime: RuntimeDep, principal: CurrentPrincipal, body: SilenceIn) -> SilencePublic:
    _check_own_detectors(principal, body)
    with service_errors("silence"):
        match = SilenceMatch(
            sensors=tuple(body.sensors),
            kinds=tuple(body.kinds),
            grids=tuple(body.grids),
            key_prefixes=tuple(body.key_prefixes),
            include_grade_ii=body.include_grade_ii,
        )
        silence = await runtime.alerts.silence(
            match,
            by=acting_as(principal, body.by),
            reason=body.reason,
            ends_at_ms=_ms(body.ends_at),
            starts_at_ms=None if body.starts_at is None else _ms(body.starts_at),
        )
    return SilencePublic.of(silence)


_SILENCE_PAGES = paging("silences", default=100, maximum=1000, shape=(int, str))


@router.get("/silences", responses=LINKED)
async def list_silences(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    running: Annotated[bool, Query()] = False,
    page: PageRequest = _SILENCE_PAGES,
) -> list[SilencePublic]:
    """Newest first, or (``running``) the soonest started first; paged with ``limit`` and ``cursor`` (``Link``)."""
    silences = [s for s in await runtime.alerts.list_silences(running=running) if _in_view(principal, s)]

    def key(s: Silence) -> tuple[int, str]:
        return (s.starts_at_ms, s.id) if running else (-s.created_ms, s.id)

    return [SilencePublic.of(s) for s in page_of(request, response, page, silences, key)]


@router.post("/silences/{silence_id}/lift")
async def lift_silence(
    runtime: RuntimeDep, principal: CurrentPrincipal, silence_id: str, body: LiftIn
) -> SilencePublic:
    running = {s.id: s for s in await runtime.alerts.list_silences(running=True)}
    if silence_id in running and not _in_view(principal, running[silence_id]):
        raise HTTPException(404, f"no running silence {silence_id!r}")
    lifted = await runtime.alerts.lift_silence(silence_id, by=acting_as(principal, body.by))
    if lifted is None:
        raise HTTPException(404, f"no running silence {silence_id!r}")
    return SilencePublic.of(lifted)
