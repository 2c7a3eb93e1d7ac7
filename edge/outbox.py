"""The durable outbox: every reading the gateway took, until the hub has acknowledged it (DESIGN.md contract 1-4).

SQLite in WAL mode with ``synchronous=FULL``: a reading counts as *taken* only once its transaction is on disk,
and the device cursor advances in that same transaction. FULL (an fsync per commit) rather than NORMAL because
gateways lose power far more often than they crash, and with NORMAL a power cut can roll back the last commits:
the cursor would roll back with them, but a detector's ring holds only 15 samples, so readings taken just before
the cut could be gone from the device by the time the gateway is back. At one commit per poll and per publish the
fsyncs cost a few milliseconds a second on an SD card.

Three verbs, like Telegraf's output buffer:

- ``next_batch`` hands out the oldest unsent readings as a ``Batch`` with the next seq of this session and
  records which readings it holds;
- ``accept`` takes a hub-ack ``(session, seq)`` and deletes every reading of the batches <= seq of this session;
- ``unacked`` yields the batches handed out and not yet acknowledged, in seq order, for republishing.

Every ``Outbox.open`` starts a new session (persisted counter, Sparkplug bdSeq-style); readings of batches of
an earlier session that were never acknowledged go back to unsent and are re-batched under the new session.
``new_session`` does the same at runtime (the hub's ``cmd/rebirth``: a hub that lost its store resynchronises).

The latest health snapshot of the running agent (``edge.health``) is kept in a small ``health`` table so that
``anju-edge outbox`` can show it from another process.

Bound: ``max_bytes`` of reading data (an estimate per row: ``ROW_OVERHEAD_BYTES`` + the text fields). When it is
exceeded, never-sent routine readings are thinned: every second reading of each sensor, oldest first, so the
buffered history stays at half (then a quarter …) of its resolution instead of losing one block. Only when
nothing is left to thin are routine readings dropped outright (never-sent first, then those of published but
unacknowledged batches). Every thinned or dropped reading is counted; alarm readings are never dropped, and a
batch that was handed out keeps at least its newest reading so that its seq can still be republished (the hub's
ack is the highest *contiguous* seq, so a seq must never vanish).
"""

import enum
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.senml import Batch, Reading
from protocol.session import Ack

__all__ = [
    "MAX_BATCH_PAYLOAD_BYTES",
    "MAX_BATCH_SPAN_MS",
    "ROW_OVERHEAD_BYTES",
    "Counters",
    "Cursor",
    "Entry",
    "Outbox",
    "OutboxBatch",
    "Route",
]

