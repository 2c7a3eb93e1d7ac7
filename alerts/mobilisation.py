"""Mobilisation in emergency mode (Art. 25–26): notices to residents, the volunteer roster, measures for property
companies (issue 6).

While an incident (:mod:`alerts.incidents`) is active, the community committee

* sends **notices** to the residents of the area through the area's broadcast receivers (:class:`Broadcast`: a WeCom
  or DingTalk group robot of the residents' group, a webhook to a building's PA system), Chinese first, English
  second;
* **mobilises volunteers**: those whose grids overlap the area (:class:`Volunteer`) are asked to join, each answers
  available or unavailable (:class:`Callout`), and the incident shows who is mobilised, with their skills;
* assigns **measures** to property companies (and other departments) with a deadline (:class:`Measure`, Art. 26);
  the company's people confirm each with a note; an unconfirmed measure past its deadline is overdue.

Every message goes out through a durable outbox (:class:`IncidentMessage`, one row per recipient and target, with
an idempotency key) that :class:`alerts.emergency.EmergencyDesk` delivers and retries; every step is audited under
the incident's id. This module holds the values and the pure rules (no I/O); the bodies are built here so every
channel renders them like an alert's notification (:mod:`alerts.message`).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from alerts.directory import Target
from alerts.incidents import Incident, ResidentReport
from alerts.message import Reason, iso8601
from alerts.model import Alert, Grade
from alerts.work_orders import Department

__all__ = [
    "INCIDENT_KIND_LABELS",
    "MEASURE_MAX_CHARS",
    "NOTICE_EN_MAX_CHARS",
    "NOTICE_ZH_MAX_CHARS",
    "Answer",
    "Broadcast",
    "Callout",
    "Draft",
    "IncidentBoard",
    "IncidentMessage",
    "Measure",
    "MessageStatus",
    "Notice",
    "RecipientKind",
    "Volunteer",
    "covers",
    "local_text",
    "message_body",
    "message_grade",
    "mobilised_skills",
]

NOTICE_ZH_MAX_CHARS = 500
NOTICE_EN_MAX_CHARS = 1000
"""Longest notice texts [characters]. A WeCom group robot takes at most 4,096 bytes of markdown and cuts the rest:
500 Chinese characters are 1,500 bytes of UTF-8, 1,000 English ones 1,000 bytes, and the message's other lines stay
under 600 — so a notice always reaches the residents' group whole."""

MEASURE_MAX_CHARS = 1000
"""Longest text of a measure [characters]: one task a property company can confirm, not a plan."""

INCIDENT_KIND_LABELS: Mapping[str, tuple[str, str]] = {
    "fire": ("火灾", "fire"),
    "flood": ("洪涝", "flood"),
    "gas": ("燃气泄漏", "gas leak"),
    "earthquake": ("地震", "earthquake"),
    "epidemic": ("疫情", "epidemic"),
    "power-outage": ("停电", "power outage"),
    "other": ("突发事件", "incident"),
}
"""Each incident kind in Chinese and English."""

RecipientKind = Literal["broadcast", "volunteer", "person"]
"""Who an incident message goes to: a broadcast receiver, a volunteer, or a person of the directory (a department's
people)."""

MessageStatus = Literal["pending", "sent", "failed"]


