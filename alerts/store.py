"""The alert database: alerts, their audit trail, and the outbox of notifications.

One SQLite file (WAL) per hub, or — when hubs share alert state (issue 8) — one PostgreSQL schema per community
(alerts/sqldb.py: the same SQL on both engines). Fourteen tables:

* ``alerts`` — one row per alert; a partial unique index allows one not-yet-resolved alert per key (open,
  acknowledged, en route or on site), so the dedup rule holds in the data even if a bug slipped past the service.
* ``transitions`` — the audit log: every state change, upgrade, clear, escalation and delivery of an alert, and
  every silence set or lifted (its subject, ``alert_id``, is then the silence's id), with who, when and the
  channel. Append-only (triggers refuse UPDATE and DELETE) and hash-chained: each row's ``hash`` is SHA-256 of the
  previous row's hash and the row's own fields, so a row changed, removed or inserted in the file breaks the chain
  at that row (:meth:`AlertStore.verify_audit`, ``anju-hub audit verify``). Someone who can write the file could
  rebuild the whole chain after a change; the head hash, which ``verify`` prints, is what to record elsewhere.
* ``silences`` — maintenance windows (``alerts.silence``): which events they mute, from when to when, who set them
  and why, and how many events they muted.
* ``incidents`` and ``resident_reports`` — emergency mode (``alerts.incidents``): incidents, their alerts and
  each household's latest status, every change audited.
* ``incident_notices``, ``incident_callouts``, ``incident_measures`` and ``incident_messages`` — mobilisation in
  emergency mode (``alerts.mobilisation``): notices to residents, volunteers asked and their answers, measures for
  property companies and their confirmations, and the incident outbox (keyed by idempotency key, like
  ``notifications``, which can only hold an alert's notifications to a person); every step audited under the
  incident's id.
* ``disclosures`` — what was published to residents (``alerts.disclosure``), and withdrawn, audited.
* ``hazards`` — the hazard register (``alerts.hazards``), its changes audited under the hazard's id.
* ``work_orders`` and ``work_order_evidence`` — remediation dispatched from alerts to departments, with before and
  after evidence links (``alerts.work_orders``); their steps are audited in ``transitions`` under the alert.
* ``notifications`` — the outbox. Its primary key is the idempotency key
  ``f"{alert_id}:{revision}:{person}:{target index}"``. :meth:`AlertStore.commit` writes an alert change and
  its pending notifications in ONE transaction before any delivery is tried: a crash after the commit
  leaves them pending and the next process sends them; a row is marked ``sent`` only after the receiver
  answered 2xx, so a confirmed delivery is never sent again (receivers dedup by the key for the gap
  between their 2xx and our commit).

The methods are synchronous and short (indexed single-row reads and writes). :class:`alerts.service.AlertService`
runs them with ``asyncio.to_thread`` so a slow disk (an SD card on a small box) never stalls the event
loop; one connection guarded by a lock serves those threads (on PostgreSQL, one for writes and one for reads).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from alerts.disclosure import Disclosure
from alerts.hazards import Hazard, HazardState
from alerts.incidents import HouseholdStatus, Incident, ResidentReport
from alerts.mobilisation import Answer, Callout, IncidentMessage, Measure, Notice
from alerts.model import OPEN_STATES, Alert, AlertState, Grade, RiskEvent, Transition
from alerts.roster import RosterChange
from alerts.silence import Silence, SilenceMatch
from alerts.sqldb import (
    Database,
    Fence,
    Row,
    Session,
    SqliteDatabase,
    append_only_ddl,
    chained_ddl,
    open_database,
    postgres_ddl,
)
from alerts.stats import AlertTimes
from alerts.work_orders import Evidence, WorkOrder, WorkOrderState

__all__ = ["AlertStore", "AuditReport", "AuditRow", "Notification", "NotificationStatus", "audit_hash"]

NotificationStatus = Literal["pending", "sent", "failed"]

_TRANSITIONS = """(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT NOT NULL,
    by TEXT NOT NULL,
    channel TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL,
    prev_hash TEXT,
    hash TEXT
)"""
"""The audit log's columns: ``alert_id`` is its subject (an alert, or a silence's id)."""

_OPEN_SQL = ", ".join(f"'{state.value}'" for state in OPEN_STATES)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    community TEXT NOT NULL,
    grid TEXT NOT NULL,
    grade INTEGER NOT NULL,
    state TEXT NOT NULL,
    revision INTEGER NOT NULL,
    first_event TEXT NOT NULL,
    last_event TEXT NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    notified_at_ms INTEGER,
    acknowledged_by TEXT,
    acknowledged_at_ms INTEGER,
    resolved_by TEXT,
    resolved_at_ms INTEGER,
    resolved_note TEXT,
    cleared_at_ms INTEGER,
    level INTEGER NOT NULL DEFAULT 0,
    escalate_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts(state, opened_at_ms);
CREATE TABLE IF NOT EXISTS transitions {_TRANSITIONS};
CREATE INDEX IF NOT EXISTS transitions_by_alert ON transitions(alert_id, seq);
CREATE TABLE IF NOT EXISTS notifications (
    key TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    revision INTEGER NOT NULL,
    reason TEXT NOT NULL,
    person_id TEXT NOT NULL,
    target_index INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(status, next_attempt_ms);
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at_ms INTEGER NOT NULL,
    ends_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    reason TEXT NOT NULL,
    cancelled_by TEXT,
    cancelled_ms INTEGER,
    muted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS silences_by_end ON silences(ends_at_ms);
CREATE TABLE IF NOT EXISTS work_orders (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    department TEXT NOT NULL,
    task TEXT NOT NULL,
    state TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    reminded_due_ms INTEGER
);
CREATE INDEX IF NOT EXISTS work_orders_by_alert ON work_orders(alert_id);
CREATE INDEX IF NOT EXISTS work_orders_by_due ON work_orders(state, due_ms);
CREATE TABLE IF NOT EXISTS hazards (
    id TEXT PRIMARY KEY,
    community TEXT NOT NULL,
    grid TEXT NOT NULL,
    place TEXT NOT NULL,
    title TEXT NOT NULL,
    grade INTEGER NOT NULL,
    owner TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_review_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    last_review_ms INTEGER,
    last_finding TEXT NOT NULL,
    alerts TEXT NOT NULL,
    overdue_ms INTEGER
);
CREATE INDEX IF NOT EXISTS hazards_due ON hazards(state, next_review_ms);
CREATE TABLE IF NOT EXISTS disclosures (
    id TEXT PRIMARY KEY,
    subject_kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_ms INTEGER NOT NULL,
    withdrawn_by TEXT,
    withdrawn_ms INTEGER
);
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    community TEXT NOT NULL,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    grids TEXT NOT NULL,
    fields TEXT NOT NULL,
    declared_by TEXT NOT NULL,
    declared_ms INTEGER NOT NULL,
    closed_by TEXT,
    closed_ms INTEGER,
    alerts TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resident_reports (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    household TEXT NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    "values" TEXT NOT NULL,
    reported_by TEXT NOT NULL,
    reported_ms INTEGER NOT NULL,
    verified_by TEXT,
    verified_ms INTEGER,
    PRIMARY KEY (incident_id, household)
);
CREATE TABLE IF NOT EXISTS work_order_evidence (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    work_order_id TEXT NOT NULL REFERENCES work_orders(id),
    phase TEXT NOT NULL,
    url TEXT NOT NULL,
    by TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incident_notices (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    text_zh TEXT NOT NULL,
    text_en TEXT NOT NULL,
    by TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    broadcasts TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_notices_by_incident ON incident_notices(incident_id, sent_ms);
CREATE TABLE IF NOT EXISTS incident_callouts (
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    volunteer_id TEXT NOT NULL,
    asked_by TEXT NOT NULL,
    asked_ms INTEGER NOT NULL,
    answer TEXT,
    answered_by TEXT,
    answered_ms INTEGER,
    note TEXT NOT NULL,
    PRIMARY KEY (incident_id, volunteer_id)
);
CREATE TABLE IF NOT EXISTS incident_measures (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    department TEXT NOT NULL,
    text TEXT NOT NULL,
    due_ms INTEGER NOT NULL,
    assigned_by TEXT NOT NULL,
    assigned_ms INTEGER NOT NULL,
    confirmed_by TEXT,
    confirmed_ms INTEGER,
    note TEXT NOT NULL,
    reminded_due_ms INTEGER
);
CREATE INDEX IF NOT EXISTS incident_measures_by_incident ON incident_measures(incident_id, assigned_ms);
CREATE INDEX IF NOT EXISTS incident_measures_due ON incident_measures(due_ms) WHERE confirmed_ms IS NULL;
CREATE TABLE IF NOT EXISTS incident_messages (
    key TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL REFERENCES incidents(id),
    subject_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    recipient_kind TEXT NOT NULL,
    recipient_id TEXT NOT NULL,
    target_index INTEGER NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    created_ms INTEGER NOT NULL,
    sent_ms INTEGER
);
CREATE INDEX IF NOT EXISTS incident_messages_due ON incident_messages(status, next_attempt_ms);
CREATE INDEX IF NOT EXISTS incident_messages_by_incident ON incident_messages(incident_id, created_ms);
CREATE TABLE IF NOT EXISTS roster_changes (
    roster_id TEXT NOT NULL,
    day TEXT NOT NULL,
    shift TEXT NOT NULL,
    people TEXT NOT NULL,
    by TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (roster_id, day, shift)
);
"""

