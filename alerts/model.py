"""The nouns of the alert path: grades, risk events, alerts and their lifecycle transitions.

Everything here is a frozen, slotted value. The service builds new values with ``dataclasses.replace``; the
store persists them. Times are Unix milliseconds (``*_ms``) because detection, the edge and SenML all count
in Unix time, and integers compare and sort without time-zone surprises.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["OPEN_STATES", "Alert", "AlertState", "EventStatus", "Grade", "RiskEvent", "Transition"]

EventStatus = Literal["firing", "cleared"]


class Grade(enum.IntEnum):
    """Anju's internal alert grade, coloured like the national four-level warning scheme.

    A lower number is more severe (I is the highest), as in the Emergency Response Law. The grades are
    internal: only governments at county level and above issue statutory warnings (SENSORS.md "Grades").
    """

    IV = 4
    III = 3
    II = 2
    I = 1  # noqa: E741 - the grade is called "I" in every standard and every conversation

    @property
    def roman(self) -> str:
        """``"III"`` and so on."""
        return self.name

    @property
    def label_zh(self) -> str:
        """一般 / 较大 / 重大 / 特别重大."""
        return _LABELS[self][0]

    @property
    def label_en(self) -> str:
        """general / relatively major / major / particularly major."""
        return _LABELS[self][1]

    @property
    def colour(self) -> str:
        """blue / yellow / orange / red."""
        return _LABELS[self][2]

    @property
    def colour_zh(self) -> str:
        """蓝色 / 黄色 / 橙色 / 红色."""
        return _LABELS[self][3]

    @property
    def title_zh(self) -> str:
        """The grade as people read it: ``"III级 黄色 较大"``."""
        return f"{self.name}级 {self.colour_zh} {self.label_zh}"

    @property
    def title_en(self) -> str:
        """``"grade III yellow, relatively major"``."""
        return f"grade {self.name} {self.colour}, {self.label_en}"

    def more_severe_than(self, other: Grade) -> bool:
        """True when this grade is worse than ``other`` (I is worse than II)."""
        return self.value < other.value


_LABELS: dict[Grade, tuple[str, str, str, str]] = {
    Grade.IV: ("一般", "general", "blue", "蓝色"),
    Grade.III: ("较大", "relatively major", "yellow", "黄色"),
    Grade.II: ("重大", "major", "orange", "橙色"),
    Grade.I: ("特别重大", "particularly major", "red", "红色"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskEvent:
    """One observation that a risk condition holds (``firing``) or no longer holds (``cleared``).

    Produced by the hub's detection or by any other system (over HTTP later); ``alerts`` never imports the
    hub. ``key`` is stable per condition (``"hongxing/gas-b1-301/gas/level"``): every event about the same
    condition carries the same key, so the service keeps one open alert per key. ``grade`` is the grade the
    producer suggests (from the set point); :func:`alerts.grading.grade` decides the final one.
    ``threshold`` is the set point value in ``unit`` when there is one (shown in the message).
    ``time_ms`` is Unix milliseconds when the condition was seen, not when the event arrived.
    """

    key: str
    community: str
    grid: str
    sensor: str
    kind: str
    location_zh: str
    rule: str
    grade: Grade
    value: float
    unit: str
    time_ms: int
    status: EventStatus
    source: str
    confirmed_by_person: bool = False
    threshold: float | None = None
    rule_zh: str = ""
    """The rule's Chinese name when the producer has one (the hub's rules do); else messages look ``rule`` up."""
    below: bool | None = None
    """True when the condition is the value under ``threshold`` (low pressure, no water use), False over it; None:
    the producer does not say, and messages look the set point up in ``protocol.kinds`` (over when not found)."""
    cause: str | None = None
    """The key of the condition this one follows from (a sensor silent because its gateway is offline): while that
    condition's alert is open, this event is inhibited."""
    members: tuple[str, ...] = ()
    """For corroboration: the sensors whose conditions make it hold (a fire's smoke, heat and CO detectors)."""
    maintenance: bool = False
    """A fault of the equipment rather than a risk at the place (offline, low battery, drift, tamper…): the alert
    goes first to the maintenance people (the property company) instead of the grid's person on duty."""
    place: str = ""
    """The building (or other area) the condition is in, as the deployment names it: notifications of one place
    and urgency are grouped (``alerts.grouping``); empty: the grid is the place."""
    kind_zh: str = ""
    """The kind's Chinese name when it is no sensor kind of ``protocol.kinds`` (an outside system's "消防通道占用");
    empty: messages look the kind up."""
    kind_en: str = ""
    """Its English name (empty: ``kind`` as it is)."""

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > 256:
            raise ValueError(f"RiskEvent.key must be 1..256 characters, got {self.key!r}")
        if self.status not in ("firing", "cleared"):
            raise ValueError(f"RiskEvent.status must be 'firing' or 'cleared', got {self.status!r}")
        if not isinstance(self.grade, Grade):
            try:
                object.__setattr__(self, "grade", Grade(self.grade))
            except ValueError:
                raise ValueError(f"RiskEvent.grade must be 1..4, got {self.grade!r}") from None
        if not math.isfinite(self.value):
            raise ValueError(f"RiskEvent.value must be finite, got {self.value!r}")
        if self.time_ms < 0:
            raise ValueError(f"RiskEvent.time_ms must be Unix milliseconds, got {self.time_ms!r}")


