"""``GET /api/v1/audit`` and ``/audit/verify``: the append-only, hash-chained audit log of alerts and silences.

Every step anyone took — opened, notified, acknowledged, escalated, upgraded, cleared, resolved, verified, assigned,
commented, a silence set or lifted — with who, when and through which channel, in order, each row linked to the one
before by SHA-256 (``alerts.store``). Read it in pages (``limit``, ``cursor`` and the ``Link`` header, as every list);
``verify`` walks the whole chain and names the first row that does not match. Community-wide roles only: the log
covers every grid.
(Logins and role changes are in ``/audit/identity``.)
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from hub.api.deps import CommunityWide, RuntimeDep
from hub.api.paging import LINKED, PageRequest, paged, paging
from hub.api.times import moment

router = APIRouter(tags=["audit"], dependencies=[CommunityWide])


class AuditRowPublic(BaseModel):
    seq: int
    subject: str = Field(description="the alert's or silence's id")
    from_state: str | None
    to_state: str
    by: str
    channel: str
    time: datetime
    note: str
    prev_hash: str | None
    hash: str | None = Field(description="SHA-256 of prev_hash and the row's fields (null: from before the chain)")


class AuditPage(BaseModel):
    rows: list[AuditRowPublic]
    next_after: int | None = Field(
        description="(older clients) pass as ``after`` for the next page; null when this is the end"
    )


class AuditVerdict(BaseModel):
    intact: bool
    chained: int = Field(description="rows whose link and hash were checked")
    unchained: int = Field(description="rows from before the chain existed")
    broken_at: int | None = Field(description="seq of the first row that does not match")
    reason: str
    head: str = Field(description="hash of the newest row: keep it elsewhere to detect a rewritten tail later")


_AUDIT_PAGES = paging("audit", default=200, maximum=1000, shape=(int,))


@router.get("/audit", responses=LINKED)
async def audit(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=2**63 - 1,
            deprecated=True,
            description="旧参数 / rows after this seq: kept for older archivers; use ``cursor`` (the Link header)",
        ),
    ] = None,
    page: PageRequest = _AUDIT_PAGES,
) -> AuditPage:
    """Oldest first; paged with ``limit`` and ``cursor`` (the next page in the ``Link`` header) like every list."""
    start = int(page.after[0]) if page.after is not None else (after or 0)
    rows = paged(
        request, response, page, await runtime.alerts.audit_rows(after=start, limit=page.limit + 1), lambda r: (r.seq,)
    )
    public = [
        AuditRowPublic(
            seq=r.seq, subject=r.subject, from_state=r.from_state, to_state=r.to_state, by=r.by, channel=r.channel,
            time=moment(r.time_ms), note=r.note, prev_hash=r.prev_hash,
            hash=r.hash,
        )
        for r in rows
    ]  # fmt: skip
    more = "link" in response.headers
    return AuditPage(rows=public, next_after=public[-1].seq if more else None)


@router.get("/audit/verify")
async def verify(runtime: RuntimeDep) -> AuditVerdict:
    report = await runtime.alerts.verify_audit()
    return AuditVerdict(
        intact=report.intact,
        chained=report.chained,
        unchained=report.unchained,
        broken_at=report.broken_at,
        reason=report.reason,
        head=report.head,
    )
