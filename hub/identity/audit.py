"""The identity audit log: logins (success, failure, lockout), logouts, tokens created and revoked, users added,
their roles, passwords and access changed — who did it, to whom, from which address, when.

A table of its own in the identity database (``identity_audit``) rather than the alerts' ``transitions``: those rows
are the trail of one alert (or silence, incident…) and are read per subject, while these are read by an admin as a
log. The rows are kept the same way, though: append-only (triggers refuse UPDATE and DELETE) and hash-chained with
the alerts' own :func:`alerts.store.audit_hash`, so a row changed or removed in the file breaks the chain there.
Nothing secret is ever written here: no password, no token, only token *names* and ids.
"""

import sqlite3
from dataclasses import dataclass
from typing import Literal

from alerts.store import GENESIS, audit_hash

__all__ = ["AUDIT_SCHEMA", "AuditEntry", "AuditEvent", "append_audit", "audit_entries"]

AuditEvent = Literal[
    "login.success",
    "login.failure",
    "login.locked",
    "login.refused",
    "logout",
    "logout.all",
    "session.reuse",
    "token.created",
    "token.revoked",
    "user.created",
    "user.password",
    "user.role",
    "user.disabled",
    "user.enabled",
]
"""``login.refused``: a login while the account is locked, or of a disabled user; ``session.reuse``: a refresh token
used a second time, so its session was revoked (someone else may hold a copy)."""

AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS identity_audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    subject TEXT NOT NULL,
    client TEXT NOT NULL,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS identity_audit_no_update BEFORE UPDATE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS identity_audit_no_delete BEFORE DELETE ON identity_audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    seq: int
    time_ms: int
    event: str
    actor: str
    """Who did it: a user name, ``token:<name>``, ``static-token``, ``cli:<os user>``, or the user logging in."""
    subject: str
    """Whom or what it concerns: a user name or ``token:<id>``."""
    client: str
    """The client address of the request, ``cli`` for the command line."""
    detail: str


def append_audit(
    db: sqlite3.Connection, event: AuditEvent, *, actor: str, subject: str, client: str, time_ms: int, detail: str = ""
) -> None:
    """Append one entry inside the caller's transaction (BEGIN IMMEDIATE makes it the only writer)."""
    row = db.execute("SELECT hash FROM identity_audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    digest = audit_hash(prev, (subject, None, event, actor, client, time_ms, detail))
    db.execute(
        "INSERT INTO identity_audit (time_ms, event, actor, subject, client, detail, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (time_ms, event, actor, subject, client, detail, prev, digest),
    )


def audit_entries(db: sqlite3.Connection, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
    """Entries newest first, ``limit`` of them, older than ``before_seq`` when given (the next page)."""
    rows = db.execute(
        "SELECT seq, time_ms, event, actor, subject, client, detail FROM identity_audit "
        "WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        (before_seq if before_seq is not None else 2**62, limit),
    ).fetchall()
    return [AuditEntry(*row) for row in rows]