_UNCHAINED_SUBJECTS = f"""
CREATE TABLE transitions_rebuilt {_TRANSITIONS};
INSERT INTO transitions_rebuilt SELECT seq, alert_id, from_state, to_state, by, channel, time_ms, note, prev_hash, hash
    FROM transitions ORDER BY seq;
DROP TABLE transitions;
ALTER TABLE transitions_rebuilt RENAME TO transitions;
CREATE INDEX IF NOT EXISTS transitions_by_alert ON transitions(alert_id, seq);
"""
"""The audit log's subject was an alert only (a foreign key to ``alerts``); silences are audited in the same chain
since, so a database from before is rebuilt once without that key (rows, order and hashes kept)."""

_ADDED_COLUMNS = (
    ("alerts", "level", "INTEGER NOT NULL DEFAULT 0"),
    ("alerts", "escalate_at_ms", "INTEGER"),
    ("transitions", "prev_hash", "TEXT"),
    ("transitions", "hash", "TEXT"),
    ("notifications", "group_key", "TEXT NOT NULL DEFAULT ''"),
    ("notifications", "page_ms", "INTEGER"),
    ("incidents", "buildings", "TEXT NOT NULL DEFAULT '[]'"),
    ("alerts", "assigned_to", "TEXT NOT NULL DEFAULT '[]'"),
)
"""Columns added after the first release: a database made before them gains them at open (its older audit rows stay
unchained: ``verify_audit`` counts them apart). The one-open-alert-per-key index was remade when the lifecycle gained
states after ``resolved`` (verified, closed)."""

_LATER_INDEXES = """
DROP INDEX IF EXISTS alerts_one_open_per_key;
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open_per_key_v2 ON alerts(key)
    WHERE state IN ('open', 'acknowledged', 'en_route', 'on_site');
CREATE INDEX IF NOT EXISTS alerts_escalation ON alerts(escalate_at_ms) WHERE escalate_at_ms IS NOT NULL;
CREATE INDEX IF NOT EXISTS notifications_group ON notifications(person_id, target_index, group_key, status)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_pages ON notifications(page_ms) WHERE page_ms IS NOT NULL;
"""


_ALL = 2**62
"""A ``LIMIT`` that takes every row (SQLite's -1 is an error in PostgreSQL)."""

GENESIS = "0" * 64
"""The ``prev_hash`` of the first chained audit row."""


AuditFields = tuple[str, str | None, str, str, str, int, str]
"""One audit row as stored: subject (alert or silence id), from, to, by, channel, time ms, note."""


