"""The identity database: users, login sessions and their tokens, API tokens, and the audit log
(hub/identity/audit.py) — a SQLite file (WAL, ``identity.sqlite3`` in the hub's data dir) or a schema of PostgreSQL,
through the alert store's engine layer (alerts/sqldb.py). On PostgreSQL it may share the alert store's schema: no
table, index, trigger or function name is the same.

No token is stored: a token is 32 random bytes shown once, and only its SHA-256 is kept (a random 256-bit secret
needs no slow hash — nobody can guess it back from the digest). A stolen file therefore opens no session. Passwords
are argon2id hashes (hub/identity/passwords.py).

Tables:

* ``users`` — name, role, the deployment person it stands for, argon2 hash, disabled, failed logins in a row and the
  end of a lockout.
* ``sessions`` — one login: bearer (access + refresh token) or cookie (one session token and a CSRF token's hash),
  its absolute expiry, and when it was revoked (logout, revoke-all, password change, disabling, refresh reuse).
* ``session_tokens`` — the hashes of a session's tokens with their kind and expiry; a refresh token is ``used`` once,
  then replaced (rotation), and a second use of it revokes the session.
* ``api_tokens`` — integration tokens: name, role, person, hash, expiry, revocation.

Methods are short and synchronous behind the engine's one lock; the hub calls them with ``asyncio.to_thread``, the CLI
directly. Lists are ordered in Python, not by ``ORDER BY`` on text: PostgreSQL would sort names by the database's
collation, SQLite by code point.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from alerts.sqldb import Database, Row, Session, is_integrity_error, open_database, postgres_ddl
from alerts.store import AuditReport
from hub.identity.audit import AuditEntry, AuditEvent, append_audit, audit_entries, audit_schema, verify_audit
from hub.identity.roles import Role

__all__ = ["ApiToken", "Credential", "DuplicateError", "IdentityStore", "TokenKind", "User"]

TokenKind = Literal["access", "refresh", "cookie"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    person TEXT,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    mode TEXT NOT NULL,
    client TEXT NOT NULL,
    csrf_hash TEXT,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id) WHERE revoked_ms IS NULL;
CREATE TABLE IF NOT EXISTS session_tokens (
    hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    kind TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    used_ms INTEGER
);
CREATE TABLE IF NOT EXISTS api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    person TEXT,
    hash TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER,
    revoked_ms INTEGER,
    revoked_by TEXT
);
"""


class DuplicateError(ValueError):
    """A user or token name that is taken; ``name`` is the name."""

    def __init__(self, what: str, name: str) -> None:
        self.name = name
        super().__init__(f"{what} {name!r} already exists")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: Role
    person: str | None
    disabled: bool
    failed_logins: int
    locked_until_ms: int | None
    created_ms: int
    password_hash: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: str
    name: str
    role: Role
    person: str | None
    created_by: str
    created_ms: int
    expires_ms: int | None
    revoked_ms: int | None
    revoked_by: str | None


@dataclass(frozen=True, slots=True)
class Credential:
    """Who a presented token stands for: a user's session, or an API token (``session_id`` None)."""

    name: str
    role: Role
    person: str | None
    session_id: str | None
    kind: TokenKind | Literal["api"]
    csrf_hash: str | None = field(default=None, repr=False)


def _user(row: Row) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        person=row["person"],
        disabled=bool(row["disabled"]),
        failed_logins=row["failed_logins"],
        locked_until_ms=row["locked_until_ms"],
        created_ms=row["created_ms"],
        password_hash=row["password_hash"],
    )


def _api_token(row: Row) -> ApiToken:
    return ApiToken(row["id"], row["name"], Role(row["role"]), row["person"], row["created_by"], row["created_ms"],
                    row["expires_ms"], row["revoked_ms"], row["revoked_by"])  # fmt: skip


