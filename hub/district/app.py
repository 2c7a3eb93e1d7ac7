"""``create_district_app(settings)``: the district node's API (``/api/v1``), read-only over every community.

* ``GET /communities`` — each community in view at a glance: open alerts by grade, escalated and unacknowledged
  ones, active incidents and their households by status, its sub-district; or why it could not be read.
* ``GET /alerts`` — alerts across the communities in view, newest first, narrowed by community, grade and state,
  paged with ``limit`` and ``cursor`` as on a hub.
* ``GET /communities/{community}/alerts/{id}`` — one alert with its steps (who, when, through which channel).
* ``GET /communities/{community}/gateways`` — its gateways, offline first, as its hub publishes them.
* ``GET /incidents`` — emergencies declared in the communities in view, with households by status.
* ``/auth/login|refresh|logout`` as on a hub, and ``/auth/me`` with the communities in view.

A community out of the caller's view is answered as one that does not exist (404). A list answered without some
community — its state could not be read — says which in the ``Anju-Unavailable`` header, and ``/communities`` says
why. Acting on an alert is done on the community's own hub, which holds the lease: this node writes nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, cast

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from alerts.model import OPEN_STATES, AlertState, Grade
from hub.api.deps import Authorized, CurrentPrincipal
from hub.api.limits import BodyLimit
from hub.api.paging import LINKED, CursorKey, PageRequest, load_cursor_key, page_of, paged, paging
from hub.api.problems import install_problem_handlers
from hub.api.routes import auth
from hub.api.routes.alerts import AlertPublic, TransitionPublic
from hub.api.routes.auth import PrincipalOut
from hub.api.routes.incidents import IncidentPublic
from hub.api.times import moment
from hub.district import declaration_routes
from hub.district.declarations import Declarations, FanOut
from hub.district.deps import DistrictRuntime, RuntimeDep, chosen, in_view, say_unavailable
from hub.district.reader import DistrictReader, Position, Unavailable
from hub.district.scopes import DistrictScopes
from hub.district.settings import DISTRICT_SCHEMA, DistrictSettings
from hub.identity import IdentityStore
from hub.metrics import Counter
from hub.registry_mirror import GatewayRow
from hub.runtime import identity
from hub.shards import load_shard_map
from hub.web import DISTRICT_PAGES, DISTRICT_REDIRECTS, install_pages
from systemd_notify import serving

__all__ = ["create_district_app"]


class HealthOut(BaseModel):
    status: Literal["ok"]
    communities: int


class MeOut(PrincipalOut):
    communities: list[str] = Field(description="the communities in view")


class CommunityOut(BaseModel):
    id: str
    sub_district: str | None
    sub_district_name: str | None
    open_by_grade: dict[str, int] = Field(description="open alerts (open … on site) by grade, I to IV")
    escalated: int = Field(description="open alerts paged up the escalation chain")
    unacknowledged: int = Field(description="open alerts nobody has taken (接单) yet")
    active_incidents: int
    households: dict[str, int] = Field(description="households of the active incidents by status")
    unavailable: str | None = Field(description="why the community's state could not be read; null when it was")
    gateways: int | None = Field(description="its gateways, as its hub published them; null until it has")
    gateways_online: int | None = Field(description="of those, online now (null until published)")
    sensors: int | None = Field(description="its detectors (null until published)")


class GatewayOut(BaseModel):
    id: str
    location: str
    sensors: int = Field(description="detectors wired to it")
    online: bool
    changed_at: datetime = Field(description="when it last came online or went offline (as its hub saw it)")
    last_message_at: datetime | None = Field(description="its last message to the hub; null: none since the hub "
                                             "started")  # fmt: skip

    @classmethod
    def of(cls, row: GatewayRow) -> GatewayOut:
        return cls(id=row.id, location=row.location, sensors=row.sensors, online=row.online,
                   changed_at=moment(row.changed_ms), last_message_at=moment(row.last_message_ms))  # fmt: skip


class AlertDetailOut(AlertPublic):
    transitions: list[TransitionPublic]


class DistrictIncidentOut(IncidentPublic):
    community: str


router = APIRouter(tags=["district"], dependencies=[Authorized])
open_router = APIRouter(tags=["district"])

_ALERT_PAGES = paging("district-alerts", default=100, maximum=1000, shape=(int, str, str))
_INCIDENT_PAGES = paging("district-incidents", default=100, maximum=1000, shape=(int, str, str))


@open_router.get("/health")
async def health(runtime: RuntimeDep) -> HealthOut:
    """Liveness: the node is up (it reads no community here; ``/communities`` does)."""
    return HealthOut(status="ok", communities=len(runtime.reader.communities))


async def metrics(runtime: RuntimeDep, request: Request) -> PlainTextResponse:
    """The node's counters in the Prometheus text format (mounted at ``/metrics``, as on a hub)."""
    counters = (request.app.state.refused, runtime.reader.failures, runtime.fan_out.attempts)
    text = "\n".join(line for counter in counters for line in counter.render()) + "\n"
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/auth/me")
async def me(principal: CurrentPrincipal, runtime: RuntimeDep) -> MeOut:
    return MeOut(**PrincipalOut.fields_of(principal), communities=in_view(runtime, principal))


