"""The identity audit log: logins (success, failure, lockout), logouts, tokens created and revoked, users added,
their roles, passwords and access changed — who did it, to whom, from which address, when.

A table of its own in the identity database (``identity_audit``) rather than the alerts' ``transitions``: those rows
are the trail of one alert (or silence, incident…) and are read per subject, while these are read by an admin as a
log. The rows are kept the same way, though: append-only (triggers refuse UPDATE and DELETE, and on PostgreSQL
TRUNCATE) and hash-chained with the alerts' own :func:`alerts.store.audit_hash`, so a row changed or removed in the
database breaks the chain there (:func:`verify_audit`). Nothing secret is ever written here: no password, no token,
only token *names* and ids.
"""

from contextlib import closing
from dataclasses import dataclass
from typing import Literal

from alerts.sqldb import Database, Session, append_only_ddl, postgres_ddl
from alerts.store import GENESIS, AuditFields, AuditReport, audit_hash

__all__ = ["AuditEntry", "AuditEvent", "append_audit", "audit_entries", "audit_schema", "verify_audit"]

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

_AUDIT_TABLE = """
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
);"""


def audit_schema(dialect: str) -> str:
    """The audit table and its append-only triggers for ``dialect`` (``"sqlite"`` or ``"postgresql"``). The SQLite
    text is the one every identity file was made with, so an existing file opens unchanged."""
    if dialect == "sqlite":
        return _AUDIT_TABLE + append_only_ddl("identity_audit", "sqlite")
    return postgres_ddl(_AUDIT_TABLE) + append_only_ddl("identity_audit", "postgresql")


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
    db: Session, event: AuditEvent, *, actor: str, subject: str, client: str, time_ms: int, detail: str = ""
) -> None:
    """Append one entry inside the caller's transaction (the only writer: SQLite's BEGIN IMMEDIATE, PostgreSQL's
    advisory lock), so the chain has one order."""
    row = db.execute("SELECT hash FROM identity_audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    digest = audit_hash(prev, _fields(subject, event, actor, client, time_ms, detail))
    db.execute(
        "INSERT INTO identity_audit (time_ms, event, actor, subject, client, detail, prev_hash, hash) "
        "VALUES (?,?,?,?,?,?,?,?)",
        (time_ms, event, actor, subject, client, detail, prev, digest),
    )


def _fields(subject: str, event: str, actor: str, client: str, time_ms: int, detail: str) -> AuditFields:
    """An identity entry in the alerts' audit-row shape (no "from" state), which is what its hash covers."""
    return (subject, None, event, actor, client, time_ms, detail)


def audit_entries(db: Database, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
    """Entries newest first, ``limit`` of them, older than ``before_seq`` when given (the next page)."""
    rows = db.query(
        "SELECT seq, time_ms, event, actor, subject, client, detail FROM identity_audit "
        "WHERE seq < ? ORDER BY seq DESC LIMIT ?",
        (before_seq if before_seq is not None else 2**62, limit),
    )
    return [AuditEntry(*row) for row in rows]


def verify_audit(db: Database) -> AuditReport:
    """Walk the whole identity audit log in order and check every link of its hash chain: the first row whose link
    to the one before, or whose fields, do not match its hash is ``broken_at``. Every identity row is chained (the
    table had its hash from the start), so ``unchained`` is 0. Read in pages: the log only grows."""
    chained = 0
    prev = GENESIS
    with closing(db.stream("SELECT * FROM identity_audit ORDER BY seq")) as pages:
        for r in (row for page in pages for row in page):
            if r["prev_hash"] != prev:
                why = "its link to the row before does not match (a row was removed, inserted or reordered)"
                return AuditReport(chained, 0, r["seq"], why, prev)
            stored = _fields(r["subject"], r["event"], r["actor"], r["client"], r["time_ms"], r["detail"])
            if audit_hash(prev, stored) != r["hash"]:
                return AuditReport(chained, 0, r["seq"], "its fields do not match its hash", prev)
            prev = r["hash"]
            chained += 1
    return AuditReport(chained, 0, None, "", prev)