class IdentityStore:
    """The identity database: a SQLite file at ``target``, or the schema ``schema`` of the PostgreSQL database at a
    ``postgresql://`` URL (the community's, beside its alert store). The tables are created on first open.

    Every write is durable before it returns (SQLite ``synchronous=FULL``, PostgreSQL's default commit): a revocation
    that was answered must hold after a power cut. The CLI and the hub share the database (SQLite waits up to 5 s for
    the other's write; PostgreSQL's writers queue on the schema's advisory lock)."""

    def __init__(self, target: str | Path, *, schema: str = "anju") -> None:
        self._db: Database = open_database(target, schema=schema)
        self.path = self._db.where
        if self._db.dialect == "sqlite":
            self._db.script(_SCHEMA + audit_schema("sqlite"))
        else:
            self._db.script(postgres_ddl(_SCHEMA) + audit_schema("postgresql"))

    @property
    def where(self) -> str:
        """The file, or PostgreSQL's ``host:port/database/schema``, for messages."""
        return self._db.where

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> IdentityStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _transaction(self) -> AbstractContextManager[Session]:
        """One write transaction, the only writer of the database while it runs (the audit chain's order)."""
        return self._db.transaction()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._db.query(sql, params)

    # --- users ----------------------------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        rows = self._query("SELECT * FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    def users(self) -> list[User]:
        return sorted((_user(r) for r in self._query("SELECT * FROM users")), key=lambda user: user.name)

    def add_user(
        self, name: str, role: Role, person: str | None, password_hash: str, *, by: str, client: str, now_ms: int
    ) -> User:
        with self._transaction() as db:
            try:
                db.execute(
                    "INSERT INTO users (name, role, person, password_hash, created_ms, updated_ms) "
                    "VALUES (?,?,?,?,?,?)",
                    (name, role.value, person, password_hash, now_ms, now_ms),
                )
            except Exception as exc:
                if is_integrity_error(exc):
                    raise DuplicateError("user", name) from None
                raise
            detail = f"role={role.value} person={person or '-'}"
            append_audit(db, "user.created", actor=by, subject=name, client=client, time_ms=now_ms, detail=detail)
        user = self.user(name)
        assert user is not None  # inserted above
        return user

    def change_user(
        self,
        name: str,
        *,
        by: str,
        client: str,
        now_ms: int,
        password_hash: str | None = None,
        role: tuple[Role, str | None] | None = None,
        disabled: bool | None = None,
    ) -> User | None:
        """Change a user's password, role (with its person) or access, audited; sessions end on every change but a
        role change (a new password or disabling is often the answer to a stolen session). None: no such user."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            old = _user(row)
            audit: list[tuple[AuditEvent, str]] = []
            if password_hash is not None:
                db.execute(
                    "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until_ms = NULL, updated_ms = ? "
                    "WHERE id = ?",
                    (password_hash, now_ms, old.id),
                )
                audit.append(("user.password", "password changed; sessions revoked"))
            if role is not None:
                db.execute("UPDATE users SET role = ?, person = ?, updated_ms = ? WHERE id = ?",
                           (role[0].value, role[1], now_ms, old.id))  # fmt: skip
                detail = f"{old.role.value} person={old.person or '-'} -> {role[0].value} person={role[1] or '-'}"
                audit.append(("user.role", detail))
            if disabled is not None and disabled != old.disabled:
                db.execute(
                    "UPDATE users SET disabled = ?, updated_ms = ? WHERE id = ?", (int(disabled), now_ms, old.id)
                )
                audit.append(("user.disabled", "sessions revoked") if disabled else ("user.enabled", ""))
            if password_hash is not None or disabled:
                db.execute("UPDATE sessions SET revoked_ms = ? WHERE user_id = ? AND revoked_ms IS NULL",
                           (now_ms, old.id))  # fmt: skip
            for event, detail in audit:
                append_audit(db, event, actor=by, subject=name, client=client, time_ms=now_ms, detail=detail)
        return self.user(name)

    def record_failure(
        self, user: User | None, name: str, *, client: str, now_ms: int, max_failures: int, lockout_ms: int
    ) -> int | None:
        """Audit a failed login of ``name`` (``user`` None: no such user) and count it; returns the end of the
        lockout (ms) when this failure locked the account."""
        with self._transaction() as db:
            locked_until = None
            if user is not None:
                failures = db.execute(
                    "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = ? RETURNING failed_logins",
                    (user.id,),
                ).fetchone()[0]
                if failures >= max_failures:
                    locked_until = now_ms + lockout_ms
                    db.execute("UPDATE users SET failed_logins = 0, locked_until_ms = ? WHERE id = ?",
                               (locked_until, user.id))  # fmt: skip
            detail = "no such user" if user is None else "wrong password"
            append_audit(db, "login.failure", actor=name, subject=name, client=client, time_ms=now_ms, detail=detail)
            if locked_until is not None:
                detail = f"{max_failures} failures in a row; locked for {lockout_ms // 1000} s"
                append_audit(db, "login.locked", actor=name, subject=name, client=client, time_ms=now_ms, detail=detail)
        return locked_until

    def record_refusal(self, name: str, *, client: str, now_ms: int, why: str) -> None:
        with self._transaction() as db:
            append_audit(db, "login.refused", actor=name, subject=name, client=client, time_ms=now_ms, detail=why)

    # --- sessions -------------------------------------------------------------------------------------------

    def start_session(
        self,
        user: User,
        *,
        session_id: str,
        mode: Literal["bearer", "cookie"],
        tokens: Sequence[tuple[str, TokenKind, int]],
        expires_ms: int,
        csrf_hash: str | None,
        client: str,
        now_ms: int,
    ) -> None:
        """A successful login: the session, its token hashes ``(sha256, kind, expires ms)``, the failure count reset,
        audited. Expired tokens of every session are deleted on the way (a login is rare and slow anyway: argon2)."""
        with self._transaction() as db:
            db.execute("DELETE FROM session_tokens WHERE expires_ms < ?", (now_ms,))  # the table stays small
            db.execute("UPDATE users SET failed_logins = 0, locked_until_ms = NULL WHERE id = ?", (user.id,))
            db.execute(
                "INSERT INTO sessions (id, user_id, mode, client, csrf_hash, created_ms, expires_ms) "
                "VALUES (?,?,?,?,?,?,?)",
                (session_id, user.id, mode, client, csrf_hash, now_ms, expires_ms),
            )
            db.executemany("INSERT INTO session_tokens (hash, session_id, kind, expires_ms) VALUES (?,?,?,?)",
                           [(h, session_id, kind, exp) for h, kind, exp in tokens])  # fmt: skip
            append_audit(db, "login.success", actor=user.name, subject=user.name, client=client, time_ms=now_ms,
                         detail=f"{mode} session {session_id[:8]}")  # fmt: skip

    def credential(self, token_hash: str, *, now_ms: int) -> Credential | None:
        """The live session or API token behind ``token_hash`` (an access, cookie or API token; a refresh token
        only refreshes). None when unknown, expired, revoked, or its user is disabled."""
        rows = self._query(
            "SELECT u.name, u.role, u.person, s.id AS session_id, t.kind, s.csrf_hash FROM session_tokens t "
            "JOIN sessions s ON s.id = t.session_id JOIN users u ON u.id = s.user_id "
            "WHERE t.hash = ? AND t.kind != 'refresh' AND t.expires_ms > ? AND s.expires_ms > ? "
            "AND s.revoked_ms IS NULL AND u.disabled = 0",
            (token_hash, now_ms, now_ms),
        )
        if rows:
            r = rows[0]
            return Credential(r["name"], Role(r["role"]), r["person"], r["session_id"], r["kind"], r["csrf_hash"])
        rows = self._query(
            "SELECT id, name, role, person FROM api_tokens WHERE hash = ? AND revoked_ms IS NULL "
            "AND (expires_ms IS NULL OR expires_ms > ?)",
            (token_hash, now_ms),
        )
        if rows:
            r = rows[0]
            return Credential(f"token:{r['name']}", Role(r["role"]), r["person"], None, "api")
        return None

    def rotate(
        self, refresh_hash: str, *, new_tokens: Sequence[tuple[str, TokenKind, int]], client: str, now_ms: int
    ) -> Literal["rotated", "reused", "invalid"]:
        """Spend a refresh token: ``rotated`` stores the session's ``new_tokens``; ``reused`` means it was spent
        before, so a copy is abroad — the session is revoked (audited); ``invalid``: unknown, expired or revoked."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT t.session_id, t.used_ms, t.expires_ms, s.expires_ms AS session_expires, s.revoked_ms, "
                "u.name, u.disabled FROM session_tokens t JOIN sessions s ON s.id = t.session_id "
                "JOIN users u ON u.id = s.user_id WHERE t.hash = ? AND t.kind = 'refresh'",
                (refresh_hash,),
            ).fetchone()
            if row is None or row["revoked_ms"] is not None or row["disabled"]:
                return "invalid"
            if row["used_ms"] is not None:
                db.execute("UPDATE sessions SET revoked_ms = ? WHERE id = ?", (now_ms, row["session_id"]))
                append_audit(db, "session.reuse", actor=row["name"], subject=row["name"], client=client,
                             time_ms=now_ms, detail=f"refresh token used twice; session {row['session_id'][:8]} "
                             "revoked")  # fmt: skip
                return "reused"
            if row["expires_ms"] <= now_ms or row["session_expires"] <= now_ms:
                return "invalid"
            db.execute("UPDATE session_tokens SET used_ms = ? WHERE hash = ?", (now_ms, refresh_hash))
            db.execute("DELETE FROM session_tokens WHERE session_id = ? AND kind = 'access'", (row["session_id"],))
            db.executemany("INSERT INTO session_tokens (hash, session_id, kind, expires_ms) VALUES (?,?,?,?)",
                           [(h, row["session_id"], kind, exp) for h, kind, exp in new_tokens])  # fmt: skip
            return "rotated"

    def refresh_owner(self, refresh_hash: str) -> str | None:
        """The user name behind a refresh token, live or not (for the audit of a refused refresh)."""
        rows = self._query(
            "SELECT u.name FROM session_tokens t JOIN sessions s ON s.id = t.session_id "
            "JOIN users u ON u.id = s.user_id WHERE t.hash = ?",
            (refresh_hash,),
        )
        return rows[0]["name"] if rows else None

    def end_sessions(self, name: str, *, session_id: str | None, by: str, client: str, now_ms: int) -> int:
        """Revoke one session of ``name`` (``session_id``) or all of them (None), audited; how many were live."""
        count: int  # rows changed (psycopg's and sqlite3's rowcount alike)
        with self._transaction() as db:
            if session_id is not None:
                count = db.execute(
                    "UPDATE sessions SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL", (now_ms, session_id)
                ).rowcount
                append_audit(db, "logout", actor=by, subject=name, client=client, time_ms=now_ms,
                             detail=f"session {session_id[:8]}")  # fmt: skip
            else:
                count = db.execute(
                    "UPDATE sessions SET revoked_ms = ? WHERE revoked_ms IS NULL "
                    "AND user_id = (SELECT id FROM users WHERE name = ?)",
                    (now_ms, name),
                ).rowcount
                append_audit(db, "logout.all", actor=by, subject=name, client=client, time_ms=now_ms,
                             detail=f"{count} sessions revoked")  # fmt: skip
        return count

    # --- API tokens -----------------------------------------------------------------------------------------

    def add_api_token(self, token: ApiToken, token_hash: str, *, client: str) -> None:
        with self._transaction() as db:
            try:
                db.execute(
                    "INSERT INTO api_tokens (id, name, role, person, hash, created_by, created_ms, expires_ms) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    (token.id, token.name, token.role.value, token.person, token_hash, token.created_by,
                     token.created_ms, token.expires_ms),
                )  # fmt: skip
            except Exception as exc:
                if is_integrity_error(exc):
                    raise DuplicateError("API token", token.name) from None
                raise
            append_audit(db, "token.created", actor=token.created_by, subject=f"token:{token.id}", client=client,
                         time_ms=token.created_ms, detail=f"name={token.name} role={token.role.value}")  # fmt: skip

    def api_tokens(self) -> list[ApiToken]:
        tokens = (_api_token(r) for r in self._query("SELECT * FROM api_tokens"))
        return sorted(tokens, key=lambda token: (token.created_ms, token.id))

    def revoke_api_token(self, token_id: str, *, by: str, client: str, now_ms: int) -> ApiToken | None:
        """Revoke a live API token, audited; None when there is no live token of that id."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE api_tokens SET revoked_ms = ?, revoked_by = ? WHERE id = ? AND revoked_ms IS NULL",
                (now_ms, by, token_id),
            ).rowcount
            if not changed:
                return None
            append_audit(db, "token.revoked", actor=by, subject=f"token:{token_id}", client=client, time_ms=now_ms)
            row = db.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        return _api_token(row)

    # --- audit ----------------------------------------------------------------------------------------------

    def audit(self, *, before_seq: int | None = None, limit: int = 100) -> list[AuditEntry]:
        return audit_entries(self._db, before_seq=before_seq, limit=limit)

    def verify_audit(self) -> AuditReport:
        """Check the whole audit log's hash chain (hub/identity/audit.py); ``broken_at`` names the first bad row."""
        return verify_audit(self._db)
