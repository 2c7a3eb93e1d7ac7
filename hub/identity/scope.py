"""What a principal may see: one ``Scope`` per request, resolved from its role and the person it stands for.

Every scoped route asks the same object (``sees_sensor``, ``sees_alert``, ``sees_incident``, ``sees_work_order``)
instead of testing roles itself, so the rules live here once:

* admin, community committee, sub-district, emergency office: the whole community (one community per hub);
* grid manager: the grids whose ``managers`` (or duty roster team and fallback) include their person, every sensor
  of those grids, their alerts, and any alert paged up the escalation chain to a level their person is on;
* property company: the buildings its ``property`` department ``manages`` (deployment file, ``departments[].manages``)
  — those buildings' sensors and alerts — the work orders sent to the department, and alerts escalated to them;
* volunteer: no sensors and no alerts; the incidents of the grids they cover (``volunteers[].grids``, empty: all).

Incidents declared for the whole community are seen by every role. Something out of scope is answered 404 by the
routes, like something that does not exist: a 403 would tell another company that the sensor is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from alerts.incidents import Incident
from alerts.model import Alert
from alerts.work_orders import WorkOrder
from hub.config import Deployment
from hub.identity.roles import COMMUNITY_WIDE, Role

__all__ = ["Scope", "ScopeRules", "Scopes"]


class ScopeRules(Protocol):
    """Where a principal's scope comes from: a hub's deployment (:class:`Scopes`) or the district node's sub-districts
    (hub/district/scopes.py)."""

    def person_problem(self, role: Role, person: str | None) -> str | None:
        """Why ``person`` cannot stand for ``role`` here (None when it can)."""
        ...

    def scope(self, role: Role, person: str | None) -> Scope:
        """What ``role`` standing for ``person`` sees; a link no longer valid sees nothing rather than more."""
        ...


@dataclass(frozen=True, slots=True)
class Scope:
    """The part of the community one principal sees; build it with :meth:`Scopes.scope`."""

    community_wide: bool
    grids: frozenset[str] = frozenset()
    """Grids seen whole: their sensors, alerts and incidents."""
    sensors: frozenset[str] = frozenset()
    """Sensors seen (those of ``grids`` and of ``buildings``)."""
    buildings: frozenset[str] = frozenset()
    """Buildings seen (a property company's); incidents narrowed to them are seen too."""
    area_grids: frozenset[str] = frozenset()
    """Grids an incident must touch to be seen: ``grids`` plus the grids of the buildings seen."""
    escalated_from_level: int | None = None
    """Alerts paged to this escalation level or beyond (``Alert.level``, 1-based) reached this principal's person."""
    departments: frozenset[str] = frozenset()
    """Departments whose work orders are seen (a property company's own)."""
    sees_incidents: bool = True
    person: str | None = None
    """The principal's person: an alert assigned to them (指派) is in view wherever it is."""
    communities: frozenset[str] | None = None
    """On the district node (hub/district/), the communities seen — each whole, by ``community_wide`` — and None
    for all of them. A hub serves one community, and there it is always None."""

    @classmethod
    def everything(cls) -> Scope:
        return cls(community_wide=True)

    def sees_community(self, community: str) -> bool:
        return self.communities is None or community in self.communities

    @property
    def sees_no_alerts(self) -> bool:
        """True when no alert can be in view (a volunteer): lists need not read the alerts at all."""
        return not (
            self.community_wide
            or self.grids
            or self.sensors
            or self.escalated_from_level is not None
            or self.person is not None
        )

    def sees_sensor(self, sensor: str) -> bool:
        return self.community_wide or sensor in self.sensors

    def sees_grid_sensors(self, grid: str) -> bool:
        """Whether any sensor of ``grid`` may be seen (routes then filter sensor by sensor)."""
        return self.community_wide or grid in self.area_grids

    def sees_alert(self, alert: Alert) -> bool:
        if self.community_wide or alert.grid in self.grids:
            return True
        if alert.first_event.sensor in self.sensors or alert.last_event.sensor in self.sensors:
            return True
        if self.person is not None and self.person in alert.assigned_to:
            return True
        return self.escalated_from_level is not None and alert.level >= self.escalated_from_level

    def sees_incident(self, incident: Incident) -> bool:
        if not self.sees_incidents:
            return False
        if self.community_wide or (not incident.grids and not incident.buildings):
            return True
        if incident.buildings and self.buildings:
            return bool(self.buildings.intersection(incident.buildings))
        return bool(self.area_grids.intersection(incident.grids))

    def sees_work_order(self, order: WorkOrder, alert: Alert | None) -> bool:
        """An order is seen with its alert, or by the department it was sent to."""
        return order.department in self.departments or (alert is not None and self.sees_alert(alert))


class Scopes:
    """The deployment's map from (role, person) to a :class:`Scope`, built once when the hub starts."""

    def __init__(self, deployment: Deployment) -> None:
        self._people = {p.id for p in deployment.people}
        self._all_grids = frozenset(g.id for g in deployment.grids)
        self._volunteers = {v.id: frozenset(v.grids) for v in deployment.volunteers}
        self._sensor_grid: dict[str, str] = {}
        self._sensor_building: dict[str, str] = {}
        for _, sensor in deployment.sensors():
            self._sensor_grid[sensor.id] = sensor.grid
            if sensor.building is not None:
                self._sensor_building[sensor.id] = sensor.building
        self._grids_of: dict[str, set[str]] = {}
        for grid in deployment.grids:
            for person in grid.managers:
                self._grids_of.setdefault(person, set()).add(grid.id)
        for roster in deployment.rosters:
            for person in (*roster.team, *roster.fallback):
                self._grids_of.setdefault(person, set()).update(roster.grids)
        self._property_of: dict[str, list[tuple[str, frozenset[str]]]] = {}
        for department in deployment.departments:
            if department.kind == "property":
                for person in department.people:
                    self._property_of.setdefault(person, []).append((department.id, frozenset(department.manages)))
        self._level_of: dict[str, int] = {}
        for index, level in enumerate(deployment.escalation.levels, start=1):
            for person in level.people:
                self._level_of.setdefault(person, index)

    def person_problem(self, role: Role, person: str | None) -> str | None:
        """Why ``person`` cannot stand for ``role`` (None when it can): the scope of a grid manager, property company
        or volunteer comes from their person, so they need one the deployment knows in that capacity."""
        if role is Role.VOLUNTEER:
            if person is None or person not in self._volunteers:
                return "a volunteer must be linked to an id of the deployment's volunteers"
            return None
        if person is not None and person not in self._people:
            return f"no person {person!r} in the deployment's people"
        if role is Role.GRID_MANAGER and (person is None or person not in self._grids_of):
            return "a grid manager must be linked to a person who manages a grid (grids[].managers or a roster)"
        if role is Role.PROPERTY_COMPANY and (person is None or person not in self._property_of):
            return "a property company user must be linked to a person of a department of kind property"
        return None

    def scope(self, role: Role, person: str | None) -> Scope:
        """The scope of ``role`` standing for ``person``; a link the deployment no longer has (edited since) sees
        nothing rather than more."""
        if role in COMMUNITY_WIDE:
            return Scope.everything()
        if role is Role.VOLUNTEER:
            grids = self._volunteers.get(person or "")
            if grids is None:
                return Scope(community_wide=False, sees_incidents=False)
            return Scope(community_wide=False, area_grids=grids or self._all_grids)
        level = self._level_of.get(person) if person is not None else None
        if role is Role.GRID_MANAGER:
            grids = frozenset(self._grids_of.get(person or "", ()))
            sensors = frozenset(s for s, g in self._sensor_grid.items() if g in grids)
            return Scope(
                community_wide=False,
                grids=grids,
                sensors=sensors,
                area_grids=grids,
                escalated_from_level=level,
                person=person,
            )
        departments = self._property_of.get(person or "", [])
        buildings = frozenset(b for _, managed in departments for b in managed)
        sensors = frozenset(s for s, b in self._sensor_building.items() if b in buildings)
        return Scope(
            community_wide=False,
            sensors=sensors,
            buildings=buildings,
            area_grids=frozenset(self._sensor_grid[s] for s in sensors),
            escalated_from_level=level,
            departments=frozenset(d for d, _ in departments),
            person=person,
        )