ROW_OVERHEAD_BYTES = 48
"""Estimated storage of one reading row besides its sensor id and unit text (ids, integers, float, index)."""
_CHUNK = 500
MAX_BATCH_PAYLOAD_BYTES = 192 * 1024
"""Estimated SenML payload per batch, under protocol.MAX_PAYLOAD_BYTES (256 KiB) with room for the base fields."""
MAX_BATCH_SPAN_MS = 86_000_000
"""Readings of one batch lie within this of its first reading (the decoder allows offsets up to ±1 day)."""
_RECORD_BYTES = 48  # {"n":"","u":"","v":-12345.678,"t":-86399.999}, without the two strings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    route TEXT NOT NULL,
    UNIQUE (session, seq)
);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    alarm INTEGER NOT NULL,
    size INTEGER NOT NULL,
    batch INTEGER REFERENCES batches (id)
);
CREATE INDEX IF NOT EXISTS readings_unsent ON readings (alarm, id) WHERE batch IS NULL;
CREATE INDEX IF NOT EXISTS readings_batch ON readings (batch, id);
CREATE TABLE IF NOT EXISTS cursors (sensor TEXT PRIMARY KEY, seq INTEGER NOT NULL, time_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS health (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""
_COUNTERS = ("taken", "published", "acked", "dropped", "republished")


class Route(enum.StrEnum):
    """Which topic a batch goes to; alarm and data batches share one seq space."""

    DATA = "data"
    ALARM = "alarm"


@dataclass(frozen=True, slots=True)
class Entry:
    """A reading to store; ``alarm`` marks it past its local alarm set point (never dropped, sent at once)."""

    reading: Reading
    alarm: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last sample taken from a device: its counter ``seq`` and its device time (detects restarts)."""

    seq: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    route: Route
    batch: Batch


@dataclass(frozen=True, slots=True)
class Counters:
    """Reading counts since the outbox file was created (persisted), plus what it holds now."""

    session: int
    taken: int
    published: int
    acked: int
    dropped: int
    republished: int
    unsent: int
    unacked_batches: int
    stored_readings: int
    stored_bytes: int


class Outbox:
    """A SQLite outbox. Use ``Outbox.open``; not thread-safe (one owner thread or event loop)."""

    def __init__(self, connection: sqlite3.Connection, *, community: str, gateway: str, max_bytes: int) -> None:
        self._db = connection
        self._community = community
        self._gateway = gateway
        self._max_bytes = max_bytes
        self.session = self._meta("session")
        self._keep_next: dict[str, bool] = {}
        """Per sensor, whether the thinning pass keeps its next unsent reading (alternates: one in two)."""

    @classmethod
    def open(cls, path: Path, *, community: str, gateway: str, max_bytes: int, new_session: bool = True) -> "Outbox":
        """Open (creating if needed) the outbox at ``path``.

        With ``new_session`` (a gateway start) the session counter is incremented and unacknowledged batches of
        earlier sessions are dissolved back into unsent readings. Without it (inspection) nothing is changed.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        with _transaction(db):
            for key in ("next_seq", "bytes", "thin_cursor", *_COUNTERS):
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, 0)", (key,))
            # A new outbox (a new or re-flashed gateway) numbers its sessions from the current Unix time, so
            # they never repeat the sessions of the card it replaced: the hub would take its batches for
            # duplicates of (gateway, session, seq) it already stored. Each start then adds one.
            db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('session', ?)", (_unix_seconds(),))
            if new_session:
                _roll_session(db)
        return cls(db, community=community, gateway=gateway, max_bytes=max_bytes)

    def close(self) -> None:
        self._db.close()

    def new_session(self) -> int:
        """Roll over to a new session now (persisted counter + 1, seq from 1): every reading of a handed-out,
        unacknowledged batch goes back to unsent and is re-batched under the new session. Returns how many
        readings went back. Acks of the old session are ignored from here on."""
        with _transaction(self._db):
            returned = _roll_session(self._db)
        self.session = self._meta("session")
        return returned

    # -- taking -------------------------------------------------------------------------------------------

    def cursors(self) -> dict[str, Cursor]:
        """The last sample taken from each device, as committed."""
        rows = self._db.execute("SELECT sensor, seq, time_ms FROM cursors")
        return {sensor: Cursor(seq, time_ms) for sensor, seq, time_ms in rows}

    def add(self, entries: Sequence[Entry], cursors: Mapping[str, Cursor]) -> int:
        """Store readings and advance device cursors in one transaction; returns how many readings were dropped
        to stay within the byte bound (oldest routine first)."""
        with _transaction(self._db):
            size_total = 0
            for entry in entries:
                r = entry.reading
                size = ROW_OVERHEAD_BYTES + len(r.sensor) + len(r.unit)
                size_total += size
                self._db.execute(
                    "INSERT INTO readings (sensor, time_ms, value, unit, alarm, size) VALUES (?, ?, ?, ?, ?, ?)",
                    (r.sensor, r.time_ms, r.value, r.unit, int(entry.alarm), size),
                )
            for sensor, cursor in cursors.items():
                self._db.execute(
                    "INSERT INTO cursors (sensor, seq, time_ms) VALUES (?, ?, ?) "
                    "ON CONFLICT (sensor) DO UPDATE SET seq = excluded.seq, time_ms = excluded.time_ms",
                    (sensor, cursor.seq, cursor.time_ms),
                )
            self._bump("taken", len(entries))
            self._bump("bytes", size_total)
            return self._enforce_bound()

    def _enforce_bound(self) -> int:
        """Bring the outbox back under ``max_bytes``: first thin never-sent routine readings, then, only if
        that cannot free enough, drop routine readings outright (oldest first; alarms never)."""
        if self._meta("bytes") <= self._max_bytes:
            return 0
        dropped = self._thin()
        dropped += self._drop_oldest()
        self._bump("dropped", dropped)
        return dropped

    def _thin(self) -> int:
        """Halve the resolution of never-sent routine readings, oldest first, one sensor at a time.

        A pass walks the older half of the unsent routine readings from the oldest and drops every second
        reading of each sensor; its position is kept in ``thin_cursor`` so the next call continues where it
        stopped. At the end of the older half it starts over from the oldest, halving again: resolution decays
        with age (one in two, one in four …) while the newer half stays whole.
        Readings of published batches are left alone: the hub may already hold them.
        """
        excess = self._meta("bytes") - self._max_bytes
        dropped = 0
        cursor = self._meta("thin_cursor")
        wrapped = False
        dropped_since_wrap = 0
        while excess > 0:
            oldest, newest = self._db.execute(
                "SELECT MIN(id), MAX(id) FROM readings WHERE alarm = 0 AND batch IS NULL"
            ).fetchone()
            if oldest is None:
                break
            older_half_end = oldest + (newest - oldest) // 2  # the newer half keeps its full resolution
            rows = self._db.execute(
                "SELECT id, sensor, size FROM readings WHERE alarm = 0 AND batch IS NULL AND id > ? AND id <= ? "
                "ORDER BY id LIMIT ?",
                (cursor, older_half_end, _CHUNK),
            ).fetchall()
            if not rows:
                if wrapped and not dropped_since_wrap:
                    break  # at most one unsent routine reading per sensor: nothing left to thin
                cursor, wrapped, dropped_since_wrap = 0, True, 0
                self._keep_next.clear()
                continue
            victims: list[int] = []
            freed = 0
            for row_id, sensor, size in rows:
                cursor = row_id
                keep = self._keep_next.get(sensor, True)
                self._keep_next[sensor] = not keep
                if not keep:
                    victims.append(row_id)
                    freed += size
                    if freed >= excess:
                        break
            self._db.executemany("DELETE FROM readings WHERE id = ?", [(v,) for v in victims])
            dropped += len(victims)
            dropped_since_wrap += len(victims)
            excess -= freed
            self._bump("bytes", -freed)
        self._db.execute("UPDATE meta SET value = ? WHERE key = 'thin_cursor'", (cursor,))
        return dropped

    def _drop_oldest(self) -> int:
        """The last resort when thinning is exhausted: drop routine readings outright, never-sent ones first."""
        dropped = 0
        excess = self._meta("bytes") - self._max_bytes
        while excess > 0:
            # Never-sent readings go first, oldest first: a reading of a batch already published may have
            # reached the hub (its ack lost with the link), so dropping it would be a drop counted twice.
            rows = self._db.execute(
                "SELECT id, size FROM readings AS r WHERE alarm = 0 AND (batch IS NULL OR id < "
                "(SELECT MAX(id) FROM readings WHERE batch = r.batch)) ORDER BY batch IS NOT NULL, id LIMIT ?",
                (_CHUNK,),
            ).fetchall()
            if not rows:
                break  # only alarm readings and the last reading of each batch are left: never dropped
            victims: list[int] = []
            freed = 0
            for row_id, size in rows:
                victims.append(row_id)
                freed += size
                if freed >= excess:
                    break
            self._db.executemany("DELETE FROM readings WHERE id = ?", [(v,) for v in victims])
            dropped += len(victims)
            excess -= freed
            self._bump("bytes", -freed)
        return dropped

    # -- the three verbs --------------------------------------------------------------------------------

    def next_batch(self, route: Route, *, limit: int) -> OutboxBatch | None:
        """Hand out up to ``limit`` of the oldest unsent readings of ``route`` as a batch with the next seq.

        A batch is also cut before its payload would pass ``MAX_BATCH_PAYLOAD_BYTES`` or its readings would span
        more than ``MAX_BATCH_SPAN_MS`` (the SenML decoder refuses time offsets beyond a day).
        """
        alarm = int(route is Route.ALARM)
        with _transaction(self._db):
            candidates = self._db.execute(
                "SELECT id, sensor, time_ms, value, unit FROM readings WHERE batch IS NULL AND alarm = ? "
                "ORDER BY id LIMIT ?",
                (alarm, limit),
            ).fetchall()
            if not candidates:
                return None
            rows: list[tuple[int, str, int, float, str]] = []
            payload = 0
            for row in candidates:
                payload += _RECORD_BYTES + len(row[1]) + len(row[4])
                if rows and (payload > MAX_BATCH_PAYLOAD_BYTES or abs(row[2] - rows[0][2]) > MAX_BATCH_SPAN_MS):
                    break
                rows.append(row)
            seq = self._meta("next_seq")
            self._bump("next_seq", 1)
            batch_id = self._db.execute(
                "INSERT INTO batches (session, seq, route) VALUES (?, ?, ?)", (self.session, seq, route.value)
            ).lastrowid
            self._db.executemany("UPDATE readings SET batch = ? WHERE id = ?", [(batch_id, row[0]) for row in rows])
            self._bump("published", len(rows))
        readings = tuple(Reading(sensor, time_ms, value, unit) for _, sensor, time_ms, value, unit in rows)
        return OutboxBatch(route, self._batch(seq, readings))

    @property
    def last_published_seq(self) -> int:
        """The highest seq handed out in this session (0 before the first batch)."""
        return self._meta("next_seq") - 1

    def accept(self, ack: Ack) -> int:
        """Apply a hub-ack: delete the readings of every batch <= ``ack.seq`` of this session; returns how many.

        Acks of another session are ignored (0): their batches were dissolved and re-batched at start.
        """
        if ack.session != self.session:
            return 0
        with _transaction(self._db):
            batch_ids = "SELECT id FROM batches WHERE session = ? AND seq <= ?"
            count, size = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(size), 0) FROM readings WHERE batch IN ({batch_ids})",
                (self.session, ack.seq),
            ).fetchone()
            self._db.execute(f"DELETE FROM readings WHERE batch IN ({batch_ids})", (self.session, ack.seq))
            self._db.execute("DELETE FROM batches WHERE session = ? AND seq <= ?", (self.session, ack.seq))
            self._bump("acked", count)
            self._bump("bytes", -size)
        return int(count)

    def unacked(self) -> Iterator[OutboxBatch]:
        """Yield the handed-out, unacknowledged batches of this session in seq order, one at a time (bounded
        memory); each yielded batch is counted as republished."""
        last_seq = 0
        while True:
            row = self._db.execute(
                "SELECT id, seq, route FROM batches WHERE session = ? AND seq > ? ORDER BY seq LIMIT 1",
                (self.session, last_seq),
            ).fetchone()
            if row is None:
                return
            batch_id, last_seq, route = row
            readings = tuple(
                Reading(sensor, time_ms, value, unit)
                for sensor, time_ms, value, unit in self._db.execute(
                    "SELECT sensor, time_ms, value, unit FROM readings WHERE batch = ? ORDER BY id", (batch_id,)
                )
            )
            if not readings:  # cannot happen: the bound keeps one reading per batch; guard the encoder anyway
                continue
            with _transaction(self._db):
                self._bump("republished", len(readings))
            yield OutboxBatch(Route(route), self._batch(last_seq, readings))

    # -- inspection ---------------------------------------------------------------------------------------

    def unacked_count(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM batches WHERE session = ?", (self.session,)).fetchone()
        return int(row[0])

    def unsent_count(self, route: Route | None = None) -> int:
        if route is None:
            row = self._db.execute("SELECT COUNT(*) FROM readings WHERE batch IS NULL").fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM readings WHERE batch IS NULL AND alarm = ?", (int(route is Route.ALARM),)
            ).fetchone()
        return int(row[0])

    def counters(self) -> Counters:
        stored = self._db.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
        return Counters(
            session=self.session,
            taken=self._meta("taken"),
            published=self._meta("published"),
            acked=self._meta("acked"),
            dropped=self._meta("dropped"),
            republished=self._meta("republished"),
            unsent=self.unsent_count(),
            unacked_batches=self.unacked_count(),
            stored_readings=int(stored),
            stored_bytes=self._meta("bytes"),
        )

    def oldest_time_ms(self) -> int | None:
        """Device time of the oldest reading still held (not yet acknowledged), or None when empty."""
        row = self._db.execute("SELECT MIN(time_ms) FROM readings").fetchone()
        return None if row[0] is None else int(row[0])

    # -- health snapshot ------------------------------------------------------------------------------------

    def save_health(self, values: Mapping[str, float]) -> None:
        """Replace the stored health snapshot (one small transaction); NaN (not known yet) is left out."""
        with _transaction(self._db):
            self._db.execute("DELETE FROM health")
            rows = [(key, value) for key, value in values.items() if value == value]  # NaN != NaN
            self._db.executemany("INSERT INTO health (key, value) VALUES (?, ?)", rows)

    def health(self) -> dict[str, float]:
        """The last health snapshot saved by a running agent (empty when none was saved yet)."""
        return {key: float(value) for key, value in self._db.execute("SELECT key, value FROM health ORDER BY key")}

    # -- internals ------------------------------------------------------------------------------------------

    def _batch(self, seq: int, readings: tuple[Reading, ...]) -> Batch:
        return Batch(self._community, self._gateway, self.session, seq, readings)

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, key: str, delta: int) -> None:
        if delta:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (delta, key))


def _unix_seconds() -> int:
    """Where a new outbox's session numbering starts (tests pin it to get small session numbers)."""
    return int(time.time())


def _roll_session(db: sqlite3.Connection) -> int:
    """Inside a transaction: session + 1, seq back to 1, batches of earlier sessions dissolved into unsent
    readings; returns how many readings were dissolved."""
    db.execute("UPDATE meta SET value = value + 1 WHERE key = 'session'")
    db.execute("UPDATE meta SET value = 1 WHERE key = 'next_seq'")
    session = db.execute("SELECT value FROM meta WHERE key = 'session'").fetchone()[0]
    earlier = "SELECT id FROM batches WHERE session < ?"
    returned = db.execute(f"UPDATE readings SET batch = NULL WHERE batch IN ({earlier})", (session,)).rowcount
    db.execute("DELETE FROM batches WHERE session < ?", (session,))
    return int(returned)


class _transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (or ``ROLLBACK`` on error) on an autocommit connection; nests as a no-op."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._outer = False

    def __enter__(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._outer = True

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self._outer:
            return
        if exc_type is not None:
            self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            # A COMMIT refused (disk full) leaves the transaction open: end it, or every later write would
            # nest inside it and never be committed.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
