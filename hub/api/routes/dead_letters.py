"""``GET /api/v1/dead-letters``: refused input with its reason, so an operator can see what a gateway sent."""

import asyncio
import base64

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from hub.api.deps import CommunityWide, RuntimeDep
from hub.api.paging import LINKED, PageRequest, paged, paging

router = APIRouter(tags=["dead letters"], dependencies=[CommunityWide])


class DeadLetterPublic(BaseModel):
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload_base64: str


_LETTER_PAGES = paging("dead-letters", default=100, maximum=1000, shape=(int,))


@router.get("/dead-letters", responses=LINKED)
async def dead_letters(
    request: Request, response: Response, runtime: RuntimeDep, page: PageRequest = _LETTER_PAGES
) -> list[DeadLetterPublic]:
    """Newest first; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    before = None if page.after is None else int(page.after[0])
    found = await asyncio.to_thread(runtime.store.dead_letters, page.limit + 1, before)
    rows = paged(request, response, page, found, lambda letter: (letter.id,))
    return [
        DeadLetterPublic(
            received_ms=row.received_ms,
            topic=row.topic,
            reason=row.reason,
            detail=row.detail,
            payload_base64=base64.b64encode(row.payload[:65536]).decode(),
        )
        for row in rows
    ]
