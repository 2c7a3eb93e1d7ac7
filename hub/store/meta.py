"""The hub's own small tables beside the time series: dead letters, session marks, gateways' latest health.

Every backend keeps them in SQLite. The embedded store writes them in the same transaction as the readings;
a backend whose readings live elsewhere (InfluxDB) writes the readings first and these after, so a crash in
between leaves readings without their mark — replayed by the gateway and absorbed by idempotent writes —
and never a mark ahead of its readings.
"""

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from hub.store.base import DeadLetter, HealthRecord, SessionMark

__all__ = ["META_SCHEMA", "MetaReads", "connect", "read_dead_letters", "read_health", "read_marks", "write_meta"]

META_SCHEMA = """
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_sessions (
    gateway TEXT NOT NULL,
    session INTEGER NOT NULL,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (gateway, session)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateway_health (
    gateway TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
"""


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, and fsync on every commit.

    ``read_only`` opens an existing file without ever writing to it (tests and tools beside a running hub).
    """
    if read_only:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


def write_meta(
    connection: sqlite3.Connection,
    dead: Sequence[DeadLetter],
    marks: Sequence[SessionMark],
    health: Sequence[HealthRecord],
) -> None:
    """Write inside the caller's open transaction."""
    connection.executemany(
        "INSERT INTO dead_letters (received_ms, topic, reason, detail, payload) VALUES (?, ?, ?, ?, ?)",
        [(d.received_ms, d.topic, d.reason, d.detail, d.payload) for d in dead],
    )
    connection.executemany(
        "INSERT INTO gateway_sessions (gateway, session, acked_seq) VALUES (?, ?, ?) "
        "ON CONFLICT (gateway, session) DO UPDATE SET acked_seq = max(acked_seq, excluded.acked_seq)",
        [(m.gateway, m.session, m.acked_seq) for m in marks],
    )
    connection.executemany(
        "INSERT OR REPLACE INTO gateway_health (gateway, received_ms, payload) VALUES (?, ?, ?)",
        [(h.gateway, h.received_ms, h.payload) for h in health],
    )


def read_marks(connection: sqlite3.Connection) -> list[SessionMark]:
    rows = connection.execute("SELECT gateway, session, acked_seq FROM gateway_sessions").fetchall()
    return [SessionMark(*row) for row in rows]


def read_health(connection: sqlite3.Connection) -> list[HealthRecord]:
    rows = connection.execute("SELECT gateway, received_ms, payload FROM gateway_health").fetchall()
    return [HealthRecord(*row) for row in rows]


def read_dead_letters(connection: sqlite3.Connection, limit: int, before: int | None = None) -> list[DeadLetter]:
    rows = connection.execute(
        "SELECT received_ms, topic, reason, detail, payload, id FROM dead_letters WHERE id < ? "
        "ORDER BY id DESC LIMIT ?",
        (2**63 - 1 if before is None else before, limit),
    ).fetchall()
    return [DeadLetter(*row) for row in rows]


class MetaReads:
    """The ReadingStore reads of these tables, for a store that sets ``_meta`` (a reader connection) and
    ``_meta_lock`` (the lock that guards it)."""

    _meta: sqlite3.Connection
    _meta_lock: AbstractContextManager[object]

    def session_marks(self) -> list[SessionMark]:
        with self._meta_lock:
            return read_marks(self._meta)

    def latest_health(self) -> list[HealthRecord]:
        with self._meta_lock:
            return read_health(self._meta)

    def dead_letters(self, limit: int, before: int | None = None) -> list[DeadLetter]:
        with self._meta_lock:
            return read_dead_letters(self._meta, limit, before)