def covers(community: str, grids: Iterable[str], incident: Incident) -> bool:
    """Whether something of ``community`` covering ``grids`` (empty: all of it) overlaps the incident's area (its grids;
    none: the whole community)."""
    mine = set(grids)
    return community == incident.community and (not mine or not incident.grids or bool(mine & set(incident.grids)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Broadcast:
    """A broadcast receiver of an area: notices of incidents in ``grids`` (empty: the whole community) go to
    ``target`` — a residents' group robot, or a webhook to a building's PA / broadcast system."""

    id: str
    name: str
    community: str
    grids: tuple[str, ...] = ()
    target: Target

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise ValueError("a broadcast receiver needs an id and a name")

    def covers(self, incident: Incident) -> bool:
        return covers(self.community, self.grids, incident)


@dataclass(frozen=True, slots=True, kw_only=True)
class Volunteer:
    """A volunteer of the roster, asked to join incidents in ``grids`` (empty: the whole community); ``skills`` are
    plain words (``first-aid``, ``electrician``, ``elder-care``); ``targets`` may be empty (reached by phone, their
    answer recorded by staff)."""

    id: str
    name: str
    community: str
    skills: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    targets: tuple[Target, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise ValueError("a volunteer needs an id and a name")

    def covers(self, incident: Incident) -> bool:
        return covers(self.community, self.grids, incident)


class Answer(enum.StrEnum):
    """A volunteer's answer to being asked to join."""

    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"

    @property
    def label_zh(self) -> str:
        return {"available": "可以参加", "unavailable": "无法参加"}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    """A notice to the residents of an incident's area, sent by ``by`` at ``sent_ms`` to the ``broadcasts`` (ids)."""

    id: str = field(default_factory=lambda: f"ntc-{secrets.token_hex(8)}")
    incident_id: str
    text_zh: str
    text_en: str = ""
    by: str
    sent_ms: int
    broadcasts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.text_zh.strip():
            raise ValueError("a notice needs its Chinese text (text_zh)")
        if not self.by:
            raise ValueError("a notice needs who sent it")
        for name, text, limit in (("text_zh", self.text_zh, NOTICE_ZH_MAX_CHARS),
                                  ("text_en", self.text_en, NOTICE_EN_MAX_CHARS)):  # fmt: skip
            if len(text) > limit:
                raise ValueError(
                    f"the notice's {name} has {len(text)} characters; at most {limit} reach a residents' group uncut"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class Callout:
    """A volunteer asked to join an incident, and their latest answer (None: not answered yet)."""

    incident_id: str
    volunteer_id: str
    asked_by: str
    asked_ms: int
    answer: Answer | None = None
    answered_by: str | None = None
    answered_ms: int | None = None
    note: str = ""

    @property
    def mobilised(self) -> bool:
        """The volunteer said they are available."""
        return self.answer is Answer.AVAILABLE


@dataclass(frozen=True, slots=True, kw_only=True)
class Measure:
    """A measure assigned to a department (a property company) for an incident, due by ``due_ms`` [Unix ms], and its
    confirmation by one of the department's people."""

    id: str = field(default_factory=lambda: f"msr-{secrets.token_hex(8)}")
    incident_id: str
    department: str
    text: str
    due_ms: int
    assigned_by: str
    assigned_ms: int
    confirmed_by: str | None = None
    confirmed_ms: int | None = None
    note: str = ""
    """What the department says it did, given when it confirms."""
    reminded_due_ms: int | None = None
    """The deadline already reminded of (an overdue measure is re-notified once per deadline, restarts included)."""

    def __post_init__(self) -> None:
        if not self.text.strip() or not self.assigned_by:
            raise ValueError("a measure needs a text and who assigned it")
        if len(self.text) > MEASURE_MAX_CHARS:
            raise ValueError(f"the measure's text has {len(self.text)} characters; at most {MEASURE_MAX_CHARS}")
        if self.due_ms <= self.assigned_ms:
            raise ValueError("a measure's deadline must be after it is assigned")

    @property
    def confirmed(self) -> bool:
        return self.confirmed_ms is not None

    def overdue(self, now_ms: int) -> bool:
        """Not confirmed and past its deadline at ``now_ms``."""
        return self.confirmed_ms is None and self.due_ms <= now_ms


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentMessage:
    """One delivery in the incident outbox: a body for one target of one recipient, with its retry state.

    ``subject_id`` is what it is about (a notice's id, a measure's id, or ``call`` for a volunteer call-out);
    ``body`` is the JSON text built when the step was committed, sent unchanged on every retry.
    """

    key: str
    incident_id: str
    subject_id: str
    reason: str
    recipient_kind: RecipientKind
    recipient_id: str
    target_index: int
    body: str
    status: MessageStatus = "pending"
    attempts: int = 0
    next_attempt_ms: int = 0
    last_error: str | None = None
    created_ms: int = 0
    sent_ms: int | None = None

    @staticmethod
    def idempotency_key(subject: str, recipient_kind: str, recipient_id: str, target_index: int) -> str:
        """``f"{subject}:{recipient kind}:{recipient}:{target index}"`` — stable across retries and restarts;
        ``subject`` is unique per step (a notice's id, ``{incident}:call``, ``{measure}:assigned``,
        ``{measure}:overdue-{due ms}``)."""
        return f"{subject}:{recipient_kind}:{recipient_id}:{target_index}"


def mobilised_skills(callouts: Iterable[Callout], volunteers: Mapping[str, Volunteer]) -> dict[str, int]:
    """How many mobilised (available) volunteers have each skill, most common first."""
    counts: dict[str, int] = {}
    for callout in callouts:
        volunteer = volunteers.get(callout.volunteer_id)
        if callout.mobilised and volunteer is not None:
            for skill in volunteer.skills:
                counts[skill] = counts.get(skill, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def local_text(time_ms: int, timezone: str, *, zone: bool = False) -> str:
    """Unix ms as local date and time for people (``2026-06-01 16:30``), in ``timezone`` (an IANA name); with
    ``zone``, its UTC offset too (``2026-06-01 16:30 UTC+8``), for a message read beside UTC times (API, logs)."""
    moment = dt.datetime.fromtimestamp(time_ms / 1000, ZoneInfo(timezone))
    text = moment.strftime("%Y-%m-%d %H:%M")
    if not zone:
        return text
    offset = moment.utcoffset() or dt.timedelta()
    hours, rest = divmod(int(offset.total_seconds()) // 60, 60)
    return f"{text} UTC{hours:+d}" + (f":{rest:02d}" if rest else "")


def message_grade(alert_grades: Iterable[Grade]) -> Grade:
    """The grade incident messages carry for the channels that show or act on one (an SMS template's grade, a voice
    call for I–II): the most severe of the incident's alerts, and II at least — a declared incident is urgent."""
    return min((*alert_grades, Grade.II))


def message_body(
    incident: Incident,
    *,
    reason: Reason,
    idempotency_key: str,
    grade: Grade,
    area_zh: str,
    recipient_id: str,
    recipient_name: str,
    zh: str,
    en: str,
    time_ms: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one incident message, with the fields every channel reads from an alert's notification
    (``message_zh``/``message_en``, ``grade``, ``location_zh``, ``recipient``); ``alert_id`` carries the incident's
    id, the reference receivers print for a reply."""
    kind_zh, kind_en = INCIDENT_KIND_LABELS.get(incident.kind, (incident.kind, incident.kind))
    return {
        "version": 1,
        "idempotency_key": idempotency_key,
        "alert_id": incident.id,
        "incident_id": incident.id,
        "incident": {"id": incident.id, "kind": incident.kind, "title": incident.title, "grids": list(incident.grids)},
        "reason": reason.value,
        "reason_zh": reason.label_zh,
        "grade": {
            "number": int(grade),
            "roman": grade.roman,
            "label_zh": grade.label_zh,
            "label_en": grade.label_en,
            "colour": grade.colour,
            "colour_zh": grade.colour_zh,
        },
        "community": incident.community,
        "kind": incident.kind,
        "kind_zh": kind_zh,
        "kind_en": kind_en,
        "location_zh": area_zh,
        "event_time": iso8601(time_ms),
        "event_time_ms": time_ms,
        "source": "安居应急模式 Anju emergency mode (Art. 25–26)",
        "recipient": {"id": recipient_id, "name": recipient_name},
        "message_zh": zh,
        "message_en": en,
        "message": f"{zh}\n{en}",
        **(extra or {}),
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """What one step sends — its words, its reason, what it is about — before it is addressed: :meth:`messages`
    makes the outbox rows for one recipient, one per target, keyed ``{key_subject}:{kind}:{recipient}:{index}``."""

    incident: Incident
    subject_id: str
    key_subject: str
    reason: Reason
    grade: Grade
    area_zh: str
    zh: str
    en: str
    time_ms: int

    def messages(
        self,
        kind: RecipientKind,
        recipient_id: str,
        name: str,
        targets: Sequence[Target],
        extra: Mapping[str, Any] | None = None,
    ) -> list[IncidentMessage]:
        rows = []
        for index in range(len(targets)):
            key = IncidentMessage.idempotency_key(self.key_subject, kind, recipient_id, index)
            body = message_body(self.incident, reason=self.reason, idempotency_key=key, grade=self.grade,
                                area_zh=self.area_zh, recipient_id=recipient_id, recipient_name=name, zh=self.zh,
                                en=self.en, time_ms=self.time_ms, extra=extra)  # fmt: skip
            text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
            rows.append(IncidentMessage(key=key, incident_id=self.incident.id, subject_id=self.subject_id,
                                        reason=self.reason.value, recipient_kind=kind, recipient_id=recipient_id,
                                        target_index=index, body=text, next_attempt_ms=self.time_ms,
                                        created_ms=self.time_ms))  # fmt: skip
        return rows


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentBoard:
    """Everything the incident board and the printable summary show, as of ``now_ms``: the incident and its alerts,
    the households' reports, the notices and their deliveries, the volunteers asked and the measures."""

    incident: Incident
    area_zh: str
    """The area as people read it: the community and its grids' names."""
    alerts: tuple[Alert, ...]
    reports: tuple[ResidentReport, ...]
    notices: tuple[Notice, ...]
    callouts: tuple[Callout, ...]
    measures: tuple[Measure, ...]
    messages: tuple[IncidentMessage, ...]
    volunteers: Mapping[str, Volunteer]
    broadcasts: Mapping[str, Broadcast]
    departments: Mapping[str, Department]
    now_ms: int

    def deliveries(self, subject_id: str) -> list[IncidentMessage]:
        """The messages about one notice or measure (``call`` for the volunteer call-outs)."""
        return [m for m in self.messages if m.subject_id == subject_id]

    def overdue(self) -> list[Measure]:
        """Measures not confirmed by their deadline."""
        return [m for m in self.measures if m.overdue(self.now_ms)]

    def mobilised(self) -> list[Callout]:
        """The volunteers who said they are available."""
        return [c for c in self.callouts if c.mobilised]

    def recipient_name(self, message: IncidentMessage) -> str:
        """Who a message went to, by name when the deployment still lists them."""
        if message.recipient_kind == "broadcast" and message.recipient_id in self.broadcasts:
            return self.broadcasts[message.recipient_id].name
        if message.recipient_kind == "volunteer" and message.recipient_id in self.volunteers:
            return self.volunteers[message.recipient_id].name
        return message.recipient_id
