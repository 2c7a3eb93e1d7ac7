"""``GET /api/v1/community`` and ``/rosters``: how the community is laid out and who answers for it now.

The community with its grids (managers, who is on duty at this moment and why), buildings with their spaces, and
gateways (online or not), each with how many sensors it holds; and the duty rosters (team, shifts, who is on duty
now). Only what the caller's scope reaches: a grid manager sees their grids, a property company the buildings it
manages and the gateways serving them; community-wide roles everything.
"""

import time
from datetime import date, datetime
from datetime import time as clock

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from alerts.roster import Roster
from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.times import moment
from hub.identity import Scope
from hub.runtime import Runtime

router = APIRouter(tags=["community"], dependencies=[Authorized])


class PersonBrief(BaseModel):
    id: str
    name: str


class GridPublic(BaseModel):
    id: str
    name: str
    managers: list[PersonBrief]
    on_duty: list[PersonBrief] = Field(description="who is paged first at this moment")
    sensors: int


class BuildingPublic(BaseModel):
    id: str
    grids: list[str]
    spaces: list[str]
    sensors: int


class GatewayPublic(BaseModel):
    id: str
    location: str
    online: bool
    sensors: int


class CommunityPublic(BaseModel):
    id: str
    name: str
    name_en: str
    grids: list[GridPublic]
    buildings: list[BuildingPublic]
    gateways: list[GatewayPublic]


class ShiftPublic(BaseModel):
    name: str
    start: clock
    end: clock = Field(description="not after start: the shift runs past midnight")


class RosterPublic(BaseModel):
    id: str
    grids: list[str]
    team: list[PersonBrief]
    shifts: list[ShiftPublic]
    timezone: str
    fallback: list[PersonBrief]
    on_duty: list[PersonBrief]
    why: str = Field(description="the shift (with its date), holiday, override or fallback that puts them on duty")
    changes: list["DutyChangePublic"] = Field(
        default_factory=list,
        description="值班调整 / swaps and holidays made through the API, on top of the file's plan",
    )


class DutyChangePublic(BaseModel):
    day: date
    shift: str | None = Field(description="the shift given to someone else; null: a holiday (every shift of the day)")
    people: list[PersonBrief]
    by: str
    time: datetime = Field(description="when the change was made")
    note: str


def roster_public(runtime: Runtime, roster: Roster, now_ms: int) -> RosterPublic:
    """One roster as the API shows it: its plan, who is on duty at ``now_ms`` (Unix ms) and why, and its changes."""
    on_duty, why = roster.on_duty(now_ms)
    return RosterPublic(
        id=roster.id,
        grids=list(roster.grids),
        team=[_brief(runtime, p) for p in roster.team],
        shifts=[ShiftPublic(name=s.name, start=s.start, end=s.end) for s in roster.shifts],
        timezone=roster.timezone,
        fallback=[_brief(runtime, p) for p in roster.fallback],
        on_duty=[_brief(runtime, p) for p in on_duty],
        why=why,
        changes=[
            DutyChangePublic(
                day=c.day, shift=c.shift, people=[_brief(runtime, p) for p in c.people], by=c.by,
                time=moment(c.time_ms), note=c.note,
            )
            for c in runtime.duty.changes(roster.id)
        ],
    )  # fmt: skip


def _brief(runtime: Runtime, person_id: str) -> PersonBrief:
    person = runtime.directory.person(person_id)
    return PersonBrief(id=person_id, name=person.name if person is not None else person_id)


def _sensors_in_view(runtime: Runtime, scope: Scope) -> list[tuple[str, str, str | None, str | None]]:
    """(sensor, gateway, building, space) of every sensor the caller sees, with the grid looked up separately."""
    return [
        (sensor.id, gateway.id, sensor.building, sensor.space)
        for gateway, sensor in runtime.deployment.sensors()
        if scope.community_wide or sensor.id in scope.sensors
    ]


@router.get("/community")
async def community(runtime: RuntimeDep, principal: CurrentPrincipal) -> CommunityPublic:
    scope = principal.scope
    deployment = runtime.deployment
    grid_of = {info.id: info.grid for info in runtime.registry.by_id.values()}
    seen = _sensors_in_view(runtime, scope)
    now_ms = time.time_ns() // 1_000_000
    grids = []
    for grid in deployment.grids:
        count = sum(1 for sensor, *_ in seen if grid_of[sensor] == grid.id)
        if not (scope.community_wide or count or grid.id in scope.grids):
            continue
        grids.append(
            GridPublic(
                id=grid.id,
                name=grid.name,
                managers=[_brief(runtime, m) for m in grid.managers],
                on_duty=[PersonBrief(id=p.id, name=p.name) for p in runtime.directory.on_duty(grid.id, now_ms)],
                sensors=count,
            )
        )
    buildings: dict[str, tuple[set[str], set[str], int]] = {}
    gateways: dict[str, int] = {}
    for sensor, gateway, building, space in seen:
        gateways[gateway] = gateways.get(gateway, 0) + 1
        if building is not None:
            in_grids, spaces, count = buildings.get(building, (set(), set(), 0))
            in_grids.add(grid_of[sensor])
            if space is not None:
                spaces.add(space)
            buildings[building] = (in_grids, spaces, count + 1)
    return CommunityPublic(
        id=deployment.community.id,
        name=deployment.community.name,
        name_en=deployment.community.name_en,
        grids=grids,
        buildings=[
            BuildingPublic(id=b, grids=sorted(g), spaces=sorted(s), sensors=n)
            for b, (g, s, n) in sorted(buildings.items())
        ],
        gateways=[
            GatewayPublic(
                id=g.id, location=g.location, online=runtime.registry.gateways[g.id].online, sensors=gateways[g.id]
            )
            for g in deployment.gateways
            if g.id in gateways
        ],
    )


_ROSTER_PAGES = paging("rosters", default=100, maximum=1000, shape=(str,))


@router.get("/rosters", responses=LINKED)
async def rosters(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    page: PageRequest = _ROSTER_PAGES,
) -> list[RosterPublic]:
    """The duty rosters of the grids in view, each with who is on duty now and why; by id, paged with ``limit`` and
    ``cursor`` (the ``Link`` header)."""
    scope = principal.scope
    now_ms = time.time_ns() // 1_000_000
    seen = [
        roster
        for roster in runtime.directory.rosters
        if scope.community_wide or any(g in scope.grids or scope.sees_grid_sensors(g) for g in roster.grids)
    ]
    return [roster_public(runtime, r, now_ms) for r in page_of(request, response, page, seen, lambda r: (r.id,))]
