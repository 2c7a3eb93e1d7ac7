"""``GET /api/v1/dead-letters``: refused input with its reason, so an operator can see what a gateway sent."""

import asyncio
import base64
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hub.api.deps import CommunityWide, RuntimeDep

router = APIRouter(tags=["dead letters"], dependencies=[CommunityWide])


class DeadLetterPublic(BaseModel):
    received_ms: int
    topic: str
    reason: str
    detail: str
    payload_base64: str


@router.get("/dead-letters")
async def dead_letters(
    runtime: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterPublic]:
    rows = await asyncio.to_thread(runtime.store.dead_letters, limit)
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
