"""``GET /api/v1/gateways/{community}/{gateway}/health``: a gateway's own health as it last reported it.

What an operator checks before driving out to a building: is the gateway online, is its outbox filling, how
old is its oldest unacknowledged reading, is its clock right, which detectors stopped answering on its bus,
and what it answered to the last commands. A gateway the deployment does not know is 404 (problem+json); a
known one that has not reported yet is 200 with ``reported: false``.
"""

import time
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from hub.api.deps import CommunityWide, RuntimeDep
from hub.api.times import moment

router = APIRouter(tags=["gateways"], dependencies=[CommunityWide])


class ReplyPublic(BaseModel):
    command: str
    ok: bool
    detail: str
    id: str | None = Field(description="the ping's id, echoed")
    skew_s: float | None = Field(description="gateway clock minus hub clock, seconds (cmd/time)")
    gateway_time_s: float = Field(description="the gateway's clock when it answered, Unix seconds")
    received_at: datetime


class GatewayHealthPublic(BaseModel):
    community: str
    gateway: str
    online: bool = Field(description="the gateway's last birth/death on its state topic")
    session: int | None
    reported: bool = Field(description="false until the gateway's first health report arrives")
    received_at: datetime | None = Field(description="when the hub received the latest report (hub clock)")
    age_s: float | None = Field(description="seconds since then")
    gateway_time_s: float | None = Field(description="the gateway's clock in the report, Unix seconds")
    values: dict[str, float] = Field(description="the report's numeric fields (protocol.telemetry.HEALTH_FIELDS)")
    silent_detectors: list[str] = Field(description="sensor ids whose detector did not answer at its last poll")
    replies: list[ReplyPublic] = Field(description="the latest answer to each command, newest last")
    liveness: Literal["online", "offline", "heartbeat-lost", "unknown"] = Field(
        description="as the hub judges it: the broker's state, and silence for 3 heartbeat intervals (issue 4)"
    )
    last_heard: datetime | None = Field(description="when anything last came from the gateway (hub clock)")
    heartbeat_interval_s: float = Field(description="seconds expected between its health reports (learned)")


@router.get("/gateways/{community}/{gateway}/health")
async def gateway_health(runtime: RuntimeDep, community: str, gateway: str) -> GatewayHealthPublic:
    registry = runtime.registry
    status = registry.gateways.get(gateway) if community == registry.community else None
    if status is None:
        raise HTTPException(404, f"no gateway {community}/{gateway} in this deployment")
    telemetry = runtime.ingest.telemetry
    alive = runtime.ingest.liveness.gateway_view(gateway)
    if alive is None:  # the registry and liveness know the same gateways
        raise HTTPException(404, f"no gateway {community}/{gateway} in this deployment")
    seen = telemetry.health.get(gateway)
    replies = [
        ReplyPublic(
            command=item.reply.command,
            ok=item.reply.ok,
            detail=item.reply.detail,
            id=item.reply.id,
            skew_s=item.reply.skew_s,
            gateway_time_s=item.reply.time_s,
            received_at=moment(item.received_ms),
        )
        for item in telemetry.replies.get(gateway, {}).values()
    ]
    return GatewayHealthPublic(
        community=community,
        gateway=gateway,
        online=status.online,
        session=status.session,
        reported=seen is not None,
        received_at=moment(seen.received_ms) if seen else None,
        age_s=max(0.0, time.time() - seen.received_ms / 1000) if seen else None,
        gateway_time_s=seen.report.time_s if seen else None,
        values=dict(seen.report.values) if seen else {},
        silent_detectors=list(seen.report.silent) if seen else [],
        replies=replies,
        liveness=alive.status,
        last_heard=moment(alive.last_heard_ms) if alive.last_heard_ms is not None else None,
        heartbeat_interval_s=alive.heartbeat_interval_s,
    )