class AlertState(enum.StrEnum):
    """Lifecycle of an alert (call response, 呼叫响应): open (triggered; ``notified_at_ms`` once a page was
    delivered) → acknowledged (接单) → en route → on site → resolved (with a note) → verified (by the community
    committee or property company) → closed; a resolved or verified alert can be reopened. People take every step
    after open; the service reopens a resolved alert whose condition stays in alarm."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    VERIFIED = "verified"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        """Still someone's to handle: not yet resolved."""
        return self in OPEN_STATES


OPEN_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE, AlertState.ON_SITE)
"""States before a person resolved the alert: events of its key go to it (one such alert per key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One risk condition as people handle it, from the first firing event until a person resolves it.

    ``revision`` counts the changes people were notified of (1 = opened; then each upgrade, clear and
    re-fire); it is part of every notification's idempotency key. ``cleared_at_ms`` is set when the
    condition cleared: the alert stays open until a person resolves it (the hazard may still need a visit).
    ``notified_at_ms`` is the first successful delivery of any notification of this alert. ``revision`` also counts
    each escalation and reminder.
    """

    id: str
    key: str
    community: str
    grid: str
    grade: Grade
    state: AlertState
    revision: int
    first_event: RiskEvent
    last_event: RiskEvent
    opened_at_ms: int
    updated_at_ms: int
    notified_at_ms: int | None = None
    acknowledged_by: str | None = None
    acknowledged_at_ms: int | None = None
    resolved_by: str | None = None
    resolved_at_ms: int | None = None
    resolved_note: str | None = None
    cleared_at_ms: int | None = None
    level: int = 0
    """How far up the escalation chain the alert has been paged (0: the grid's managers; ``alerts.escalation``)."""
    assigned_to: tuple[str, ...] = ()
    """People the alert was handed to (指派), in order: each is paged, and may see and handle it."""
    escalate_at_ms: int | None = None
    """When the alert's timer fires (``alerts.escalation``), None when none runs: while open, the acknowledgement
    deadline (then it climbs a level, or pages everyone again at the top); acknowledged or en route, the on-site
    deadline (then everyone reached is paged again); resolved while its condition is still in alarm, the time it
    reopens unless the condition clears first."""

    @property
    def is_open(self) -> bool:
        """True until a person resolves the alert (open, acknowledged, en route or on site)."""
        return self.state.is_open


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One audited change of an alert: who did it, over which channel, when.

    ``from_state`` is None for the opening. Grade upgrades and clears are recorded too, with
    ``from_state == to_state`` and a note, so the audit log tells the whole story.
    """

    alert_id: str
    from_state: AlertState | None
    to_state: AlertState
    by: str
    channel: str
    time_ms: int
    note: str = field(default="")