@router.get("/communities")
async def communities(runtime: RuntimeDep, principal: CurrentPrincipal, response: Response) -> list[CommunityOut]:
    """Every community in view at a glance, by id."""
    statuses = await runtime.reader.statuses(in_view(runtime, principal))
    say_unavailable(response, [Unavailable(s.community, s.unavailable) for s in statuses if s.unavailable])
    out = []
    for status in statuses:
        key, name = runtime.sub_district_of(status.community)
        fields = {f: getattr(status, f) for f in CommunityOut.model_fields if hasattr(status, f)}
        out.append(CommunityOut(id=status.community, sub_district=key, sub_district_name=name, **fields))
    return out


@router.get("/communities/{community}/gateways")
async def gateways(runtime: RuntimeDep, principal: CurrentPrincipal, community: str) -> list[GatewayOut]:
    """The community's gateways, offline first: where each is, its detectors, since when it is online or not, and
    its last message — as the hub holding the community's lease publishes them (within a second of a change)."""
    if community not in in_view(runtime, principal):
        raise HTTPException(404, f"没有社区 {community} / no community {community!r}")
    try:
        rows = await runtime.reader.gateways(community)
    except Unavailable as exc:
        raise HTTPException(
            503, f"社区 {community} 的设备登记暂时无法读取 / {exc}", headers={"Retry-After": "5"}
        ) from None
    if rows is None:
        raise HTTPException(
            503, f"社区 {community} 的枢纽尚未发布设备登记 / {community}: its hub has not published its registry yet",
            headers={"Retry-After": "30"},
        )  # fmt: skip
    return [GatewayOut.of(row) for row in rows]


@router.get("/alerts", responses=LINKED)
async def alerts(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    community: Annotated[list[str] | None, Query(description="repeatable; default: every community in view")] = None,
    state: AlertState | None = None,
    active: Annotated[bool, Query(description="only alerts still to handle (open … on site)")] = False,
    grade: Annotated[list[Literal["I", "II", "III", "IV"]] | None, Query(description="repeatable")] = None,
    page: PageRequest = _ALERT_PAGES,
) -> list[AlertPublic]:
    """Alerts of the communities in view, newest first (each names its ``community``); ``Anju-Unavailable`` names
    the communities that could not be read for this page."""
    wanted = chosen(runtime, principal, community)
    states: frozenset[AlertState] | None = frozenset(OPEN_STATES) if active else None
    if state is not None:
        states = frozenset({state}) if states is None else states & {state}
    found, missing = await runtime.reader.alerts(
        wanted,
        limit=page.limit + 1,
        after=cast("Position | None", page.after),
        states=states,
        grades=[Grade[g] for g in grade or ()],
    )
    say_unavailable(response, missing)
    shown = paged(request, response, page, found, lambda pair: (pair[1].opened_at_ms, pair[0], pair[1].id))
    return [AlertPublic.of(alert) for _, alert in shown]


