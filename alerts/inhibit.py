"""Inhibitions: an open alert that already carries an incident mutes the events that only repeat it (issue 6).

Two rules, as Alertmanager's inhibit rules but fixed to what Anju's producers say about their events:

- a consequence: an event naming a ``cause`` (a sensor silent because its gateway is offline) is muted while the
  cause's alert is open — one "gateway offline" alert, not one per detector behind it;
- a corroboration: while a corroboration alert is open (a fire: smoke, heat and CO together; two smoke detectors),
  firing events of its ``members`` are muted — the fire alert is the incident; a member's own upgrade adds pages,
  not information.

Cleared events always pass (the service never mutes them), so nothing that was paged misses its "cleared" notice.
The state is the set of open alerts, rebuilt from the alert database at start and followed on every change.
"""

from __future__ import annotations

from collections.abc import Iterable

from alerts.model import Alert, RiskEvent

__all__ = ["Inhibitions"]


class Inhibitions:
    """Which open alerts inhibit what; implements :class:`alerts.silence.Mute`."""

    def __init__(self, open_alerts: Iterable[Alert] = ()) -> None:
        self._open: set[str] = set()
        self._members: dict[str, frozenset[str]] = {}
        """Open corroboration alert key → the sensors it names."""
        self._member_of: dict[str, set[str]] = {}
        """Sensor → the open corroboration alert keys naming it."""
        for alert in open_alerts:
            self.follow(alert)

    def follow(self, alert: Alert) -> None:
        """Take an alert as just committed (opened, changed, resolved …)."""
        key = alert.key
        if not alert.is_open:
            self._open.discard(key)
            self._drop_members(key)
            return
        self._open.add(key)
        members = frozenset(alert.last_event.members or alert.first_event.members)
        if alert.last_event.kind == "corroboration" and members and members != self._members.get(key):
            self._drop_members(key)
            self._members[key] = members
            for sensor in members:
                self._member_of.setdefault(sensor, set()).add(key)

    def _drop_members(self, key: str) -> None:
        for sensor in self._members.pop(key, frozenset()):
            keys = self._member_of.get(sensor)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._member_of[sensor]

    def muted_by(self, event: RiskEvent, now_ms: int) -> str | None:
        if event.cause is not None and event.cause in self._open:
            return f"inhibited by the open alert {event.cause}"
        if event.kind != "corroboration":
            keys = self._member_of.get(event.sensor)
            if keys:
                return f"inhibited by the open corroboration alert {min(keys)}"
        return None
