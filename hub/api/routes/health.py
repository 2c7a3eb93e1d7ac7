"""``GET /api/v1/health``: liveness for load balancers and the demo; no token, no secrets."""

from fastapi import APIRouter
from pydantic import BaseModel

from hub.api.deps import RuntimeDep

router = APIRouter(tags=["health"])


class HealthPublic(BaseModel):
    status: str
    mqtt_connected: bool
    gateways_online: int
    gateways_total: int
    inbox_messages: int


@router.get("/health")
async def health(runtime: RuntimeDep) -> HealthPublic:
    connected = runtime.ingest.connected
    return HealthPublic(
        status="ok" if connected else "degraded",
        mqtt_connected=connected,
        gateways_online=runtime.registry.online_count(),
        gateways_total=len(runtime.registry.gateways),
        inbox_messages=len(runtime.ingest.inbox),
    )
