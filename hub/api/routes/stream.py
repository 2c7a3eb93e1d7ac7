"""``GET /api/v1/stream``: alert and sensor changes as Server-Sent Events (``hub.live``), for dashboards and phones.

Events (``event:`` name, ``data:`` one JSON object):

- ``hello`` once at the start: the community, the current head of the alert changes, the periods;
- ``alert`` (``id:`` the audit seq) for every change of an alert the caller may see (their scope,
  hub/identity/scope.py; sensors too): ``{"seq", "transition",
  "alert"}``, the alert as ``GET /alerts/{id}`` shows it now;
- ``sensors`` every ``sensor_period_s`` with the sensors whose newest reading moved: ``{"time", "sensors":
  [{"sensor", "gateway", "grid", "kind", "unit", "time", "value", "status", "reason"}]}``;
- ``reset`` when the stream cannot go on where it is (the client fell too far behind, or asked to resume from
  further back than ``hub.live.REPLAY_LIMIT`` changes): reload the state, then reconnect without ``Last-Event-ID``.

A comment line every ``HEARTBEAT_S`` keeps proxies from closing a quiet stream. ``Last-Event-ID`` (the header
EventSource sends on reconnect) resumes after that seq: the missed alert changes come first, from the audit trail.
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import StreamingResponse

from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep
from hub.api.routes.alerts import AlertPublic, TransitionPublic
from hub.api.times import moment
from hub.live import AlertChange, Interest, LiveFeed, SensorChanges

router = APIRouter(tags=["stream"], dependencies=[Authorized])

HEARTBEAT_S = 15.0
RETRY_MS = 3_000
"""How long EventSource waits before reconnecting (ms)."""


def _iso(time_ms: int) -> str:
    return moment(time_ms).isoformat()


def _event(name: str, data: object, event_id: int | None = None) -> str:
    head = f"event: {name}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + "data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n\n"


def _alert_event(change: AlertChange) -> str:
    t = change.transition
    transition = TransitionPublic(
        from_state=t.from_state,
        to_state=t.to_state,
        by=t.by,
        channel=t.channel,
        time=moment(t.time_ms),
        note=t.note,
    )
    data = {
        "seq": change.seq,
        "transition": transition.model_dump(mode="json"),
        "alert": AlertPublic.of(change.alert).model_dump(mode="json"),
    }
    return _event("alert", data, change.seq)


def _sensors_event(batch: SensorChanges) -> str:
    sensors = [
        {
            "sensor": c.info.id,
            "gateway": c.info.gateway,
            "grid": c.info.grid,
            "kind": c.info.kind.name,
            "unit": c.info.kind.unit,
            "time": _iso(c.time_ms),
            "value": c.value,
            "status": c.status,
            "reason": c.reason,
        }
        for c in batch.sensors
    ]
    return _event("sensors", {"time": _iso(batch.time_ms), "sensors": sensors})


def _resume_from(last_event_id: str | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return None
    text = last_event_id.strip()
    if not text.isdigit() or len(text) > 18:
        raise HTTPException(400, f"Last-Event-ID {last_event_id[:40]!r} is not an event id of this stream")
    return int(text)


async def _events(feed: LiveFeed, interest: Interest, resume: int | None, community: str) -> AsyncIterator[str]:
    with feed.subscribed(interest) as subscription:
        yield f"retry: {RETRY_MS}\n\n"
        sent = feed.head if resume is None else resume
        hello = {
            "community": community,
            "head": feed.head,
            "alert_period_s": feed.alert_period_s,
            "sensor_period_s": feed.sensor_period_s,
        }
        yield _event("hello", hello)
        if resume is not None and interest.alerts:
            missed = await feed.replay(resume, interest)
            if missed is None:
                yield _event("reset", {"reason": "too far behind to resume: reload, then reconnect"})
                return
            for change in missed:
                sent = max(sent, change.seq)
                yield _alert_event(change)
        while True:
            try:
                item = await subscription.next(HEARTBEAT_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is None:
                yield _event("reset", {"reason": "the stream fell too far behind: reload, then reconnect"})
                return
            if isinstance(item, AlertChange):
                if item.seq > sent:  # a change the replay already sent comes once
                    sent = item.seq
                    yield _alert_event(item)
            else:
                yield _sensors_event(item)


@router.get("/stream", response_class=StreamingResponse)
async def stream(
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    alerts: bool = True,
    sensors: bool = True,
    grid: Annotated[list[str] | None, Query(description="only these grids (repeat the parameter)")] = None,
    gateway: Annotated[str | None, Query(description="only the sensors of this gateway")] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this event id (EventSource sets it)")] = None,
) -> StreamingResponse:
    """Alert and sensor changes as Server-Sent Events (``text/event-stream``); see the module docstring."""
    scope = principal.scope
    known_grids = {g.id for g in runtime.deployment.grids if scope.sees_grid_sensors(g.id)}
    unknown = sorted(set(grid or ()) - known_grids)
    if unknown:
        raise HTTPException(404, f"no grid {', '.join(unknown)} in this deployment")
    only = None if scope.community_wide else scope.sensors
    in_view = gateway in runtime.registry.gateways and (
        only is None or any(s in only for s in runtime.registry.on_gateway[gateway])
    )
    if gateway is not None and not in_view:
        raise HTTPException(404, f"no gateway {gateway} in this deployment")
    if not alerts and not sensors:
        raise HTTPException(422, "alerts=false and sensors=false leave nothing to stream")
    resume = _resume_from(last_event_id)
    grids = frozenset(grid) if grid else None
    feed = runtime.live
    interest = Interest(
        alerts=alerts,
        sensors=sensors,
        grids=grids,
        rows=feed.rows_where(grids=grids, gateway=gateway, sensors=only),
        visible=None if scope.community_wide else scope.sees_alert,
    )
    return StreamingResponse(
        _events(feed, interest, resume, runtime.registry.community),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
