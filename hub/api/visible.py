"""Records as the caller may see them: each lookup answers 404 for what is out of the principal's scope exactly as
for what does not exist, so another company or grid learns nothing of it (the scope rules: hub/identity/scope.py)."""

from fastapi import Depends, HTTPException, Request

from alerts.incidents import Incident
from alerts.model import Alert
from alerts.work_orders import WorkOrder
from hub.api.deps import CurrentPrincipal, RuntimeDep
from hub.identity import Principal
from hub.ingest.registry import SensorInfo
from hub.runtime import Runtime

__all__ = ["IncidentInView", "alert_in_view", "incident_in_view", "sensor_in_view", "work_order_in_view"]


def sensor_in_view(runtime: Runtime, principal: Principal, sensor: str) -> SensorInfo:
    info = runtime.registry.by_id.get(sensor)
    if info is None or not principal.scope.sees_sensor(sensor):
        raise HTTPException(404, f"no sensor {sensor!r} in this deployment")
    return info


async def alert_in_view(runtime: Runtime, principal: Principal, alert_id: str) -> Alert:
    alert = await runtime.alerts.get(alert_id)
    if alert is None or not principal.scope.sees_alert(alert):
        raise HTTPException(404, f"no alert {alert_id!r}")
    return alert


async def incident_in_view(runtime: Runtime, principal: Principal, incident_id: str) -> Incident:
    incident = await runtime.alerts.incident(incident_id)
    if incident is None or not principal.scope.sees_incident(incident):
        raise HTTPException(404, f"no incident {incident_id!r}")
    return incident


async def work_order_in_view(runtime: Runtime, principal: Principal, order_id: str) -> WorkOrder:
    order = await runtime.alerts.work_order(order_id)
    alert = None if order is None else await runtime.alerts.get(order.alert_id)
    if order is None or not principal.scope.sees_work_order(order, alert):
        raise HTTPException(404, f"no work order {order_id!r}")
    return order


async def _incident_of_path(request: Request, runtime: RuntimeDep, principal: CurrentPrincipal) -> None:
    incident_id = request.path_params.get("incident_id")
    if incident_id is not None:
        await incident_in_view(runtime, principal, str(incident_id))


IncidentInView = Depends(_incident_of_path)
"""For a router of ``/incidents/{incident_id}/…`` routes: 404 before the route runs when the incident is out of view."""
