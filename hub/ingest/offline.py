"""What liveness (``hub.ingest.liveness``) tells the rest of the system: offline risk events and status views.

The events follow ``alerts.model.RiskEvent`` like the detector's, one key per condition so the alert service keeps
one alert each: ``{community}/{sensor}/offline`` (kind = the sensor's kind) and
``{community}/gateway/{gateway}/offline`` (kind ``gateway``, ``sensor`` = the gateway id). Grade IV (blue, 一般):
SENSORS.md puts "offline" there, a maintenance job for the property company with GB/T 45839-2025's 24 h to
report a communication loss. ``value`` is the seconds since the last reading or message (unit ``s``);
``threshold`` is the silence limit when silence is the reason, None when the broker or the gateway is.
"""

from dataclasses import dataclass
from typing import Literal

from alerts.model import Grade, RiskEvent
from hub.ingest.intervals import IntervalSource
from hub.ingest.registry import SensorInfo

__all__ = [
    "GatewayLiveness",
    "GatewayReason",
    "GatewayStatusName",
    "SensorLiveness",
    "SensorReason",
    "SensorStatus",
    "gateway_offline_event",
    "offline_event",
]

SensorStatus = Literal["fresh", "stale", "unseen"]
SensorReason = Literal["stale", "gateway-offline"]
GatewayReason = Literal["gateway-offline", "heartbeat-lost"]
GatewayStatusName = Literal["online", "offline", "heartbeat-lost", "unknown"]


def offline_event(
    *,
    community: str,
    info: SensorInfo,
    place: str,
    rule: SensorReason,
    firing: bool,
    age_ms: int,
    time_ms: int,
    limit_ms: float,
    intervals: int,
) -> RiskEvent:
    """A sensor's offline condition: silent for ``intervals`` report intervals (``stale``), or its gateway is."""
    if rule == "stale":
        source = f"Anju liveness: no reading for {intervals} × the sensor's report interval"
    else:
        source = "Anju liveness: the sensor's gateway is offline"
    return RiskEvent(
        key=f"{community}/{info.id}/offline",
        maintenance=True,
        community=community,
        grid=info.grid,
        sensor=info.id,
        kind=info.kind.name,
        location_zh=place,
        rule=rule,
        grade=Grade.IV,
        value=max(0, age_ms) / 1000,
        unit="s",
        time_ms=time_ms,
        status="firing" if firing else "cleared",
        source=source,
        threshold=limit_ms / 1000 if rule == "stale" else None,
        cause=gateway_offline_key(community, info.gateway) if rule == "gateway-offline" else None,
    )


def gateway_offline_key(community: str, gateway: str) -> str:
    """The key of a gateway's offline condition (its sensors' "gateway-offline" conditions follow from it)."""
    return f"{community}/gateway/{gateway}/offline"


def gateway_offline_event(
    *,
    community: str,
    gateway: str,
    grid: str,
    place: str,
    rule: GatewayReason,
    firing: bool,
    age_ms: int,
    time_ms: int,
    limit_ms: float,
    intervals: int,
) -> RiskEvent:
    """A gateway's offline condition: the broker's word (death/Will, or no birth) or a lost heartbeat.

    ``grid``: a gateway belongs to no grid in the deployment file, so its alert goes to the grid most of its
    sensors are in (the people who would miss their readings)."""
    if rule == "heartbeat-lost":
        source = f"Anju liveness: no message for {intervals} × the gateway's heartbeat interval"
    else:
        source = "Anju liveness: the broker reports the gateway offline (death/Will, or no birth)"
    return RiskEvent(
        key=gateway_offline_key(community, gateway),
        maintenance=True,
        community=community,
        grid=grid,
        sensor=gateway,
        kind="gateway",
        location_zh=place,
        rule=rule,
        grade=Grade.IV,
        value=max(0, age_ms) / 1000,
        unit="s",
        time_ms=time_ms,
        status="firing" if firing else "cleared",
        source=source,
        threshold=limit_ms / 1000 if rule == "heartbeat-lost" else None,
    )


@dataclass(frozen=True, slots=True)
class SensorLiveness:
    """One sensor as the API shows it; times on the hub's clock."""

    sensor: str
    gateway: str
    kind: str
    status: SensorStatus
    """``fresh``, ``stale`` (declared, for ``reason``) or ``unseen`` (no reading since the hub started, not stale)."""
    reason: SensorReason | None
    last_seen_ms: int | None
    age_s: float | None
    interval_s: float
    interval_source: IntervalSource
    """``learned``, ``override`` (deployment file) or ``default`` (not enough gaps seen yet)."""
    stale_after_s: float


@dataclass(frozen=True, slots=True)
class GatewayLiveness:
    gateway: str
    status: GatewayStatusName
    """``online``, ``offline`` (broker: death/Will, or no state), ``heartbeat-lost`` (silent while the broker says
    online) or ``unknown`` (no state since the hub connected, still within the grace)."""
    last_heard_ms: int | None
    heartbeat_known: bool
    """False until a health report arrived during this run: only then is silence judged."""
    heartbeat_interval_s: float
    silent_after_s: float
