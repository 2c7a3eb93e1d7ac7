"""Embedded time-series store on SQLite (WAL), for a single community server or the demo.

Readings are keyed by (sensor, time_ms): the same point written twice is one row (``INSERT OR IGNORE``),
which makes replays after a gateway restart idempotent (DESIGN.md delivery guarantee, step 3). Each ingest
round is one transaction holding the readings, the dead letters, the session marks and each gateway's latest
health payload, so a hub-ack sent
after ``commit`` returns is never ahead of what is on disk. Throughput at district scale is the subject of
the hub-ingest issue; this backend favours simplicity and durability (synchronous=FULL).
"""

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from hub.store.base import DeadLetter, HealthRecord, SessionMark, StoredReading

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    sensor TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    gateway TEXT NOT NULL,
    PRIMARY KEY (sensor, time_ms)
) WITHOUT ROWID;
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


class SqliteStore:
    """A ReadingStore on one SQLite file. Thread-safe: one writer connection and one reader, each locked."""

    def __init__(self, *, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA busy_timeout=5000")
        return connection

    def commit(
        self,
        readings: Sequence[StoredReading],
        dead: Sequence[DeadLetter],
        marks: Sequence[SessionMark],
        health: Sequence[HealthRecord] = (),
    ) -> int:
        with self._write_lock:
            connection = self._writer
            before = connection.total_changes
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.executemany(
                    "INSERT OR IGNORE INTO readings (sensor, time_ms, value, gateway) VALUES (?, ?, ?, ?)",
                    [(r.sensor, r.time_ms, r.value, r.gateway) for r in readings],
                )
                stored = connection.total_changes - before
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
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return stored

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT sensor, time_ms, value, gateway FROM readings "
                "WHERE sensor = ? AND time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT ?",
                (sensor, start_ms, end_ms, limit),
            ).fetchall()
        return [StoredReading(*row) for row in rows]

    def all_readings(self) -> list[StoredReading]:
        """Every stored reading (tests and exports of small stores)."""
        with self._read_lock:
            rows = self._reader.execute("SELECT sensor, time_ms, value, gateway FROM readings").fetchall()
        return [StoredReading(*row) for row in rows]

    def count_readings(self) -> int:
        with self._read_lock:
            (count,) = self._reader.execute("SELECT count(*) FROM readings").fetchone()
        return int(count)

    def session_marks(self) -> list[SessionMark]:
        with self._read_lock:
            rows = self._reader.execute("SELECT gateway, session, acked_seq FROM gateway_sessions").fetchall()
        return [SessionMark(*row) for row in rows]

    def latest_health(self) -> list[HealthRecord]:
        with self._read_lock:
            rows = self._reader.execute("SELECT gateway, received_ms, payload FROM gateway_health").fetchall()
        return [HealthRecord(*row) for row in rows]

    def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT received_ms, topic, reason, detail, payload FROM dead_letters ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._writer.close()
            self._reader.close()