@router.get("/communities/{community}/alerts/{alert_id}")
async def alert(runtime: RuntimeDep, principal: CurrentPrincipal, community: str, alert_id: str) -> AlertDetailOut:
    """One alert and its steps, oldest first."""
    if community not in in_view(runtime, principal):
        raise HTTPException(404, f"没有社区 {community} / no community {community!r}")
    try:
        found = await runtime.reader.alert(community, alert_id)
    except Unavailable as exc:
        raise HTTPException(503, f"社区 {community} 暂时无法读取 / {exc}", headers={"Retry-After": "5"}) from None
    if found is None:
        raise HTTPException(404, f"没有告警 {alert_id} / no alert {alert_id!r} in {community}")
    record, steps = found
    return AlertDetailOut(**AlertPublic.of(record).model_dump(), transitions=[TransitionPublic.of(t) for t in steps])


@router.get("/incidents", responses=LINKED)
async def incidents(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    community: Annotated[list[str] | None, Query(description="repeatable; default: every community in view")] = None,
    active_only: bool = False,
    page: PageRequest = _INCIDENT_PAGES,
) -> list[DistrictIncidentOut]:
    """Emergencies (应急事件) of the communities in view, newest declared first, with households by status."""
    rows, missing = await runtime.reader.incidents(chosen(runtime, principal, community), active_only=active_only)
    say_unavailable(response, missing)
    shown = page_of(request, response, page, rows, lambda row: (-row[1].declared_ms, row[0], row[1].id))
    return [
        DistrictIncidentOut(**IncidentPublic.of(incident, counts).model_dump(), community=name)
        for name, incident, counts in shown
    ]


def _cursor_key(data_dir: Path) -> CursorKey:
    data_dir.mkdir(parents=True, exist_ok=True)
    return load_cursor_key(data_dir)


def create_district_app(settings: DistrictSettings) -> FastAPI:
    """The district node: logins of its own users (schema ``anju_district``; ``anju-hub users --shard-map``), and
    every community of the shard map read from its schema. Nothing is opened before the app starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.alerts_url
        assert url is not None  # DistrictSettings requires it
        shards = await asyncio.to_thread(load_shard_map, settings.shard_map, check_deployments=False)
        store = await asyncio.to_thread(IdentityStore, url, schema=DISTRICT_SCHEMA)
        reader = await asyncio.to_thread(DistrictReader, url, shards.communities)
        declarations = await asyncio.to_thread(Declarations, url, schema=DISTRICT_SCHEMA)
        fan_out = FanOut(declarations, shards, database_url=url, hub_token=settings.hub_token_value,
                         hub_url_template=settings.hub_url_template)  # fmt: skip
        handing = asyncio.create_task(fan_out.run(), name="district-fan-out")
        try:
            scopes = DistrictScopes(shards)
            app.state.runtime = DistrictRuntime(shards, identity(settings, scopes, store), reader, fan_out)
            app.state.cursor_key = await asyncio.to_thread(_cursor_key, settings.data_dir)
            async with serving("district-systemd-watchdog"):
                yield
        finally:
            handing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await handing
            declarations.close()
            reader.close()
            store.close()

    app = FastAPI(
        title="Anju 安居 district API",
        version="1",
        description="区/街道视图 — every community's alerts and incidents, read-only, for the district emergency "
        "office and the sub-districts.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.refused = Counter("anju_district_api_refused_total", "API requests refused before any route, by reason.")
    install_problem_handlers(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.api_max_body_bytes,
        refused=lambda: app.state.refused.inc(reason="body_too_large"),
    )
    for module_router in (open_router, auth.router, router, declaration_routes.router):
        app.include_router(module_router, prefix="/api/v1")
    app.add_api_route("/metrics", metrics, methods=["GET"], response_class=PlainTextResponse, include_in_schema=False)
    install_pages(app, DISTRICT_PAGES, DISTRICT_REDIRECTS)
    return app
