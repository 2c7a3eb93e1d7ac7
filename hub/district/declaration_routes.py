"""``/api/v1/declarations``: one incident declared in several communities at once (hub/district/declarations.py).

``POST`` declares it — the emergency office or an admin in any communities, a sub-district in its own — and tries
each community's hub at once; those that could not take it yet are retried in the background. ``GET`` of one is
the board across communities: where it is declared, pending (why) or refused, and each community's households by
status, with their sum; ``households.csv`` exports every community's register in one file for the sub-district.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from alerts.incident_summary import district_summary_html
from alerts.incidents import HouseholdStatus, IncidentKind, ResidentReport, register_csv
from alerts.mobilisation import local_text
from alerts.store import AlertStore
from hub.api.deps import CurrentPrincipal, requires
from hub.api.paging import LINKED, PageRequest, page_of, paging
from hub.api.times import moment
from hub.district.declarations import HUB_TIMEOUT_S, Declaration, Part, PartState
from hub.district.deps import DistrictRuntime, RuntimeDep, chosen, in_view
from hub.district.reader import Unavailable
from hub.district.scopes import DISTRICT_ROLES
from hub.identity import Principal

__all__ = ["router"]

router = APIRouter(tags=["district"], dependencies=[Depends(requires(*DISTRICT_ROLES))])

TIMEZONE = "Asia/Shanghai"
"""The register's times are written for people in China (a hub uses its community's; the node serves one city)."""


class DeclareIn(BaseModel):
    by: str = Field(min_length=1, max_length=55, description="who declares it (the calling user themself)")
    kind: IncidentKind
    title: str = Field(min_length=1, max_length=500)
    communities: list[str] = Field(min_length=1, max_length=500, description="each in the caller's view")
    fields: list[str] = Field(default_factory=list, max_length=20, description="an epidemic's required fields")
    mobilise: bool = Field(default=True, description="each hub asks its volunteers to join at once")
    notice_zh: str | None = Field(
        default=None, min_length=1, max_length=5000,
        description="a notice to the residents of every community, sent through each hub's broadcast receivers "
        "(Chinese first; at most 500 characters are sent)",
    )  # fmt: skip
    notice_en: str = Field(default="", max_length=5000, description="English second")


class PartOut(BaseModel):
    community: str
    state: PartState
    attempts: int
    error: str | None = Field(description="why the last attempt did not declare it there")
    next_attempt_at: datetime | None = Field(description="when a pending one is tried again")
    declared_at: datetime | None
    households: dict[str, int] | None = Field(description="households by status there (read from the community)")


class DeclarationOut(BaseModel):
    id: str = Field(description="the incident's id in every community")
    kind: IncidentKind
    title: str
    fields: list[str]
    notice_zh: str | None
    notice_en: str
    declared_by: str
    declared_at: datetime
    parts: list[PartOut]
    households: dict[str, int] = Field(description="the sum of the communities' households by status")


def _part_out(part: Part, households: dict[str, int] | None) -> PartOut:
    retry = moment(part.next_attempt_ms) if part.state == "pending" else None
    return PartOut(community=part.community, state=part.state, attempts=part.attempts, error=part.error,
                   next_attempt_at=retry, declared_at=moment(part.declared_ms), households=households)  # fmt: skip


def _visible(declaration: Declaration, seen: list[str]) -> Declaration | None:
    """The declaration with only the parts of communities in view; None when none is."""
    parts = tuple(p for p in declaration.parts if p.community in seen)
    if not parts:
        return None
    return dataclasses.replace(declaration, parts=parts)


async def _households(runtime: DistrictRuntime, declaration: Declaration) -> dict[str, dict[str, int] | None]:
    """Each community's households by status, counted where the incident runs (None elsewhere, or unreadable)."""
    declared = [p.community for p in declaration.parts if p.declared_ms is not None]

    def read(_community: str, store: AlertStore) -> dict[str, int]:
        return store.report_counts([declaration.id])

    found, _missing = await runtime.reader.each(declared, read)
    return {p.community: found.get(p.community) for p in declaration.parts}


async def _out(runtime: DistrictRuntime, declaration: Declaration) -> DeclarationOut:
    counts = await _households(runtime, declaration)
    total = {status.value: 0 for status in HouseholdStatus}
    for part_counts in counts.values():
        for key, value in (part_counts or {}).items():
            total[key] = total.get(key, 0) + value
    parts = [_part_out(p, counts[p.community]) for p in declaration.parts]
    return DeclarationOut(id=declaration.id, kind=declaration.kind, title=declaration.title,
                          fields=list(declaration.fields), notice_zh=declaration.notice_zh,
                          notice_en=declaration.notice_en, declared_by=declaration.declared_by,
                          declared_at=moment(declaration.declared_ms), parts=parts, households=total)  # fmt: skip


async def _in_view(runtime: DistrictRuntime, principal: Principal, declaration_id: str) -> Declaration:
    found = await asyncio.to_thread(runtime.fan_out.declarations.get, declaration_id)
    shown = None if found is None else _visible(found, in_view(runtime, principal))
    if shown is None:
        raise HTTPException(404, f"没有事件 {declaration_id} / no declaration {declaration_id!r}")
    return shown


