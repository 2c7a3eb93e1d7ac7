"""The devices the hub accepts data from, taken from the deployment file, and their liveness.

A reading is accepted only from a registered gateway of the right community and only for a sensor
registered on that gateway, in the unit of that sensor's kind and within its physical range: a spoofed or
misconfigured gateway must not be able to inject readings for another building's detectors.
"""

import time
from dataclasses import dataclass, field

from hub.config import Deployment
from protocol.kinds import KINDS, SensorKind

__all__ = ["GatewayStatus", "Registry", "SensorInfo"]


@dataclass(frozen=True, slots=True)
class SensorInfo:
    id: str
    gateway: str
    kind: SensorKind
    location: str
    grid: str
    report_interval_s: float | None = None
    """The deployment file's fixed reporting interval (liveness); None: learned from arrivals."""
    index: int = -1
    """Position in the deployment (0 … sensors-1): the row of this sensor in per-sensor numpy state."""


@dataclass(slots=True)
class GatewayStatus:
    id: str
    online: bool = False
    session: int | None = None
    changed_at_s: float = field(default_factory=time.time)
    last_message_s: float | None = None
    location: str = ""


class Registry:
    def __init__(self, deployment: Deployment) -> None:
        self.community = deployment.community.id
        self.community_name = deployment.community.name
        self.sensors: dict[tuple[str, str], SensorInfo] = {
            (gateway.id, sensor.id): SensorInfo(
                sensor.id,
                gateway.id,
                KINDS[sensor.kind],
                sensor.location,
                sensor.grid,
                sensor.report_interval_s,
                index,
            )
            for index, (gateway, sensor) in enumerate(deployment.sensors())
        }
        self.on_gateway: dict[str, dict[str, SensorInfo]] = {g.id: {} for g in deployment.gateways}
        """Per gateway, its sensors by id: the ingest path's lookup (no tuple key built per reading)."""
        for info in self.sensors.values():
            self.on_gateway[info.gateway][info.id] = info
        self.by_id: dict[str, SensorInfo] = {info.id: info for info in self.sensors.values()}
        self.gateways: dict[str, GatewayStatus] = {
            g.id: GatewayStatus(g.id, location=g.location) for g in deployment.gateways
        }

    def sensor(self, gateway: str, sensor: str) -> SensorInfo | None:
        return self.sensors.get((gateway, sensor))

    def set_state(self, gateway: str, *, online: bool, session: int) -> bool:
        """Record a birth or death; True when the gateway's online state changed."""
        status = self.gateways[gateway]
        changed = status.online != online or status.session != session
        status.online, status.session, status.changed_at_s = online, session, time.time()
        return changed

    def online_count(self) -> int:
        return sum(1 for status in self.gateways.values() if status.online)