def audit_hash(prev_hash: str, fields: AuditFields) -> str:
    """SHA-256 (hex) chaining one audit row to the one before it: the previous hash and the row's fields as JSON."""
    text = prev_hash + "\n" + json.dumps(list(fields), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _fields(t: Transition) -> AuditFields:
    return (
        t.alert_id,
        t.from_state.value if t.from_state else None,
        t.to_state.value,
        t.by,
        t.channel,
        t.time_ms,
        t.note,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRow:
    """One row of the audit log as stored: ``subject`` is an alert's or a silence's id."""

    seq: int
    subject: str
    from_state: str | None
    to_state: str
    by: str
    channel: str
    time_ms: int
    note: str
    prev_hash: str | None
    hash: str | None


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What ``verify_audit`` found: ``chained`` rows checked, ``unchained`` rows from before the chain existed,
    ``broken_at`` the seq of the first row that does not match (None: intact), and the ``head`` hash."""

    chained: int
    unchained: int
    broken_at: int | None
    reason: str
    head: str

    @property
    def intact(self) -> bool:
        return self.broken_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One delivery in the outbox: a body for one target of one person, with its retry state.

    ``body`` is the JSON text built when the alert change was committed; retries send it unchanged.
    """

    key: str
    alert_id: str
    revision: int
    reason: str
    person_id: str
    target_index: int
    body: str
    status: NotificationStatus = "pending"
    attempts: int = 0
    next_attempt_ms: int = 0
    last_error: str | None = None
    created_ms: int = 0
    sent_ms: int | None = None
    group_key: str = ""
    """The notification group (``alerts.grouping``): due notifications of one person's target and group are sent
    as one digest; empty: never grouped."""
    page_ms: int | None = None
    """When the group window scheduled it (ms; retries move ``next_attempt_ms``, not this)."""

    @staticmethod
    def idempotency_key(alert_id: str, revision: int, person_id: str, target_index: int) -> str:
        """``f"{alert_id}:{revision}:{person}:{target index}"`` — stable across retries and restarts."""
        return f"{alert_id}:{revision}:{person_id}:{target_index}"


_EVENT_FIELDS = tuple(f.name for f in dataclass_fields(RiskEvent))


def _event_json(event: RiskEvent) -> str:
    # Field by field, not dataclasses.asdict: its deep copy was a tenth of the alert commit's CPU at 1,000 events/s.
    return json.dumps({name: getattr(event, name) for name in _EVENT_FIELDS}, ensure_ascii=False, separators=(",", ":"))


_CHAIN_HEAD = "transitions.head"
"""The session memo's key for the audit chain's head (alerts/sqldb.py; its trigger ``chained_ddl`` guards it)."""


def _append_audit(db: Session, transitions: Sequence[Transition | AuditFields]) -> None:
    """Append ``transitions`` to the audit log, each chained to the one before (inside the caller's transaction,
    which BEGIN IMMEDIATE makes the only writer)."""
    if not transitions:
        return
    memo: dict[str, Any] | None = getattr(db, "memo", None)  # PostgreSQL: the head kept from the last commit
    prev = memo.get(_CHAIN_HEAD) if memo is not None else None
    if prev is None:
        row = db.execute("SELECT hash FROM transitions WHERE hash IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
    rows = []
    for t in transitions:
        fields = _fields(t) if isinstance(t, Transition) else t
        digest = audit_hash(prev, fields)
        rows.append((*fields, prev, digest))
        prev = digest
    if memo is not None:
        memo[_CHAIN_HEAD] = prev
    db.executemany(
        "INSERT INTO transitions (alert_id, from_state, to_state, by, channel, time_ms, note, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )


def _write_alert(
    db: Session,
    alert: Alert,
    transitions: Sequence[Transition],
    notifications: Sequence[Notification],
    work_order: WorkOrder | None,
    new_evidence: Sequence[Evidence],
) -> None:
    """One alert change inside the caller's transaction: the alert row, a work order, audit rows, notifications."""
    first_json = _event_json(alert.first_event)
    db.execute(
        "INSERT INTO alerts (id, key, community, grid, grade, state, revision, first_event, last_event, "
        "opened_at_ms, updated_at_ms, notified_at_ms, acknowledged_by, acknowledged_at_ms, resolved_by, "
        "resolved_at_ms, resolved_note, cleared_at_ms, level, escalate_at_ms, assigned_to) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
        "grade=excluded.grade, state=excluded.state, revision=excluded.revision, "
        "last_event=excluded.last_event, updated_at_ms=excluded.updated_at_ms, "
        "acknowledged_by=excluded.acknowledged_by, acknowledged_at_ms=excluded.acknowledged_at_ms, "
        "resolved_by=excluded.resolved_by, resolved_at_ms=excluded.resolved_at_ms, "
        "resolved_note=excluded.resolved_note, cleared_at_ms=excluded.cleared_at_ms, "
        "level=excluded.level, escalate_at_ms=excluded.escalate_at_ms, assigned_to=excluded.assigned_to",
        (
            alert.id,
            alert.key,
            alert.community,
            alert.grid,
            int(alert.grade),
            alert.state.value,
            alert.revision,
            first_json,
            first_json if alert.last_event is alert.first_event else _event_json(alert.last_event),
            alert.opened_at_ms,
            alert.updated_at_ms,
            alert.notified_at_ms,
            alert.acknowledged_by,
            alert.acknowledged_at_ms,
            alert.resolved_by,
            alert.resolved_at_ms,
            alert.resolved_note,
            alert.cleared_at_ms,
            alert.level,
            alert.escalate_at_ms,
            json.dumps(list(alert.assigned_to)),
        ),
    )
    if work_order is not None:
        _write_work_order(db, work_order, new_evidence)
    _append_audit(db, transitions)
    db.executemany(
        "INSERT INTO notifications (key, alert_id, revision, reason, person_id, target_index, "
        "body, status, attempts, next_attempt_ms, last_error, created_ms, sent_ms, group_key, page_ms) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        [
            (
                n.key,
                n.alert_id,
                n.revision,
                n.reason,
                n.person_id,
                n.target_index,
                n.body,
                n.status,
                n.attempts,
                n.next_attempt_ms,
                n.last_error,
                n.created_ms,
                n.sent_ms,
                n.group_key,
                n.page_ms,
            )
            for n in notifications
        ],
    )


def _mark_sent_in(db: Session, sent: Sequence[tuple[str, int]]) -> None:
    """Record deliveries (key, ms) inside the caller's transaction: one audit row each, appended in one go."""
    found = _audit_deliveries(db, [(key, now_ms, "delivered") for key, now_ms in sent])
    db.executemany(
        "UPDATE notifications SET status='sent', attempts=attempts+1, sent_ms=?, last_error=NULL WHERE key=?",
        [(now_ms, key) for key, now_ms in sent],
    )
    db.executemany(
        "UPDATE alerts SET notified_at_ms = COALESCE(notified_at_ms, ?) WHERE id = ?",
        [(now_ms, found[key]) for key, now_ms in sent if key in found],
    )


def _write_work_order(db: Session, order: WorkOrder, new_evidence: Sequence[Evidence]) -> None:
    db.execute(
        "INSERT INTO work_orders (id, alert_id, department, task, state, due_ms, created_by, created_ms, updated_ms, "
        "reminded_due_ms) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
        "due_ms=excluded.due_ms, updated_ms=excluded.updated_ms, reminded_due_ms=excluded.reminded_due_ms",
        (
            order.id,
            order.alert_id,
            order.department,
            order.task,
            order.state.value,
            order.due_ms,
            order.created_by,
            order.created_ms,
            order.updated_ms,
            order.reminded_due_ms,
        ),
    )
    db.executemany(
        "INSERT INTO work_order_evidence (work_order_id, phase, url, by, time_ms, note) VALUES (?,?,?,?,?,?)",
        [(order.id, e.phase, e.url, e.by, e.time_ms, e.note) for e in new_evidence],
    )


def _audit_deliveries(db: Session, outcomes: Sequence[tuple[str, int, str]]) -> dict[str, str]:
    """Audit rows for the end of notifications' deliveries — (key, ms, outcome) — the alerts' states unchanged,
    appended in one go; the alert id of each key found."""
    found: dict[str, Row] = {}
    keys = [key for key, _, _ in outcomes]
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = db.execute(
            "SELECT n.key, n.alert_id, n.reason, n.person_id, n.target_index, a.state FROM notifications n "
            f"JOIN alerts a ON a.id = n.alert_id WHERE n.key IN ({marks})",
            chunk,
        ).fetchall()
        found.update((row["key"], row) for row in rows)
    audits = []
    for key, now_ms, outcome in outcomes:
        row = found.get(key)
        if row is None:
            continue
        state = AlertState(row["state"])
        note = f"{row['reason']} notification to {row['person_id']} (target {row['target_index']}): {outcome}"
        audits.append(
            Transition(
                alert_id=row["alert_id"], from_state=state, to_state=state, by="anju", channel="webhook",
                time_ms=now_ms, note=note,
            )
        )  # fmt: skip
    _append_audit(db, audits)
    return {key: row["alert_id"] for key, row in found.items()}


def _incident_from(r: Row) -> Incident:
    return Incident(
        id=r["id"],
        community=r["community"],
        kind=r["kind"],
        title=r["title"],
        grids=tuple(json.loads(r["grids"])),
        buildings=tuple(json.loads(r["buildings"])),
        fields=tuple(json.loads(r["fields"])),
        declared_by=r["declared_by"],
        declared_ms=r["declared_ms"],
        closed_by=r["closed_by"],
        closed_ms=r["closed_ms"],
        alerts=tuple(json.loads(r["alerts"])),
    )


def _notice_from(r: Row) -> Notice:
    return Notice(id=r["id"], incident_id=r["incident_id"], text_zh=r["text_zh"], text_en=r["text_en"], by=r["by"],
                  sent_ms=r["sent_ms"], broadcasts=tuple(json.loads(r["broadcasts"])))  # fmt: skip


def _callout_from(r: Row) -> Callout:
    return Callout(incident_id=r["incident_id"], volunteer_id=r["volunteer_id"], asked_by=r["asked_by"],
                   asked_ms=r["asked_ms"], answer=Answer(r["answer"]) if r["answer"] else None,
                   answered_by=r["answered_by"], answered_ms=r["answered_ms"], note=r["note"])  # fmt: skip


def _measure_from(r: Row) -> Measure:
    return Measure(id=r["id"], incident_id=r["incident_id"], department=r["department"], text=r["text"],
                   due_ms=r["due_ms"], assigned_by=r["assigned_by"], assigned_ms=r["assigned_ms"],
                   confirmed_by=r["confirmed_by"], confirmed_ms=r["confirmed_ms"], note=r["note"],
                   reminded_due_ms=r["reminded_due_ms"])  # fmt: skip


def _incident_message_from(r: Row) -> IncidentMessage:
    return IncidentMessage(**{name: r[name] for name in r.keys()})  # noqa: SIM118 - Row


_MEASURE_WAITING = "m.confirmed_ms IS NULL AND (m.reminded_due_ms IS NULL OR m.reminded_due_ms != m.due_ms)"
"""An unconfirmed measure whose deadline was not reminded of yet."""


def _disclosure_from(r: Row) -> Disclosure:
    return Disclosure(
        id=r["id"],
        subject_kind=r["subject_kind"],
        subject_id=r["subject_id"],
        title=r["title"],
        text=r["text"],
        published_by=r["published_by"],
        published_ms=r["published_ms"],
        withdrawn_by=r["withdrawn_by"],
        withdrawn_ms=r["withdrawn_ms"],
    )


def _hazard_from(r: Row) -> Hazard:
    return Hazard(
        id=r["id"],
        community=r["community"],
        grid=r["grid"],
        place=r["place"],
        title=r["title"],
        grade=Grade(r["grade"]),
        owner=r["owner"],
        created_by=r["created_by"],
        created_ms=r["created_ms"],
        next_review_ms=r["next_review_ms"],
        state=HazardState(r["state"]),
        last_review_ms=r["last_review_ms"],
        last_finding=r["last_finding"],
        alerts=tuple(json.loads(r["alerts"])),
        overdue_ms=r["overdue_ms"],
    )


def _silence_from(r: Row) -> Silence:
    return Silence(
        id=r["id"],
        match=SilenceMatch.from_json(r["matchers"]),
        starts_at_ms=r["starts_at_ms"],
        ends_at_ms=r["ends_at_ms"],
        created_by=r["created_by"],
        created_ms=r["created_ms"],
        reason=r["reason"],
        cancelled_by=r["cancelled_by"],
        cancelled_ms=r["cancelled_ms"],
        muted=r["muted"],
    )


def _transition_from(r: Row) -> Transition:
    return Transition(
        alert_id=r["alert_id"],
        from_state=AlertState(r["from_state"]) if r["from_state"] else None,
        to_state=AlertState(r["to_state"]),
        by=r["by"],
        channel=r["channel"],
        time_ms=r["time_ms"],
        note=r["note"],
    )


def _event_from(text: str) -> RiskEvent:
    data: dict[str, Any] = json.loads(text)
    data["grade"] = Grade(data["grade"])
    data["members"] = tuple(data.get("members", ()))
    return RiskEvent(**data)


def _alert_from(row: Row) -> Alert:
    return Alert(
        id=row["id"],
        key=row["key"],
        community=row["community"],
        grid=row["grid"],
        grade=Grade(row["grade"]),
        state=AlertState(row["state"]),
        revision=row["revision"],
        first_event=_event_from(row["first_event"]),
        last_event=_event_from(row["last_event"]),
        opened_at_ms=row["opened_at_ms"],
        updated_at_ms=row["updated_at_ms"],
        notified_at_ms=row["notified_at_ms"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at_ms=row["acknowledged_at_ms"],
        resolved_by=row["resolved_by"],
        resolved_at_ms=row["resolved_at_ms"],
        resolved_note=row["resolved_note"],
        cleared_at_ms=row["cleared_at_ms"],
        level=row["level"],
        escalate_at_ms=row["escalate_at_ms"],
        assigned_to=tuple(json.loads(row["assigned_to"])),
    )


def _alert_where(
    states: Collection[str] | None, grades: Collection[Grade], after: tuple[int, str] | None
) -> tuple[str, list[object]]:
    """The WHERE clause (or "") and its parameters of an alert list: in ``states`` (values; None: any), in
    ``grades`` (empty: any), after the position ``(opened_at_ms, id)`` in the newest-first order."""
    clauses: list[str] = []
    params: list[object] = []
    if states is not None:
        clauses.append(f"state IN ({', '.join('?' * len(states))})")
        params += sorted(states)
    if grades:
        clauses.append(f"grade IN ({', '.join('?' * len(grades))})")
        params += sorted(int(g) for g in grades)
    if after is not None:
        clauses.append("(opened_at_ms < ? OR (opened_at_ms = ? AND id > ?))")
        params += [after[0], after[0], after[1]]
    return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def _notification_from(row: Row) -> Notification:
    return Notification(**{name: row[name] for name in row.keys()})  # noqa: SIM118 - Row


class AlertStore:
    """The alert database: a SQLite file at ``target`` (``":memory:"`` works for a single-process test), or the schema
    ``schema`` of the PostgreSQL database at a ``postgresql://`` URL (hubs that share alert state, issue 8), where
    ``fence`` guards every write (the hub's lease, hub/lease.py). ``read_only`` (PostgreSQL): another process's
    alert state, read as it is (the district node, hub/district/): no table is created or altered and every write
    is refused; a schema no hub has created yet fails at the first read."""

    def __init__(
        self, target: str | Path, *, schema: str = "anju", fence: Fence | None = None, read_only: bool = False
    ) -> None:
        self._db: Database = open_database(target, schema=schema, fence=fence, read_only=read_only)
        self.path = self._db.where
        if read_only:
            return
        if isinstance(self._db, SqliteDatabase):
            self._db.script(_SCHEMA)
            for table, name, declaration in _ADDED_COLUMNS:
                if name not in self._db.columns(table):
                    self._db.script(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
            if self._db.has_foreign_keys("transitions"):
                self._db.script(f"BEGIN IMMEDIATE;{_UNCHAINED_SUBJECTS}COMMIT;")
            self._db.script(_LATER_INDEXES + append_only_ddl("transitions", "sqlite"))
        else:
            added = "".join(
                f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {declaration};\n"
                for table, name, declaration in _ADDED_COLUMNS
            )
            self._db.script(
                postgres_ddl(_SCHEMA + added + _LATER_INDEXES)
                + append_only_ddl("transitions", "postgresql")
                + chained_ddl("transitions", GENESIS)
            )

    @property
    def where(self) -> str:
        """The file, or PostgreSQL's ``host:port/database/schema``, for messages."""
        return self._db.where

    def close(self) -> None:
        """Close the database; further calls fail."""
        self._db.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _transaction(self, *, durable: bool = True, pipelined: bool = False) -> AbstractContextManager[Session]:
        """One write transaction, the only writer of the database while it runs (the audit chain's order).
        ``durable=False`` commits without waiting for the disk: a power cut may lose it, a crash of the hub does
        not — only for records whose loss repeats harmless work. ``pipelined`` (PostgreSQL) for the hot writes that
        read no row count (alerts/sqldb.py)."""
        return self._db.transaction(durable=durable, pipelined=pipelined)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.query(sql, params)

    # --- alerts -------------------------------------------------------------------------------------------

    def open_alert(self, key: str) -> Alert | None:
        """The alert for ``key`` that is not resolved yet, if any."""
        rows = self._query(f"SELECT * FROM alerts WHERE key = ? AND state IN ({_OPEN_SQL})", (key,))
        return _alert_from(rows[0]) if rows else None

    def awaiting_clear(self, key: str) -> Alert | None:
        """The resolved alert for ``key`` whose condition was still in alarm when it was resolved and has not
        cleared since (it reopens unless the condition clears), if any."""
        rows = self._query(
            "SELECT * FROM alerts WHERE key = ? AND state = 'resolved' AND cleared_at_ms IS NULL "
            "AND escalate_at_ms IS NOT NULL ORDER BY opened_at_ms DESC LIMIT 1",
            (key,),
        )
        return _alert_from(rows[0]) if rows else None

    def get(self, alert_id: str) -> Alert | None:
        """The alert with ``alert_id``, or None."""
        rows = self._query("SELECT * FROM alerts WHERE id = ?", (alert_id,))
        return _alert_from(rows[0]) if rows else None

    def alert_positions(
        self,
        *,
        states: Collection[AlertState] | None,
        grades: Collection[Grade],
        limit: int,
        after: tuple[int, str] | None,
    ) -> list[tuple[int, str]]:
        """The positions ``(opened_at_ms, id)`` of up to ``limit`` alerts in ``list_alerts``' order, in ``states``
        (None: any) and ``grades`` (empty: any), after ``after``: a page's keys without reading its rows, for a
        caller merging several stores' lists (hub/district/), who then reads only the rows it shows (``get_many``)."""
        if states is not None and not states:
            return []
        wanted = None if states is None else {s.value for s in states}
        where, params = _alert_where(wanted, grades, after)
        sql = f"SELECT opened_at_ms, id FROM alerts {where} ORDER BY opened_at_ms DESC, id LIMIT ?"
        return [(r["opened_at_ms"], r["id"]) for r in self._query(sql, (*params, limit))]

    def get_many(self, alert_ids: Collection[str]) -> dict[str, Alert]:
        """The alerts with these ids (those that exist), by id."""
        if not alert_ids:
            return {}
        marks = ", ".join("?" * len(alert_ids))
        rows = self._query(f"SELECT * FROM alerts WHERE id IN ({marks})", [*alert_ids])
        return {r["id"]: _alert_from(r) for r in rows}

    def open_counts(self) -> tuple[dict[Grade, int], int, int]:
        """Open alerts (open … on site) by grade, how many of them were paged up the escalation chain, and how many
        nobody has acknowledged yet — counted by the database, no row read."""
        rows = self._query(
            "SELECT grade, count(*) AS n, sum(CASE WHEN level > 0 THEN 1 ELSE 0 END) AS escalated, "
            "sum(CASE WHEN state = 'open' THEN 1 ELSE 0 END) AS unacknowledged "
            f"FROM alerts WHERE state IN ({_OPEN_SQL}) GROUP BY grade"
        )
        by_grade = {Grade(r["grade"]): int(r["n"]) for r in rows}
        return by_grade, sum(int(r["escalated"]) for r in rows), sum(int(r["unacknowledged"]) for r in rows)

    def report_counts(self, incident_ids: Collection[str]) -> dict[str, int]:
        """Households of the incidents ``incident_ids`` by status, with ``households`` and ``verified`` — as
        ``alerts.incidents.summary`` counts them, by the database."""
        counts = {status.value: 0 for status in HouseholdStatus}
        total = verified = 0
        if incident_ids:
            marks = ", ".join("?" * len(incident_ids))
            rows = self._query(
                "SELECT status, count(*) AS n, sum(CASE WHEN verified_ms IS NULL THEN 0 ELSE 1 END) AS verified "
                f"FROM resident_reports WHERE incident_id IN ({marks}) GROUP BY status",
                [*incident_ids],
            )
            for r in rows:
                counts[r["status"]] = counts.get(r["status"], 0) + int(r["n"])
                total += int(r["n"])
                verified += int(r["verified"])
        return {**counts, "households": total, "verified": verified}

    def list_alerts(
        self,
        *,
        state: AlertState | None = None,
        states: Collection[AlertState] | None = None,
        limit: int = 100,
        matching: Callable[[Alert], bool] | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[Alert]:
        """Alerts newest first, optionally only those in ``state`` or in ``states`` (both: in both); ``limit`` -1 for
        all of them (SQLite's LIMIT). ``matching``: only alerts it accepts count (a caller's scope), read in pages
        until ``limit`` are found. States are filtered in SQL (index ``alerts_by_state``) before any row is read.
        ``after``: only those after the position ``(opened_at_ms, id)`` in this order (a keyset page: alerts opened
        meanwhile sort before it and do not shift the rest; ``opened_at_ms`` never changes once set)."""
        wanted = None if states is None else {s.value for s in states}
        if state is not None:
            wanted = {state.value} if wanted is None else wanted & {state.value}
        if wanted is not None and not wanted:
            return []
        where, params = _alert_where(wanted, (), after)
        sql = f"SELECT * FROM alerts {where} ORDER BY opened_at_ms DESC, id LIMIT ?"
        if matching is None:
            return [_alert_from(r) for r in self._query(sql, (*params, _ALL if limit < 0 else limit))]
        found: list[Alert] = []
        with closing(self._db.stream(sql, (*params, _ALL))) as pages:
            for page in pages:
                found.extend(alert for alert in map(_alert_from, page) if matching(alert))
                if 0 <= limit <= len(found):
                    break
        return found if limit < 0 else found[:limit]

    def commit(
        self,
        alert: Alert,
        *,
        transitions: Sequence[Transition] = (),
        notifications: Sequence[Notification] = (),
        work_order: WorkOrder | None = None,
        new_evidence: Sequence[Evidence] = (),
    ) -> None:
        """Write ``alert`` (insert or replace), its ``transitions``, pending ``notifications`` and a changed work
        order atomically."""
        with self._transaction(pipelined=True) as db:
            _write_alert(db, alert, transitions, notifications, work_order, new_evidence)

    def commit_many(self, writes: Sequence[tuple[Alert, Sequence[Transition], Sequence[Notification]]]) -> None:
        """``commit`` several alert changes, in order, in one transaction (one fsync: the service's group commit)."""
        if not writes:
            return
        with self._transaction(pipelined=True) as db:
            for alert, transitions, notifications in writes:
                _write_alert(db, alert, transitions, notifications, None, ())

    def open_alerts(self, keys: Sequence[str]) -> dict[str, Alert]:
        """The not-yet-resolved alert of each of ``keys`` that has one."""
        found: dict[str, Alert] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT * FROM alerts WHERE key IN ({marks}) AND state IN ({_OPEN_SQL})", chunk)
            found.update((r["key"], _alert_from(r)) for r in rows)
        return found

    def due_escalations(self, *, now_ms: int, limit: int) -> list[Alert]:
        """Alerts whose acknowledgement deadline has passed, most overdue first."""
        rows = self._query(
            "SELECT * FROM alerts WHERE escalate_at_ms IS NOT NULL AND escalate_at_ms <= ? "
            "ORDER BY escalate_at_ms, id LIMIT ?",
            (now_ms, limit),
        )
        return [_alert_from(r) for r in rows]

    def next_escalation_ms(self) -> int | None:
        """The earliest acknowledgement deadline of any alert, or None when no alert waits for one."""
        rows = self._query("SELECT MIN(escalate_at_ms) AS t FROM alerts WHERE escalate_at_ms IS NOT NULL")
        value = rows[0]["t"]
        return int(value) if value is not None else None

    def transitions(self, alert_id: str) -> list[Transition]:
        """The audit trail of ``alert_id``, oldest first."""
        rows = self._query("SELECT * FROM transitions WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [_transition_from(r) for r in rows]

    def audit_after(self, seq: int, *, limit: int) -> list[tuple[int, Transition, Alert]]:
        """Audit rows of alerts after ``seq``, oldest first, at most ``limit``, each with its alert as it is now
        (the live stream; rows of silences are left out)."""
        rows = self._query(
            "SELECT t.seq AS audit_seq, t.alert_id, t.from_state, t.to_state, t.by, t.channel, t.time_ms, t.note, "
            "a.* FROM transitions t JOIN alerts a ON a.id = t.alert_id WHERE t.seq > ? ORDER BY t.seq LIMIT ?",
            (seq, limit),
        )
        return [(int(r["audit_seq"]), _transition_from(r), _alert_from(r)) for r in rows]

    def audit_head(self) -> int:
        """The seq of the newest audit row (0: none)."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) AS head FROM transitions")[0]["head"])

    def alert_times(self, *, since_ms: int, until_ms: int) -> list[AlertTimes]:
        """The milestones of every alert opened in [``since_ms``, ``until_ms``) (response-time statistics). A
        reopened alert keeps its first acknowledgement and on-site times in the audit log."""
        rows = self._query(
            "SELECT a.community, a.grid, a.grade, a.opened_at_ms, a.level, "
            "(SELECT MIN(t.time_ms) FROM transitions t WHERE t.alert_id = a.id AND t.to_state = 'acknowledged' "
            " AND t.from_state = 'open') AS ack_ms, "
            "(SELECT t.by FROM transitions t WHERE t.alert_id = a.id AND t.to_state = 'acknowledged' "
            " AND t.from_state = 'open' ORDER BY t.seq LIMIT 1) AS ack_by, "
            "(SELECT MIN(t.time_ms) FROM transitions t WHERE t.alert_id = a.id AND t.to_state = 'on_site' "
            " AND t.from_state != 'on_site') AS site_ms, "
            "(SELECT MIN(t.time_ms) FROM transitions t WHERE t.alert_id = a.id AND t.to_state = 'resolved' "
            " AND t.from_state != 'resolved') AS done_ms "
            "FROM alerts a WHERE a.opened_at_ms >= ? AND a.opened_at_ms < ?",
            (since_ms, until_ms),
        )
        return [
            AlertTimes(
                community=r["community"],
                grid=r["grid"],
                grade=r["grade"],
                opened_ms=r["opened_at_ms"],
                acknowledged_by=r["ack_by"],
                acknowledged_ms=r["ack_ms"],
                on_site_ms=r["site_ms"],
                resolved_ms=r["done_ms"],
                level=r["level"],
            )
            for r in rows
        ]

    def audit_rows(self, *, after: int, limit: int) -> list[AuditRow]:
        """The audit log after seq ``after``, oldest first, at most ``limit`` rows (every subject: alerts,
        silences …), each with its chain link and hash."""
        rows = self._query("SELECT * FROM transitions WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
        return [
            AuditRow(
                seq=r["seq"], subject=r["alert_id"], from_state=r["from_state"], to_state=r["to_state"], by=r["by"],
                channel=r["channel"], time_ms=r["time_ms"], note=r["note"], prev_hash=r["prev_hash"], hash=r["hash"],
            )
            for r in rows
        ]  # fmt: skip

    def verify_audit(self) -> AuditReport:
        """Walk the whole audit log in order and check every link of the hash chain."""
        chained = unchained = 0
        prev: str | None = None
        with closing(self._db.stream("SELECT * FROM transitions ORDER BY seq")) as pages:
            for r in (row for page in pages for row in page):
                if r["hash"] is None:
                    if prev is not None:
                        return AuditReport(chained, unchained, r["seq"], "an unchained row after the chain began", prev)
                    unchained += 1
                    continue
                expected_prev = GENESIS if prev is None else prev
                if r["prev_hash"] != expected_prev:
                    why = "its link to the row before does not match (a row was removed, inserted or reordered)"
                    return AuditReport(chained, unchained, r["seq"], why, expected_prev)
                stored: AuditFields = (
                    r["alert_id"], r["from_state"], r["to_state"], r["by"], r["channel"], r["time_ms"], r["note"]
                )  # fmt: skip
                if audit_hash(expected_prev, stored) != r["hash"]:
                    return AuditReport(chained, unchained, r["seq"], "its fields do not match its hash", expected_prev)
                prev = r["hash"]
                chained += 1
        return AuditReport(chained, unchained, None, "", prev or GENESIS)

    # --- outbox -------------------------------------------------------------------------------------------

    def notifications(self, alert_id: str | None = None) -> list[Notification]:
        """Outbox rows, optionally of one alert, oldest first."""
        if alert_id is None:
            rows = self._query("SELECT * FROM notifications ORDER BY created_ms, key")
        else:
            rows = self._query("SELECT * FROM notifications WHERE alert_id = ? ORDER BY created_ms, key", (alert_id,))
        return [_notification_from(r) for r in rows]

    def due(self, *, now_ms: int, limit: int, exclude: Collection[str] = ()) -> list[Notification]:
        """Pending notifications whose next attempt is due, oldest first, skipping keys in ``exclude``."""
        rows = self._query(
            "SELECT * FROM notifications WHERE status = 'pending' AND next_attempt_ms <= ? "
            "ORDER BY next_attempt_ms, created_ms LIMIT ?",
            (now_ms, limit + len(exclude)),
        )
        found = [_notification_from(r) for r in rows if r["key"] not in exclude]
        return found[:limit]

    def due_in_group(
        self, person_id: str, target_index: int, group_key: str, *, now_ms: int, limit: int
    ) -> list[Notification]:
        """The due pending notifications of one person's target and group, oldest first (a digest's members)."""
        rows = self._query(
            "SELECT * FROM notifications WHERE status = 'pending' AND person_id = ? AND target_index = ? "
            "AND group_key = ? AND next_attempt_ms <= ? ORDER BY created_ms, key LIMIT ?",
            (person_id, target_index, group_key, now_ms, limit),
        )
        return [_notification_from(r) for r in rows]

    def recent_pages(self, *, since_ms: int) -> list[tuple[str, int, str, int]]:
        """(person, target, group, page time) of the grouped notifications paged since ``since_ms`` or later."""
        rows = self._query(
            "SELECT DISTINCT person_id, target_index, group_key, page_ms FROM notifications "
            "WHERE page_ms IS NOT NULL AND page_ms >= ? AND group_key != ''",
            (since_ms,),
        )
        return [(r["person_id"], r["target_index"], r["group_key"], r["page_ms"]) for r in rows]

    def next_due_ms(self, *, exclude: Collection[str] = ()) -> int | None:
        """When the earliest pending notification not in ``exclude`` is due, or None when there is none."""
        # Read past the excluded rows rather than name them: a digest in flight can hold thousands of keys, more
        # than SQLite takes as parameters.
        rows = self._query(
            "SELECT key, next_attempt_ms FROM notifications WHERE status = 'pending' ORDER BY next_attempt_ms LIMIT ?",
            (len(exclude) + 1,),
        )
        return next((int(r["next_attempt_ms"]) for r in rows if r["key"] not in exclude), None)

    def mark_sent_many(self, sent: Sequence[tuple[str, int]]) -> None:
        """``mark_sent`` for several (key, ms) deliveries in one transaction, not waiting for the disk: a power cut
        that loses it makes the service send those notifications again, and receivers drop them by idempotency key
        (the audit chain stays whole: WAL keeps a prefix of the commits)."""
        with self._transaction(durable=False, pipelined=True) as db:
            _mark_sent_in(db, sent)

    def mark_sent(self, key: str, *, now_ms: int) -> None:
        """Record that the receiver confirmed ``key`` (and the alert's first notification time), audited."""
        with self._transaction() as db:
            _mark_sent_in(db, [(key, now_ms)])

    # --- silences -----------------------------------------------------------------------------------------

    # --- duty rosters -------------------------------------------------------------------------------------

    def roster_changes(self) -> list[RosterChange]:
        """Every duty change made through the API (``shift`` '' in the table: a holiday), by roster, day and shift."""
        rows = self._query("SELECT * FROM roster_changes ORDER BY roster_id, day, shift")
        return [
            RosterChange(
                roster_id=r["roster_id"], day=dt.date.fromisoformat(r["day"]), shift=r["shift"] or None,
                people=tuple(json.loads(r["people"])), by=r["by"], time_ms=r["time_ms"], note=r["note"],
            )
            for r in rows
        ]  # fmt: skip

    def save_roster_change(self, change: RosterChange) -> RosterChange | None:
        """Store ``change`` (replacing one of the same roster, day and shift) and audit it in the same transaction;
        the change it replaced, or None."""
        with self._transaction() as db:
            before = self._roster_change_in(db, change.roster_id, change.day, change.shift)
            db.execute(
                "INSERT INTO roster_changes (roster_id, day, shift, people, by, time_ms, note) VALUES (?,?,?,?,?,?,?) "
                "ON CONFLICT (roster_id, day, shift) DO UPDATE SET people = excluded.people, by = excluded.by, "
                "time_ms = excluded.time_ms, note = excluded.note",
                (change.roster_id, change.day.isoformat(), change.shift or "", json.dumps(list(change.people)),
                 change.by, change.time_ms, change.note),
            )  # fmt: skip
            note = f"duty change: {change.describe()}" + (f" (was {before.describe()})" if before else "")
            note += f"; {change.note}" if change.note else ""
            from_state = None if before is None else "roster-changed"
            _append_audit(
                db, [(change.roster_id, from_state, "roster-changed", change.by, "api", change.time_ms, note)]
            )
        return before

    def remove_roster_change(
        self, roster_id: str, day: dt.date, shift: str | None, *, by: str, now_ms: int, note: str = ""
    ) -> RosterChange | None:
        """Undo the change of ``roster_id`` on ``day`` (``shift`` None: the holiday), audited: the file's roster
        holds again for it. The change removed, or None when there was none (nothing audited)."""
        with self._transaction() as db:
            before = self._roster_change_in(db, roster_id, day, shift)
            if before is None:
                return None
            db.execute(
                "DELETE FROM roster_changes WHERE roster_id = ? AND day = ? AND shift = ?",
                (roster_id, day.isoformat(), shift or ""),
            )
            text = f"duty change undone: {before.describe()}" + (f"; {note}" if note else "")
            _append_audit(db, [(roster_id, "roster-changed", "roster-planned", by, "api", now_ms, text)])
        return before

    @staticmethod
    def _roster_change_in(db: Session, roster_id: str, day: dt.date, shift: str | None) -> RosterChange | None:
        row = db.execute(
            "SELECT * FROM roster_changes WHERE roster_id = ? AND day = ? AND shift = ?",
            (roster_id, day.isoformat(), shift or ""),
        ).fetchone()
        if row is None:
            return None
        return RosterChange(roster_id=row["roster_id"], day=day, shift=shift, people=tuple(json.loads(row["people"])),
                            by=row["by"], time_ms=row["time_ms"], note=row["note"])  # fmt: skip

    def add_silence(self, silence: Silence) -> None:
        """Store a new silence and audit who set it, for what and until when."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO silences (id, matchers, starts_at_ms, ends_at_ms, created_by, created_ms, reason) "
                "VALUES (?,?,?,?,?,?,?)",
                (
                    silence.id,
                    silence.match.to_json(),
                    silence.starts_at_ms,
                    silence.ends_at_ms,
                    silence.created_by,
                    silence.created_ms,
                    silence.reason,
                ),
            )
            note = (
                f"silence set: {silence.match.describe()}; from {silence.starts_at_ms} to {silence.ends_at_ms} ms; "
                f"{silence.reason}"
            )
            _append_audit(db, [(silence.id, None, "silence", silence.created_by, "api", silence.created_ms, note)])

    def cancel_silence(self, silence_id: str, *, by: str, now_ms: int) -> Silence | None:
        """Lift a silence before its end (audited); None when there is no such silence still running."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE silences SET cancelled_by = ?, cancelled_ms = ? "
                "WHERE id = ? AND cancelled_ms IS NULL AND ends_at_ms > ?",
                (by, now_ms, silence_id, now_ms),
            ).rowcount
            if not changed:
                return None
            row = db.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
            note = f"silence lifted before its end; it had muted {row['muted']} events"
            _append_audit(db, [(silence_id, "silence", "lifted", by, "api", now_ms, note)])
        return _silence_from(row)

    def silences(self, *, running_at_ms: int | None = None) -> list[Silence]:
        """Every silence, newest first, or only those not yet ended or lifted at ``running_at_ms``."""
        if running_at_ms is None:
            rows = self._query("SELECT * FROM silences ORDER BY created_ms DESC, id")
        else:
            rows = self._query(
                "SELECT * FROM silences WHERE cancelled_ms IS NULL AND ends_at_ms > ? ORDER BY starts_at_ms, id",
                (running_at_ms,),
            )
        return [_silence_from(r) for r in rows]

    def count_muted(self, counts: Mapping[str, int]) -> None:
        """Add to each silence's count of muted events."""
        with self._transaction() as db:
            db.executemany("UPDATE silences SET muted = muted + ? WHERE id = ?", [(n, i) for i, n in counts.items()])

    # --- incidents (emergency mode) -----------------------------------------------------------------------

    def save_incident(self, incident: Incident, audit: AuditFields | None = None) -> None:
        """Insert or update an incident (its attached alerts included), audited when ``audit`` is given."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO incidents (id, community, kind, title, grids, buildings, fields, declared_by, "
                "declared_ms, closed_by, closed_ms, alerts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(id) DO UPDATE SET "
                "closed_by=excluded.closed_by, closed_ms=excluded.closed_ms, alerts=excluded.alerts",
                (incident.id, incident.community, incident.kind, incident.title, json.dumps(list(incident.grids)),
                 json.dumps(list(incident.buildings), ensure_ascii=False), json.dumps(list(incident.fields)),
                 incident.declared_by, incident.declared_ms, incident.closed_by, incident.closed_ms,
                 json.dumps(list(incident.alerts))),
            )  # fmt: skip
            if audit is not None:
                _append_audit(db, [audit])

    def incidents(self, *, active_only: bool = False) -> list[Incident]:
        where = " WHERE closed_ms IS NULL" if active_only else ""
        rows = self._query(f"SELECT * FROM incidents{where} ORDER BY declared_ms DESC, id")
        return [_incident_from(r) for r in rows]

    def incident(self, incident_id: str) -> Incident | None:
        rows = self._query("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _incident_from(rows[0]) if rows else None

    def save_report(self, report: ResidentReport, audit: AuditFields) -> None:
        """Insert or replace a household's report (the latest counts), audited."""
        with self._transaction() as db:
            db.execute(
                'INSERT INTO resident_reports (incident_id, household, status, note, "values", reported_by, '
                "reported_ms, verified_by, verified_ms) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(incident_id, household) DO UPDATE SET status=excluded.status, note=excluded.note, "
                '"values"=excluded."values", reported_by=excluded.reported_by, reported_ms=excluded.reported_ms, '
                "verified_by=excluded.verified_by, verified_ms=excluded.verified_ms",
                (report.incident_id, report.household, report.status.value, report.note,
                 json.dumps(dict(report.values), ensure_ascii=False), report.reported_by, report.reported_ms,
                 report.verified_by, report.verified_ms),
            )  # fmt: skip
            _append_audit(db, [audit])

    def reports(self, incident_id: str) -> list[ResidentReport]:
        rows = self._query("SELECT * FROM resident_reports WHERE incident_id = ? ORDER BY household", (incident_id,))
        return [
            ResidentReport(
                incident_id=r["incident_id"],
                household=r["household"],
                status=HouseholdStatus(r["status"]),
                note=r["note"],
                values=json.loads(r["values"]),
                reported_by=r["reported_by"],
                reported_ms=r["reported_ms"],
                verified_by=r["verified_by"],
                verified_ms=r["verified_ms"],
            )
            for r in rows
        ]

    # --- mobilisation (emergency mode: notices, volunteers, measures; alerts.mobilisation) -------------------

    def save_mobilisation(
        self,
        *,
        audit: Sequence[AuditFields],
        notice: Notice | None = None,
        callouts: Sequence[Callout] = (),
        measure: Measure | None = None,
        messages: Sequence[IncidentMessage] = (),
    ) -> None:
        """One mobilisation step in one transaction: a new notice, call-outs (new or answered), a measure (new,
        confirmed or reminded), the messages it sends (pending, before any delivery is tried) and its audit rows."""
        with self._transaction() as db:
            if notice is not None:
                db.execute(
                    "INSERT INTO incident_notices (id, incident_id, text_zh, text_en, by, sent_ms, broadcasts) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (notice.id, notice.incident_id, notice.text_zh, notice.text_en, notice.by, notice.sent_ms,
                     json.dumps(list(notice.broadcasts))),
                )  # fmt: skip
            db.executemany(
                "INSERT INTO incident_callouts (incident_id, volunteer_id, asked_by, asked_ms, answer, answered_by, "
                "answered_ms, note) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(incident_id, volunteer_id) DO UPDATE SET "
                "answer=excluded.answer, answered_by=excluded.answered_by, answered_ms=excluded.answered_ms, "
                "note=excluded.note",
                [(c.incident_id, c.volunteer_id, c.asked_by, c.asked_ms, c.answer.value if c.answer else None,
                  c.answered_by, c.answered_ms, c.note) for c in callouts],
            )  # fmt: skip
            if measure is not None:
                m = measure
                db.execute(
                    "INSERT INTO incident_measures (id, incident_id, department, text, due_ms, assigned_by, "
                    "assigned_ms, confirmed_by, confirmed_ms, note, reminded_due_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(id) DO UPDATE SET confirmed_by=excluded.confirmed_by, "
                    "confirmed_ms=excluded.confirmed_ms, note=excluded.note, reminded_due_ms=excluded.reminded_due_ms",
                    (m.id, m.incident_id, m.department, m.text, m.due_ms, m.assigned_by, m.assigned_ms,
                     m.confirmed_by, m.confirmed_ms, m.note, m.reminded_due_ms),
                )  # fmt: skip
            db.executemany(
                "INSERT INTO incident_messages (key, incident_id, subject_id, reason, recipient_kind, "
                "recipient_id, target_index, body, status, attempts, next_attempt_ms, last_error, created_ms, "
                "sent_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                [(x.key, x.incident_id, x.subject_id, x.reason, x.recipient_kind, x.recipient_id, x.target_index,
                  x.body, x.status, x.attempts, x.next_attempt_ms, x.last_error, x.created_ms, x.sent_ms)
                 for x in messages],
            )  # fmt: skip
            _append_audit(db, audit)

    def notices(self, incident_id: str) -> list[Notice]:
        """The incident's notices, oldest first."""
        rows = self._query("SELECT * FROM incident_notices WHERE incident_id = ? ORDER BY sent_ms, id", (incident_id,))
        return [_notice_from(r) for r in rows]

    def callouts(self, incident_id: str) -> list[Callout]:
        """The volunteers asked to join the incident, in the order they were asked."""
        rows = self._query(
            "SELECT * FROM incident_callouts WHERE incident_id = ? ORDER BY asked_ms, volunteer_id", (incident_id,)
        )
        return [_callout_from(r) for r in rows]

    def measures(self, incident_id: str) -> list[Measure]:
        """The incident's measures, oldest first."""
        rows = self._query(
            "SELECT * FROM incident_measures WHERE incident_id = ? ORDER BY assigned_ms, id", (incident_id,)
        )
        return [_measure_from(r) for r in rows]

    def measure(self, measure_id: str) -> Measure | None:
        rows = self._query("SELECT * FROM incident_measures WHERE id = ?", (measure_id,))
        return _measure_from(rows[0]) if rows else None

    def overdue_measures(self, *, now_ms: int, limit: int) -> list[Measure]:
        """Unconfirmed measures of active incidents past their deadline and not yet reminded of it."""
        rows = self._query(
            "SELECT m.* FROM incident_measures m JOIN incidents i ON i.id = m.incident_id "
            f"WHERE i.closed_ms IS NULL AND {_MEASURE_WAITING} AND m.due_ms <= ? ORDER BY m.due_ms, m.id LIMIT ?",
            (now_ms, limit),
        )
        return [_measure_from(r) for r in rows]

    def next_measure_due_ms(self) -> int | None:
        """The earliest deadline an unconfirmed measure of an active incident waits for, or None."""
        rows = self._query(
            "SELECT MIN(m.due_ms) AS t FROM incident_measures m JOIN incidents i ON i.id = m.incident_id "
            f"WHERE i.closed_ms IS NULL AND {_MEASURE_WAITING}"
        )
        value = rows[0]["t"]
        return int(value) if value is not None else None

    def incident_messages(self, incident_id: str) -> list[IncidentMessage]:
        """The incident's outbox rows, oldest first."""
        rows = self._query(
            "SELECT * FROM incident_messages WHERE incident_id = ? ORDER BY created_ms, key", (incident_id,)
        )
        return [_incident_message_from(r) for r in rows]

    def due_incident_messages(self, *, now_ms: int, limit: int, exclude: Collection[str] = ()) -> list[IncidentMessage]:
        """Pending incident messages whose next attempt is due, oldest first, skipping keys in ``exclude``."""
        rows = self._query(
            "SELECT * FROM incident_messages WHERE status = 'pending' AND next_attempt_ms <= ? "
            "ORDER BY next_attempt_ms, created_ms LIMIT ?",
            (now_ms, limit + len(exclude)),
        )
        return [_incident_message_from(r) for r in rows if r["key"] not in exclude][:limit]

    def next_incident_message_ms(self, *, exclude: Collection[str] = ()) -> int | None:
        """When the earliest pending incident message not in ``exclude`` is due, or None."""
        rows = self._query(
            "SELECT key, next_attempt_ms FROM incident_messages WHERE status = 'pending' "
            "ORDER BY next_attempt_ms LIMIT ?",
            (len(exclude) + 1,),
        )
        return next((int(r["next_attempt_ms"]) for r in rows if r["key"] not in exclude), None)

    def finish_incident_message(
        self, key: str, *, sent: bool, now_ms: int, error: str | None, audit: AuditFields
    ) -> None:
        """Record that ``key`` was delivered (``sent``) or given up on for good, audited."""
        with self._transaction() as db:
            db.execute(
                "UPDATE incident_messages SET status=?, attempts=attempts+1, sent_ms=?, last_error=? WHERE key=?",
                ("sent" if sent else "failed", now_ms if sent else None, error, key),
            )
            _append_audit(db, [audit])

    def retry_incident_message(self, key: str, *, next_attempt_ms: int, error: str) -> None:
        """Count a failed attempt of ``key`` and schedule the next one."""
        with self._transaction() as db:
            db.execute(
                "UPDATE incident_messages SET attempts=attempts+1, next_attempt_ms=?, last_error=? WHERE key=?",
                (next_attempt_ms, error, key),
            )

    # --- disclosure ---------------------------------------------------------------------------------------

    def publish(self, item: Disclosure) -> None:
        """Store a published item and audit it (subject: the item's id)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO disclosures (id, subject_kind, subject_id, title, text, published_by, published_ms) "
                "VALUES (?,?,?,?,?,?,?)",
                (item.id, item.subject_kind, item.subject_id, item.title, item.text, item.published_by,
                 item.published_ms),
            )  # fmt: skip
            note = f"published ({item.subject_kind} {item.subject_id}): {item.title} — {item.text}"
            _append_audit(db, [(item.id, None, "published", item.published_by, "api", item.published_ms, note)])

    def withdraw(self, item_id: str, *, by: str, now_ms: int) -> Disclosure | None:
        """Take an item off the public feed (audited); None when there is no published item of that id."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE disclosures SET withdrawn_by = ?, withdrawn_ms = ? WHERE id = ? AND withdrawn_ms IS NULL",
                (by, now_ms, item_id),
            ).rowcount
            if not changed:
                return None
            _append_audit(db, [(item_id, "published", "withdrawn", by, "api", now_ms, "withdrawn from the feed")])
            row = db.execute("SELECT * FROM disclosures WHERE id = ?", (item_id,)).fetchone()
        return _disclosure_from(row)

    def disclosures(self, *, published_only: bool) -> list[Disclosure]:
        """Items newest first; only those still published when ``published_only``."""
        where = " WHERE withdrawn_ms IS NULL" if published_only else ""
        rows = self._query(f"SELECT * FROM disclosures{where} ORDER BY published_ms DESC, id")
        return [_disclosure_from(r) for r in rows]

    # --- hazard register ----------------------------------------------------------------------------------

    def save_hazard(self, hazard: Hazard, audit: AuditFields) -> None:
        """Insert or update a register entry and audit the change (subject: the hazard's id)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO hazards (id, community, grid, place, title, grade, owner, created_by, created_ms, "
                "next_review_ms, state, last_review_ms, last_finding, alerts, overdue_ms) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET grade=excluded.grade, "
                "owner=excluded.owner, next_review_ms=excluded.next_review_ms, state=excluded.state, "
                "last_review_ms=excluded.last_review_ms, last_finding=excluded.last_finding, "
                "alerts=excluded.alerts, overdue_ms=excluded.overdue_ms",
                (
                    hazard.id,
                    hazard.community,
                    hazard.grid,
                    hazard.place,
                    hazard.title,
                    int(hazard.grade),
                    hazard.owner,
                    hazard.created_by,
                    hazard.created_ms,
                    hazard.next_review_ms,
                    hazard.state.value,
                    hazard.last_review_ms,
                    hazard.last_finding,
                    json.dumps(list(hazard.alerts)),
                    hazard.overdue_ms,
                ),
            )
            _append_audit(db, [audit])

    def hazards(self, *, state: HazardState | None = None) -> list[Hazard]:
        """Register entries, the soonest review first."""
        if state is None:
            rows = self._query("SELECT * FROM hazards ORDER BY next_review_ms, id")
        else:
            rows = self._query("SELECT * FROM hazards WHERE state = ? ORDER BY next_review_ms, id", (state.value,))
        return [_hazard_from(r) for r in rows]

    def hazard(self, hazard_id: str) -> Hazard | None:
        rows = self._query("SELECT * FROM hazards WHERE id = ?", (hazard_id,))
        return _hazard_from(rows[0]) if rows else None

    def overdue_hazards(self, *, now_ms: int) -> list[Hazard]:
        """Open entries past their review date whose overdue alert was not raised yet for that date."""
        rows = self._query(
            "SELECT * FROM hazards WHERE state = 'open' AND next_review_ms <= ? "
            "AND (overdue_ms IS NULL OR overdue_ms != next_review_ms) ORDER BY next_review_ms, id",
            (now_ms,),
        )
        return [_hazard_from(r) for r in rows]

    # --- work orders --------------------------------------------------------------------------------------

    def save_work_order(
        self,
        order: WorkOrder,
        *,
        alert: Alert | None = None,
        transitions: Sequence[Transition] = (),
        notifications: Sequence[Notification] = (),
        new_evidence: Sequence[Evidence] = (),
    ) -> None:
        """Write ``order`` (insert or update), its new evidence, and with it an alert change, its audit rows and
        notifications, in one transaction."""
        if alert is not None:
            self.commit(alert, transitions=transitions, notifications=notifications, work_order=order,
                        new_evidence=new_evidence)  # fmt: skip
            return
        with self._transaction() as db:
            _write_work_order(db, order, new_evidence)
            _append_audit(db, transitions)

    def work_orders(self, alert_id: str) -> list[WorkOrder]:
        """The alert's work orders, oldest first, with their evidence."""
        rows = self._query("SELECT * FROM work_orders WHERE alert_id = ? ORDER BY created_ms, id", (alert_id,))
        return [self._work_order_from(r) for r in rows]

    def list_work_orders(
        self,
        *,
        departments: Collection[str] | None,
        open_only: bool,
        limit: int,
        after: tuple[int, str] | None = None,
    ) -> list[tuple[WorkOrder, Alert]]:
        """Work orders with their alerts, newest first: only of ``departments`` (None: every one), only those still
        expected to move (dispatched, accepted, done) with ``open_only``; only after the position ``after``
        (``(created_ms, id)``, a keyset page); at most ``limit``."""
        where: list[str] = []
        params: list[object] = []
        if after is not None:
            where.append("(w.created_ms < ? OR (w.created_ms = ? AND w.id > ?))")
            params += [after[0], after[0], after[1]]
        if departments is not None:
            if not departments:
                return []
            where.append(f"w.department IN ({', '.join('?' * len(departments))})")
            params += list(departments)
        if open_only:
            where.append("w.state IN ('dispatched', 'accepted', 'done')")
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        rows = self._query(
            f"SELECT w.id AS order_id, a.* FROM work_orders w JOIN alerts a ON a.id = w.alert_id {clause}"
            "ORDER BY w.created_ms DESC, w.id LIMIT ?",
            (*params, limit),
        )
        orders = {order.id: order for order in map(self._work_order_from, self._query(
            f"SELECT * FROM work_orders WHERE id IN ({', '.join('?' * len(rows))})", [r["order_id"] for r in rows]
        ))} if rows else {}  # fmt: skip
        return [(orders[r["order_id"]], _alert_from(r)) for r in rows]

    def work_order(self, order_id: str) -> WorkOrder | None:
        rows = self._query("SELECT * FROM work_orders WHERE id = ?", (order_id,))
        return self._work_order_from(rows[0]) if rows else None

    def overdue_work_orders(self, *, now_ms: int, limit: int) -> list[WorkOrder]:
        """Orders not done by their deadline whose deadline was not reminded of yet."""
        rows = self._query(
            "SELECT * FROM work_orders WHERE state IN ('dispatched', 'accepted') AND due_ms <= ? "
            "AND (reminded_due_ms IS NULL OR reminded_due_ms != due_ms) ORDER BY due_ms, id LIMIT ?",
            (now_ms, limit),
        )
        return [self._work_order_from(r) for r in rows]

    def next_work_order_due_ms(self) -> int | None:
        rows = self._query(
            "SELECT MIN(due_ms) AS t FROM work_orders WHERE state IN ('dispatched', 'accepted') "
            "AND (reminded_due_ms IS NULL OR reminded_due_ms != due_ms)"
        )
        value = rows[0]["t"]
        return int(value) if value is not None else None

    def _work_order_from(self, r: Row) -> WorkOrder:
        evidence = self._query("SELECT * FROM work_order_evidence WHERE work_order_id = ? ORDER BY seq", (r["id"],))
        return WorkOrder(
            id=r["id"],
            alert_id=r["alert_id"],
            department=r["department"],
            task=r["task"],
            state=WorkOrderState(r["state"]),
            due_ms=r["due_ms"],
            created_by=r["created_by"],
            created_ms=r["created_ms"],
            updated_ms=r["updated_ms"],
            reminded_due_ms=r["reminded_due_ms"],
            evidence=tuple(
                Evidence(phase=e["phase"], url=e["url"], by=e["by"], time_ms=e["time_ms"], note=e["note"])
                for e in evidence
            ),
        )

    def mark_retry(self, keys: Sequence[str], *, next_attempt_ms: int, error: str) -> None:
        """Count a failed attempt of ``keys`` (one page: a notification or a digest) and schedule the next one."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE notifications SET attempts=attempts+1, next_attempt_ms=?, last_error=? WHERE key=?",
                [(next_attempt_ms, error, key) for key in keys],
            )

    def mark_failed(self, keys: Sequence[str], *, error: str, now_ms: int) -> None:
        """Give up on ``keys`` for good (permanent error or attempts exhausted), audited."""
        with self._transaction() as db:
            _audit_deliveries(db, [(key, now_ms, f"not delivered, gave up: {error}") for key in keys])
            db.executemany(
                "UPDATE notifications SET status='failed', attempts=attempts+1, last_error=? WHERE key=?",
                [(error, key) for key in keys],
            )
