"""The embedded store: an append-only commit log plus per-sensor chunks and 1-minute rollups, in one SQLite file.

Why this layout (figures in BENCHMARKS.md, issue 4): a SQLite table keyed by (sensor, time) takes 30–65 k
rows/s and falls as it grows, because every reading lands on a different page of the index. Here the ingest
path never touches an index:

- ``commit`` appends ONE row to ``log`` per ingest round — the round's new readings packed as columns (sensor
  number int32, device time int64 ms, value float64, flags uint8) — with the session marks, dead letters and
  health in the same transaction, WAL and ``synchronous=FULL``: when it returns, everything is on disk
  (kill -9 loses nothing acked). The same readings stay in memory (the *tail*) for queries.
- ``maintain`` (a background thread of the hub, off the ack path) *compacts* the log: it sorts the tail by
  (sensor, time), writes one ``chunks`` row per sensor and UTC day (times as uint32 ms offsets from the
  chunk's first time + float64 values: 12 bytes a reading) and one ``rollups`` row per sensor and day with the
  1-minute count/min/max/sum of exactly those readings (incremental: computed from the compacted readings,
  never by rescanning), and deletes the log rows, in one transaction. A day's rollup parts are merged into one
  row once the day is over, so 30 days of a sensor are 30 rows. Retention drops raw chunks after
  ``raw_retention_days`` and rollups after ``rollup_retention_days``.

Idempotent writes without an index: per sensor the store keeps the newest device time it holds (the
*watermark*). A reading newer than its sensor's watermark is new — the normal case, decided for a whole round
with numpy. Older ones (a replay after an outage) are checked exactly against the tail and the sensor's chunks
around their times. Readings flagged CLOCK_SKEW (a device clock far off) do not move the watermark — one reading
dated 2099 would otherwise push every later reading of the sensor onto the exact path — but the range of their
times is kept, and readings inside it take the exact path too. Skewed readings are not the sensor's latest.

Concurrency: one lock serialises commits, compaction and queries (queries are a few ms; compaction holds the lock
for its transaction). The API's queries and the ingest thread use separate SQLite connections.
"""

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hub.store.base import (
    Bucket,
    DeadLetter,
    HealthRecord,
    ReadingColumns,
    ReadingFlag,
    SessionMark,
    StoredReading,
)
from hub.store.meta import META_SCHEMA, MetaReads, connect, write_meta

__all__ = ["ChunkStore"]

log = logging.getLogger("anju.hub.store")