def _acting(principal: Principal, by: str) -> str:
    """Who a declaration is recorded as: a user by their user name (a sub-district user's person is their
    sub-district, no one person), and naming anyone else is refused (403); an integration relays the person."""
    if principal.via in ("api-token", "static-token"):
        return by
    if by != principal.name:
        raise HTTPException(403, f"只能以本人身份操作 / a user acts as themself ({principal.name!r}), not as {by!r}")
    return principal.name


@router.post("/declarations", status_code=201)
async def declare(runtime: RuntimeDep, principal: CurrentPrincipal, body: DeclareIn) -> DeclarationOut:
    """Declare one incident in ``communities``: recorded here first, then handed to each community's hub (at once,
    and again in the background where a hub could not take it yet)."""
    fan_out = runtime.fan_out
    if not fan_out.can_declare:
        raise HTTPException(503, "未配置 hub_token，区级节点只能查看 / the node has no hub_token_file: it only reads")
    communities = chosen(runtime, principal, body.communities)
    if len(set(body.communities)) != len(body.communities):
        raise HTTPException(422, "communities: a community is named twice")
    declaration = await asyncio.to_thread(
        fan_out.declarations.add, kind=body.kind, title=body.title, fields=body.fields, mobilise=body.mobilise,
        by=_acting(principal, body.by), communities=communities, notice_zh=body.notice_zh, notice_en=body.notice_en,
    )  # fmt: skip
    async with httpx.AsyncClient(timeout=HUB_TIMEOUT_S) as client:
        await fan_out.attempt_all(client, [(declaration, c) for c in communities])
    fan_out.wake()
    found = await asyncio.to_thread(fan_out.declarations.get, declaration.id)
    assert found is not None
    return await _out(runtime, found)


_PAGES = paging("declarations", default=100, maximum=1000, shape=(int, str))


@router.get("/declarations", responses=LINKED)
async def declarations(
    request: Request, response: Response, runtime: RuntimeDep, principal: CurrentPrincipal, page: PageRequest = _PAGES
) -> list[DeclarationOut]:
    """Declarations touching the communities in view (only those communities' parts), newest first."""
    seen = in_view(runtime, principal)
    every = await asyncio.to_thread(runtime.fan_out.declarations.all)
    shown = [d for d in (_visible(d, seen) for d in every) if d is not None]
    return [await _out(runtime, d) for d in page_of(request, response, page, shown, lambda d: (-d.declared_ms, d.id))]


@router.get("/declarations/{declaration_id}")
async def declaration(runtime: RuntimeDep, principal: CurrentPrincipal, declaration_id: str) -> DeclarationOut:
    return await _out(runtime, await _in_view(runtime, principal, declaration_id))


@router.get("/declarations/{declaration_id}/summary.html", response_class=HTMLResponse)
async def summary_page(runtime: RuntimeDep, principal: CurrentPrincipal, declaration_id: str) -> HTMLResponse:
    """The printable summary for the sub-district (A4, Chinese first): where the incident runs, the households of the
    communities in view counted by status, and every one that needs help or is unreachable."""
    shown = await _in_view(runtime, principal, declaration_id)
    rows, missing = await _reports(runtime, shown)
    unread = {m.community for m in missing}
    parts = [(p.community, p.state, f"无法读取 / unavailable: {p.community}" if p.community in unread else p.error)
             for p in shown.parts]  # fmt: skip
    page = district_summary_html(incident_id=shown.id, title=shown.title, kind=shown.kind,
                                 declared_by=shown.declared_by, declared_ms=shown.declared_ms,
                                 notice_zh=shown.notice_zh, parts=parts, reports=rows, fields=shown.fields,
                                 now_ms=time.time_ns() // 1_000_000, timezone=TIMEZONE)  # fmt: skip
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


async def _reports(
    runtime: DistrictRuntime, shown: Declaration
) -> tuple[list[tuple[str, ResidentReport]], list[Unavailable]]:
    """Every household reported for the declaration in the communities where it runs, with its community."""

    def read(_community: str, store: AlertStore) -> list[ResidentReport]:
        return store.reports(shown.id)

    found, missing = await runtime.reader.each([p.community for p in shown.parts if p.declared_ms is not None], read)
    return [(community, report) for community, reports in found.items() for report in reports], missing


@router.get("/declarations/{declaration_id}/households.csv", response_class=Response)
async def households_csv(runtime: RuntimeDep, principal: CurrentPrincipal, declaration_id: str) -> Response:
    """Every household reported in the communities in view, one CSV (UTF-8 with a BOM), by community and household;
    ``Anju-Unavailable`` names a community whose register could not be read."""
    shown = await _in_view(runtime, principal, declaration_id)
    rows, missing = await _reports(runtime, shown)
    text = register_csv(shown.fields, rows, lambda ms: local_text(ms, TIMEZONE), with_community=True)
    headers = {"Content-Disposition": f'attachment; filename="{declaration_id}-households.csv"'}
    if missing:
        headers["Anju-Unavailable"] = ", ".join(m.community for m in missing)
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