MINUTE_MS = 60_000
DAY_MS = 86_400_000
_MINUTES_PER_DAY = 1_440
_TIME_BITS = 42
"""Device times are < 2^42 ms (protocol/senml.py refuses anything after 2100), so (sensor << 42) | time is a key."""
_NEVER = np.iinfo(np.int64).min
CHECKPOINT_EVERY_COMMITS = 1_000
"""A store whose ``maintain`` is not called (tools, bulk loads) checkpoints its WAL itself after this many commits."""
WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes the WAL file is cut back to after a checkpoint (it is reused, not grown, between checkpoints)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sensors (
    sid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    gateway TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    n INTEGER NOT NULL,
    sid BLOB NOT NULL,
    time BLOB NOT NULL,
    value BLOB NOT NULL,
    flags BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    sid INTEGER NOT NULL,
    t0 INTEGER NOT NULL,
    t1 INTEGER NOT NULL,
    n INTEGER NOT NULL,
    offsets BLOB NOT NULL,
    value BLOB NOT NULL,
    flags BLOB,
    PRIMARY KEY (sid, t0)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    sid INTEGER NOT NULL,
    day INTEGER NOT NULL,
    part INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sid, day, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS marks (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS open_days (
    day INTEGER PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sensor_state (
    sid INTEGER PRIMARY KEY,
    latest_time INTEGER NOT NULL,
    latest_value REAL NOT NULL,
    latest_flags INTEGER NOT NULL,
    watermark INTEGER NOT NULL,
    skew_low INTEGER NOT NULL,
    skew_high INTEGER NOT NULL
);
"""

_MINUTE = np.dtype([("minute", "<i4"), ("count", "<i4"), ("min", "<f8"), ("max", "<f8"), ("sum", "<f8")])
"""One minute of one sensor in a rollup row: minutes since the Unix epoch, and count/min/max/sum of its values."""


@dataclass(slots=True)
class _Tail:
    """Committed readings not yet compacted, as columns (the same rows as the ``log`` table)."""

    log_ids: list[int]
    parts: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]]
    count: int = 0
    since_s: float = 0.0
    _merged: (
        tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]] | None
    ) = None

    def add(
        self,
        log_id: int,
        sid: npt.NDArray[np.int32],
        times: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        flags: npt.NDArray[np.uint8],
    ) -> None:
        if not self.parts:
            self.since_s = time.monotonic()
        self.log_ids.append(log_id)
        self.parts.append((sid, times, values, flags))
        self.count += len(sid)
        self._merged = None

    def merged(
        self,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        if self._merged is None:
            if self.parts:
                self._merged = (
                    np.concatenate([p[0] for p in self.parts]),
                    np.concatenate([p[1] for p in self.parts]),
                    np.concatenate([p[2] for p in self.parts]),
                    np.concatenate([p[3] for p in self.parts]),
                )
            else:
                self._merged = (
                    np.empty(0, np.int32),
                    np.empty(0, np.int64),
                    np.empty(0, np.float64),
                    np.empty(0, np.uint8),
                )
        return self._merged

    def of_sensor(self, sid: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        sids, times, values, flags = self.merged()
        pick = sids == sid
        return times[pick], values[pick], flags[pick]

    def drop(self, taken: int) -> None:
        """Forget the first ``taken`` parts (compacted); later ones stay."""
        self.count -= sum(len(part[0]) for part in self.parts[:taken])
        del self.log_ids[:taken]
        del self.parts[:taken]
        self.since_s = time.monotonic()
        self._merged = None


def _keys(sid: npt.NDArray[np.integer], times: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return (sid.astype(np.int64) << _TIME_BITS) | times


class ChunkStore(MetaReads):
    """A ReadingStore in one SQLite file (see the module docstring for the layout and why)."""

    def __init__(
        self,
        *,
        path: Path,
        raw_retention_days: int = 30,
        rollup_retention_days: int = 365,
        compact_readings: int = 250_000,
        compact_interval_s: float = 60.0,
        read_only: bool = False,
    ) -> None:
        """``compact_readings``/``compact_interval_s``: ``maintain`` compacts when the tail holds that many readings
        or is that old; ``commit`` compacts by itself at twice ``compact_readings`` (the bound on the tail's memory,
        21 bytes a reading, when nobody calls ``maintain``). ``read_only`` opens an existing store beside the hub
        that writes it (tests, exports): queries see what was committed when it was opened."""
        if raw_retention_days < 1 or rollup_retention_days < 1:
            raise ValueError("retention is at least one day")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.raw_retention_days = raw_retention_days
        self.rollup_retention_days = rollup_retention_days
        self.compact_readings = compact_readings
        self.compact_interval_s = compact_interval_s
        self._lock = threading.RLock()
        self._compacting = threading.Lock()
        self._writer = connect(path, read_only=read_only)
        if not read_only:
            self._writer.executescript(_SCHEMA + META_SCHEMA)
        self._reader = connect(path, read_only=read_only)
        self._meta, self._meta_lock = self._reader, self._lock
        self._checkpointer = connect(path, read_only=read_only)
        self._read_only = read_only
        self._commits_since_checkpoint = 0
        if not read_only:
            self._writer.execute("PRAGMA wal_autocheckpoint=0")
            self._writer.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._sid: dict[str, int] = {}
        self._names: list[str] = []
        self._gateways: list[str] = []
        size = 1024
        self._watermark = np.full(size, _NEVER, np.int64)
        self._skew_low = np.full(size, np.iinfo(np.int64).max, np.int64)
        self._skew_high = np.full(size, _NEVER, np.int64)
        self._latest_time = np.full(size, _NEVER, np.int64)
        self._latest_value = np.zeros(size, np.float64)
        self._latest_flags = np.zeros(size, np.uint8)
        self._touched: set[int] = set()
        self._tail = _Tail([], [])
        self._count = 0
        self._last_retention_s = -1e18
        self._load()

    # -- opening -----------------------------------------------------------------------------------------------

    def _grow(self, size: int) -> None:
        if size <= len(self._watermark):
            return
        new = max(size, 2 * len(self._watermark))

        def grown(array: npt.NDArray[np.generic], fill: object) -> npt.NDArray[np.generic]:
            out = np.full(new, fill, array.dtype)
            out[: len(array)] = array
            return out

        self._watermark = grown(self._watermark, _NEVER)  # type: ignore[assignment]
        self._skew_low = grown(self._skew_low, np.iinfo(np.int64).max)  # type: ignore[assignment]
        self._skew_high = grown(self._skew_high, _NEVER)  # type: ignore[assignment]
        self._latest_time = grown(self._latest_time, _NEVER)  # type: ignore[assignment]
        self._latest_value = grown(self._latest_value, 0.0)  # type: ignore[assignment]
        self._latest_flags = grown(self._latest_flags, 0)  # type: ignore[assignment]

    def _load(self) -> None:
        db = self._writer
        for sid, name, gateway in db.execute("SELECT sid, name, gateway FROM sensors ORDER BY sid"):
            if sid != len(self._names):
                raise RuntimeError(f"{self.path}: sensor numbers are not dense (sid {sid}); the file is damaged")
            self._sid[name] = sid
            self._names.append(name)
            self._gateways.append(gateway)
        self._grow(len(self._names))
        for sid, lt, lv, lf, wm, lo, hi in db.execute("SELECT * FROM sensor_state"):
            self._latest_time[sid], self._latest_value[sid], self._latest_flags[sid] = lt, lv, lf
            self._watermark[sid], self._skew_low[sid], self._skew_high[sid] = wm, lo, hi
        (chunked,) = db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()
        self._count = int(chunked)
        row = db.execute("SELECT value FROM marks WHERE name = 'compacted_through'").fetchone()
        compacted_through = row[0] if row else 0
        log_rows = db.execute("SELECT * FROM log WHERE id > ? ORDER BY id", (compacted_through,))
        for log_id, _n, sid, times, values, flags in log_rows:
            columns = (
                np.frombuffer(sid, np.int32),
                np.frombuffer(times, np.int64),
                np.frombuffer(values, np.float64),
                np.frombuffer(flags, np.uint8),
            )
            self._tail.add(log_id, *columns)
            self._advance(*columns)
            self._count += len(columns[0])

    # -- writing -----------------------------------------------------------------------------------------------

    def _sids(self, readings: ReadingColumns) -> tuple[npt.NDArray[np.int32], list[tuple[int, str, str]]]:
        known = self._sid
        new: list[tuple[int, str, str]] = []
        for name, gateway in zip(readings.sensor, readings.gateway, strict=True):
            if name not in known:
                sid = len(self._names)
                known[name] = sid
                self._names.append(name)
                self._gateways.append(gateway)
                new.append((sid, name, gateway))
        if new:
            self._grow(len(self._names))
        return np.fromiter((known[name] for name in readings.sensor), np.int32, len(readings)), new

    def _new_rows(
        self, sid: npt.NDArray[np.int32], times: npt.NDArray[np.int64], flags: npt.NDArray[np.uint8]
    ) -> npt.NDArray[np.intp]:
        """Indexes of the readings not stored yet (first of any repeats within the round), in input order."""
        keys = _keys(sid, times)
        _, first = np.unique(keys, return_index=True)
        first.sort()
        sid, times, flags = sid[first], times[first], flags[first]
        exact = (times <= self._watermark[sid]) | ((times >= self._skew_low[sid]) & (times <= self._skew_high[sid]))
        exact |= (flags & ReadingFlag.CLOCK_SKEW).astype(bool)
        if not exact.any():
            return first
        doubtful = np.flatnonzero(exact)
        stored = self._stored(sid[doubtful], times[doubtful])
        keep = np.ones(len(first), bool)
        keep[doubtful[stored]] = False
        return first[keep]

    def _stored(self, sid: npt.NDArray[np.int32], times: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """For each (sid, time): is it in the tail or in a chunk? The exact path, for replays."""
        keys = _keys(sid, times)
        tail_sid, tail_times, _, _ = self._tail.merged()
        found = np.isin(keys, _keys(tail_sid, tail_times))
        for one in np.unique(sid[~found]):
            pick = (sid == one) & ~found
            low, high = int(times[pick].min()), int(times[pick].max())
            chunk_times = self._chunk_times(self._writer, int(one), low, high + 1)
            found[pick] = np.isin(times[pick], chunk_times)
        return found

    def _advance(
        self,
        sid: npt.NDArray[np.int32],
        times: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64],
        flags: npt.NDArray[np.uint8],
    ) -> None:
        """Move watermarks, skew ranges and latest values past newly stored readings."""
        skewed = (flags & ReadingFlag.CLOCK_SKEW).astype(bool)
        normal = ~skewed
        np.maximum.at(self._watermark, sid[normal], times[normal])
        if skewed.any():
            np.minimum.at(self._skew_low, sid[skewed], times[skewed])
            np.maximum.at(self._skew_high, sid[skewed], times[skewed])
        if normal.any():
            s, t = sid[normal], times[normal]
            order = np.lexsort((t, s))
            s, t = s[order], t[order]
            last = np.flatnonzero(np.append(s[1:] != s[:-1], True))
            s, t = s[last], t[last]
            newer = t > self._latest_time[s]
            pick = order[last][newer]
            rows = np.flatnonzero(normal)[pick]
            self._latest_time[s[newer]] = t[newer]
            self._latest_value[s[newer]] = values[rows]
            self._latest_flags[s[newer]] = flags[rows]
        self._touched.update(np.unique(sid).tolist())

    def stage(self, readings: ReadingColumns) -> None:
        """Nothing to start early: a commit is one local transaction (``ReadingStore.stage``)."""

    def commit(
        self,
        readings: ReadingColumns,
        dead: Sequence[DeadLetter],
        marks: Sequence[SessionMark],
        health: Sequence[HealthRecord] = (),
    ) -> int:
        with self._lock:
            sid, new_sensors = self._sids(readings)
            times = np.asarray(readings.time_ms, np.int64)
            keep = self._new_rows(sid, times, np.asarray(readings.flags, np.uint8))
            columns = (
                np.ascontiguousarray(sid[keep]),
                np.ascontiguousarray(times[keep]),
                np.ascontiguousarray(np.asarray(readings.value, np.float64)[keep]),
                np.ascontiguousarray(np.asarray(readings.flags, np.uint8)[keep]),
            )
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO sensors (sid, name, gateway) VALUES (?, ?, ?)", new_sensors)
                log_id = None
                if len(keep):
                    cursor = db.execute(
                        "INSERT INTO log (n, sid, time, value, flags) VALUES (?, ?, ?, ?, ?)",
                        (len(keep), *(c.tobytes() for c in columns)),
                    )
                    log_id = cursor.lastrowid
                write_meta(db, dead, marks, health)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                for _, name, _ in new_sensors:
                    del self._sid[name]
                del self._names[len(self._names) - len(new_sensors) :]
                del self._gateways[len(self._gateways) - len(new_sensors) :]
                raise
            if log_id is not None:
                self._tail.add(log_id, *columns)
                self._advance(*columns)
                self._count += len(keep)
            if self._tail.count >= 2 * self.compact_readings:
                self._compact()
            self._commits_since_checkpoint += 1
            if self._commits_since_checkpoint >= CHECKPOINT_EVERY_COMMITS:  # nobody calls maintain: bound the WAL
                self._checkpoint_wal()
            return len(keep)

    # -- compaction, consolidation, retention ------------------------------------------------------------------

    def maintain(self, now_ms: int | None = None) -> None:
        """Compact when due, close finished days, apply retention hourly, and checkpoint the WAL — each holding the
        store's lock only for its own transaction, so commits (hub-acks) wait as little as possible."""
        now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            due = self._tail.count >= self.compact_readings or (
                self._tail.count and time.monotonic() - self._tail.since_s >= self.compact_interval_s
            )
        if due:
            self._compact()
        with self._lock:
            self._close_days(now_ms // DAY_MS)
            if time.monotonic() - self._last_retention_s >= 3600:
                self._retain(now_ms)
                self._last_retention_s = time.monotonic()
        self._checkpoint_wal()

    def _checkpoint_wal(self) -> None:
        # PASSIVE: copies what no reader needs, never waits for and never blocks a writer. The writer's own
        # automatic checkpoint is off: it ran inside a commit, and a commit is what a hub-ack waits for.
        if not self._read_only:
            self._commits_since_checkpoint = 0
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def compact(self) -> None:
        """Compact the whole tail now (tests, shutdown, bulk loads)."""
        with self._lock:
            self._compact()

    def _compact(self) -> None:
        """Move the tail into chunks and rollups. Only the snapshot and the transaction hold the store's lock: the
        sorting and packing (most of the time) run beside commits and queries, which see the tail meanwhile."""
        if not self._compacting.acquire(blocking=False):
            return  # another thread is compacting; what it did not take waits for the next round
        try:
            with self._lock:
                if not self._tail.log_ids:
                    return
                taken = len(self._tail.parts)
                last_id = self._tail.log_ids[-1]
                parts = list(self._tail.parts)
                touched, self._touched = self._touched, set()
                state_rows = [
                    (
                        s,
                        int(self._latest_time[s]),
                        float(self._latest_value[s]),
                        int(self._latest_flags[s]),
                        int(self._watermark[s]),
                        int(self._skew_low[s]),
                        int(self._skew_high[s]),
                    )
                    for s in sorted(touched)
                ]
            try:
                self._compact_parts(parts, last_id, taken, state_rows)
            except BaseException:
                with self._lock:
                    self._touched |= touched
                raise
        finally:
            self._compacting.release()

    def _compact_parts(
        self,
        parts: list[
            tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]
        ],
        last_id: int,
        taken: int,
        state_rows: list[tuple[int, int, float, int, int, int, int]],
    ) -> None:
        started = time.perf_counter()
        sids = np.concatenate([part[0] for part in parts])
        times = np.concatenate([part[1] for part in parts])
        values = np.concatenate([part[2] for part in parts])
        flags = np.concatenate([part[3] for part in parts])
        order = np.lexsort((times, sids))
        sids, times, values, flags = sids[order], times[order], values[order], flags[order]
        days = times // DAY_MS
        edge = np.flatnonzero((sids[1:] != sids[:-1]) | (days[1:] != days[:-1])) + 1
        starts = np.concatenate(([0], edge))
        ends = np.concatenate((edge, [len(sids)]))
        minutes = times // MINUTE_MS
        m_edge = np.flatnonzero((sids[1:] != sids[:-1]) | (minutes[1:] != minutes[:-1])) + 1
        m_starts = np.concatenate(([0], m_edge))
        per_minute = np.empty(len(m_starts), _MINUTE)
        per_minute["minute"] = minutes[m_starts]
        per_minute["count"] = np.diff(np.append(m_starts, len(sids)))
        per_minute["min"] = np.minimum.reduceat(values, m_starts)
        per_minute["max"] = np.maximum.reduceat(values, m_starts)
        per_minute["sum"] = np.add.reduceat(values, m_starts)
        # Each (sensor, day) segment's minutes are a contiguous run of per_minute.
        seg_minute_start = np.searchsorted(m_starts, starts)
        seg_minute_end = np.searchsorted(m_starts, ends)
        part = last_id  # AUTOINCREMENT: never reused, so parts of one day never collide
        chunk_rows = []
        rollup_rows = []
        for i, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            sid = int(sids[a])
            t0 = int(times[a])
            seg_flags = flags[a:b]
            chunk_rows.append(
                (
                    sid,
                    t0,
                    int(times[b - 1]),
                    b - a,
                    (times[a:b] - t0).astype(np.uint32).tobytes(),
                    values[a:b].tobytes(),
                    seg_flags.tobytes() if seg_flags.any() else None,
                )
            )
            rollup_rows.append((sid, t0 // DAY_MS, part, per_minute[seg_minute_start[i] : seg_minute_end[i]].tobytes()))
        open_days = [(d,) for d in np.unique(days).tolist()]
        # Two short transactions rather than one long one (commits wait while either runs): the chunks with the
        # mark ``compacted_through``, then the log rows it covers (freeing their pages is half the work). Neither
        # waits for an fsync: a compaction lost to a power cut takes its mark with it, and the log still holds
        # every reading; the next ingest commit (synchronous=FULL) makes both durable anyway.
        with self._lock:
            self._transaction(
                lambda db: (
                    db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", chunk_rows),
                    db.executemany("INSERT INTO rollups VALUES (?, ?, ?, ?)", rollup_rows),
                    db.executemany("INSERT OR IGNORE INTO open_days (day) VALUES (?)", open_days),
                    db.executemany("INSERT OR REPLACE INTO sensor_state VALUES (?, ?, ?, ?, ?, ?, ?)", state_rows),
                    db.execute("INSERT OR REPLACE INTO marks VALUES ('compacted_through', ?)", (last_id,)),
                )
            )
            self._tail.drop(taken)
        with self._lock:
            self._transaction(lambda db: db.execute("DELETE FROM log WHERE id <= ?", (last_id,)))
        readings = len(sids)
        log.debug(
            "compacted %d readings into %d chunks in %.3f s", readings, len(chunk_rows), time.perf_counter() - started
        )

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``work`` in one write transaction without waiting for its fsync (housekeeping, never the ack path)."""
        db = self._writer
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                work(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _close_days(self, today: int) -> None:
        """Merge the rollup parts of each finished day into one row per sensor (part 0)."""
        db = self._writer
        days = [d for (d,) in db.execute("SELECT day FROM open_days WHERE day < ? ORDER BY day", (today,))]
        for day in days:
            rows = db.execute("SELECT sid, data FROM rollups WHERE day = ? ORDER BY sid, part", (day,)).fetchall()
            merged: list[tuple[int, int, int, bytes]] = []
            at = 0
            while at < len(rows):
                sid = rows[at][0]
                parts = []
                while at < len(rows) and rows[at][0] == sid:
                    parts.append(np.frombuffer(rows[at][1], _MINUTE))
                    at += 1
                merged.append((sid, day, 0, _merge_minutes(np.concatenate(parts)).tobytes()))
            self._transaction(functools.partial(_replace_day, day=day, merged=merged))

    def _retain(self, now_ms: int) -> None:
        raw_cutoff = now_ms - self.raw_retention_days * DAY_MS
        rollup_cutoff_day = (now_ms - self.rollup_retention_days * DAY_MS) // DAY_MS
        gone: list[int] = []

        def drop(db: sqlite3.Connection) -> None:
            gone.append(db.execute("SELECT coalesce(sum(n), 0) FROM chunks WHERE t1 < ?", (raw_cutoff,)).fetchone()[0])
            db.execute("DELETE FROM chunks WHERE t1 < ?", (raw_cutoff,))
            db.execute("DELETE FROM rollups WHERE day < ?", (rollup_cutoff_day,))

        self._transaction(drop)
        self._count -= int(gone[0])

    # -- reading -----------------------------------------------------------------------------------------------

    @staticmethod
    def _chunk_rows(
        db: sqlite3.Connection, sid: int, start_ms: int, end_ms: int
    ) -> list[tuple[int, bytes, bytes, bytes | None]]:
        """Chunks of ``sid`` that may hold times in [start_ms, end_ms): a chunk never crosses a UTC day."""
        return db.execute(
            "SELECT t0, offsets, value, flags FROM chunks WHERE sid = ? AND t0 >= ? AND t0 < ? AND t1 >= ?",
            (sid, (start_ms // DAY_MS) * DAY_MS, end_ms, start_ms),
        ).fetchall()

    def _chunk_times(self, db: sqlite3.Connection, sid: int, start_ms: int, end_ms: int) -> npt.NDArray[np.int64]:
        rows = self._chunk_rows(db, sid, start_ms, end_ms)
        if not rows:
            return np.empty(0, np.int64)
        return np.concatenate([np.frombuffer(o, np.uint32).astype(np.int64) + t0 for t0, o, _, _ in rows])

    def _series(
        self, sid: int, start_ms: int, end_ms: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        """All stored readings of ``sid`` in [start_ms, end_ms), sorted by time."""
        parts_t = []
        parts_v = []
        parts_f = []
        for t0, offsets, value, flags in self._chunk_rows(self._reader, sid, start_ms, end_ms):
            t = np.frombuffer(offsets, np.uint32).astype(np.int64) + t0
            parts_t.append(t)
            parts_v.append(np.frombuffer(value, np.float64))
            parts_f.append(np.frombuffer(flags, np.uint8) if flags is not None else np.zeros(len(t), np.uint8))
        tail_t, tail_v, tail_f = self._tail.of_sensor(sid)
        parts_t.append(tail_t)
        parts_v.append(tail_v)
        parts_f.append(tail_f)
        t = np.concatenate(parts_t)
        v = np.concatenate(parts_v)
        f = np.concatenate(parts_f)
        pick = (t >= start_ms) & (t < end_ms)
        t, v, f = t[pick], v[pick], f[pick]
        order = np.argsort(t, kind="stable")
        return t[order], v[order], f[order]

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        with self._lock:
            sid = self._sid.get(sensor)
            if sid is None:
                return []
            t, v, f = self._series(sid, start_ms, end_ms)
            gateway = self._gateways[sid]
        return [
            StoredReading(sensor, int(ti), float(vi), gateway, int(fi))
            for ti, vi, fi in zip(t[:limit].tolist(), v[:limit].tolist(), f[:limit].tolist(), strict=True)
        ]

    def window(self, sensors: Sequence[str], start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        rows: list[StoredReading] = []
        for sensor in dict.fromkeys(sensors):
            rows.extend(self.readings(sensor, start_ms, end_ms, limit))
        rows.sort(key=lambda r: (r.time_ms, r.sensor))
        return rows[:limit]

    def latest(self, sensors: Sequence[str]) -> dict[str, StoredReading]:
        with self._lock:
            out: dict[str, StoredReading] = {}
            for sensor in sensors:
                sid = self._sid.get(sensor)
                if sid is None or self._latest_time[sid] == _NEVER:
                    continue
                out[sensor] = StoredReading(
                    sensor,
                    int(self._latest_time[sid]),
                    float(self._latest_value[sid]),
                    self._gateways[sid],
                    int(self._latest_flags[sid]),
                )
            return out

    def buckets(self, sensor: str, start_ms: int, end_ms: int, width_ms: int) -> list[Bucket]:
        if width_ms % MINUTE_MS or not MINUTE_MS <= width_ms <= DAY_MS:
            raise ValueError(f"bucket width {width_ms} ms is not a whole number of minutes from 1 minute to 1 day")
        with self._lock:
            sid = self._sid.get(sensor)
            if sid is None or end_ms <= start_ms:
                return []
            first_minute = -(-start_ms // MINUTE_MS) * MINUTE_MS
            last_minute = max(first_minute, (end_ms // MINUTE_MS) * MINUTE_MS)
            pieces = [self._rollup_minutes(sid, first_minute, last_minute)]
            for edge_start, edge_end in ((start_ms, min(first_minute, end_ms)), (max(last_minute, start_ms), end_ms)):
                if edge_start < edge_end:
                    t, v, _ = self._series(sid, edge_start, edge_end)
                    pieces.append(_minutes_of(t, v))
        minutes = _merge_minutes(np.concatenate(pieces))
        if not len(minutes):
            return []
        bucket = (minutes["minute"].astype(np.int64) * MINUTE_MS // width_ms) * width_ms
        edge = np.flatnonzero(np.diff(bucket)) + 1
        starts = np.concatenate(([0], edge))
        count = np.add.reduceat(minutes["count"].astype(np.int64), starts)
        low = np.minimum.reduceat(minutes["min"], starts)
        high = np.maximum.reduceat(minutes["max"], starts)
        total = np.add.reduceat(minutes["sum"], starts)
        return [
            Bucket(int(b), int(c), float(lo), float(hi), float(s / c))
            for b, c, lo, hi, s in zip(
                bucket[starts].tolist(), count.tolist(), low.tolist(), high.tolist(), total.tolist(), strict=True
            )
        ]

    def _rollup_minutes(self, sid: int, start_ms: int, end_ms: int) -> npt.NDArray[np.void]:
        """Per-minute aggregates of ``sid`` for minutes in [start_ms, end_ms) (both whole minutes)."""
        if end_ms <= start_ms:
            return np.empty(0, _MINUTE)
        rows = self._reader.execute(
            "SELECT data FROM rollups WHERE sid = ? AND day >= ? AND day <= ?",
            (sid, start_ms // DAY_MS, (end_ms - 1) // DAY_MS),
        ).fetchall()
        tail_t, tail_v, _ = self._tail.of_sensor(sid)
        pick = (tail_t >= start_ms) & (tail_t < end_ms)
        parts = [np.frombuffer(data, _MINUTE) for (data,) in rows]
        parts.append(_minutes_of(tail_t[pick], tail_v[pick]))
        minutes = np.concatenate(parts)
        keep = (minutes["minute"] >= start_ms // MINUTE_MS) & (minutes["minute"] < end_ms // MINUTE_MS)
        return minutes[keep]

    def count_readings(self) -> int:
        with self._lock:
            return self._count

    def all_readings(self) -> list[StoredReading]:
        """Every stored reading, by sensor then time (tests and exports of small stores)."""
        with self._lock:
            names = list(self._names)
        rows: list[StoredReading] = []
        for name in names:
            rows.extend(self.readings(name, 0, 2**62, 2**62))
        return rows

    def checkpoint(self) -> None:
        """Move the WAL into the database file and truncate it (backups, disk figures)."""
        with self._lock:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def disk_bytes(self) -> int:
        """Bytes of the database file and its WAL."""
        total = 0
        for suffix in ("", "-wal"):
            candidate = self.path.with_name(self.path.name + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    def close(self) -> None:
        with self._lock:
            self._writer.close()
            self._reader.close()
            self._checkpointer.close()


def _replace_day(db: sqlite3.Connection, *, day: int, merged: list[tuple[int, int, int, bytes]]) -> None:
    """A finished day's rollup parts replaced by one merged row per sensor, the day no longer open."""
    db.execute("DELETE FROM rollups WHERE day = ?", (day,))
    db.executemany("INSERT INTO rollups VALUES (?, ?, ?, ?)", merged)
    db.execute("DELETE FROM open_days WHERE day = ?", (day,))


def _minutes_of(times: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.void]:
    """Per-minute count/min/max/sum of time-sorted readings of one sensor."""
    if not len(times):
        return np.empty(0, _MINUTE)
    minutes = times // MINUTE_MS
    order = np.argsort(minutes, kind="stable")
    minutes, values = minutes[order], values[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(minutes)) + 1))
    out = np.empty(len(starts), _MINUTE)
    out["minute"] = minutes[starts]
    out["count"] = np.diff(np.append(starts, len(minutes)))
    out["min"] = np.minimum.reduceat(values, starts)
    out["max"] = np.maximum.reduceat(values, starts)
    out["sum"] = np.add.reduceat(values, starts)
    return out


def _merge_minutes(parts: npt.NDArray[np.void]) -> npt.NDArray[np.void]:
    """Combine entries of the same minute (parts written by different compactions) and sort by minute."""
    if not len(parts):
        return np.empty(0, _MINUTE)
    order = np.argsort(parts["minute"], kind="stable")
    parts = parts[order]
    starts = np.concatenate(([0], np.flatnonzero(np.diff(parts["minute"])) + 1))
    if len(starts) == len(parts):
        return parts
    out = np.empty(len(starts), _MINUTE)
    out["minute"] = parts["minute"][starts]
    out["count"] = np.add.reduceat(parts["count"], starts)
    out["min"] = np.minimum.reduceat(parts["min"], starts)
    out["max"] = np.maximum.reduceat(parts["max"], starts)
    out["sum"] = np.add.reduceat(parts["sum"], starts)
    return out
