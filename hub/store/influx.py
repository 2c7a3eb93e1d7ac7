"""The InfluxDB backend: readings as line protocol to InfluxDB, the hub's small tables in a local SQLite file.

Order of a commit, and why it keeps the delivery guarantee (DESIGN.md): the readings go to InfluxDB FIRST, in
requests of ``chunk_lines`` lines (``write_concurrency`` in flight; the commit waits for every one), each
answered only once the server has them in its WAL (1.x fsyncs it per
write with the default ``wal-fsync-delay = 0s``); THEN dead letters, session marks and health go to SQLite in
one transaction (WAL, ``synchronous=FULL``); ``commit`` returns after both. The hub *stages* a round (its
requests go out) while the round before is committed, so the server never idles between rounds; a staged round
counts as nothing until its own ``commit`` has seen every request answered and written its marks. A crash in
between leaves readings without their session mark: the hub never acked them, the gateway replays them, and the
replay is absorbed because InfluxDB keeps one point per series and timestamp. The reverse order could leave a
mark (and a hub-ack) ahead of readings that never reached InfluxDB: lost for good. A write InfluxDB refuses raises
(``InfluxError``), nothing is acked, and the gateway replays.

New-reading count: InfluxDB silently overwrites a point written twice, so the store works the count out itself.
Per sensor it keeps in memory the newest device time stored (the *high mark*, loaded lazily with ``last()`` the
first time a sensor is written after opening; moved when a commit's requests are sent). A reading newer than its
sensor's high mark is new without any query — the normal case. Older ones (a replay) are checked against what
InfluxDB holds once the requests still out have been answered, per sensor and per run of close times, in one
multi-statement query, and are not written again: the first write of a point wins, as in
the embedded store. Readings flagged CLOCK_SKEW do not move the high mark (one reading dated 2099 would send
every later reading of its sensor down the checked path); the range of their times is kept and readings inside it
are checked. This assumes one hub writes a community's series, which is how Anju is deployed.

Retention and rollups (1.x; the hub creates them on open and keeps them as the deployment file says): the raw
retention policy (DEFAULT, ``raw_retention_days``), a rollup policy (``rollup_retention_days``) and a continuous
query that writes the 1-minute count/min/max/sum of every series into it each minute (``RESAMPLE FOR 5m``, so a
reading up to ~4 minutes late is still counted) — incremental, never a rescan. A commit that carries older
readings records their time span in SQLite (same transaction as the marks), and ``maintain`` recomputes the
rollups of just that span. 2.x/3.x: the bucket must exist and its retention is the bucket's (set it to
``raw_retention_days``); the hub makes no rollups there (2.x tasks replace continuous queries) and ``buckets``
always reads raw points. Readings older than the raw retention are not written (InfluxDB would drop them, and
its "beyond retention" error must not make a gateway replay forever): they are counted in ``beyond_retention``
and logged.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from hub.store.influx_http import InfluxHttp, InfluxTarget, Series, quote_ident, quote_string
from hub.store.line_protocol import MEASUREMENT, LineEncoder, require_finite
from hub.store.meta import META_SCHEMA, MetaReads, connect, write_meta

__all__ = ["ROLLUP_MEASUREMENT", "InfluxStore"]

log = logging.getLogger("anju.hub.store")

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
ROLLUP_MEASUREMENT = "reading_1m"
ROLLUP_QUERY = "anju_rollup_1m"
RESAMPLE_FOR_MIN = 5
LATE_MS = (RESAMPLE_FOR_MIN - 1) * MINUTE_MS
"""A reading older than this when committed may be missed by the continuous query: its span is recomputed."""
_NEVER = -(2**63)
_ALWAYS = 2**63 - 1
_SENSORS_PER_STATEMENT = 200
_STATEMENTS_PER_REQUEST = 100
_RUN_GAP_MS = HOUR_MS
_STAGED_MAX = 4
"""Staged rounds kept for their commit; older ones are forgotten (their writes were harmless: no marks)."""
"""Replayed times of one sensor further apart than this are checked by separate statements (no long scans)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS influx_rollup_dirty (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL
);
"""


def _sensor_filter(sensors: Iterable[str]) -> str:
    return "(" + " OR ".join(f"sensor = {quote_string(s)}" for s in sensors) + ")"


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(frozen=True, slots=True)
class _Plan:
    rows: npt.NDArray[np.intp]
    """Rows of the commit to write, in input order."""
    codes: npt.NDArray[np.int64]
    """Their sensors' numbers."""
    late: tuple[int, int] | None
    """First and last device time (ms) of readings the continuous query may miss: their rollups are redone."""
    too_old: int
    """Readings older than the raw retention, not written."""


@dataclass(frozen=True, slots=True)
class _Started:
    """A commit whose write requests are out: ``commit`` waits for them, then writes the marks."""

    readings: ReadingColumns
    plan: _Plan
    writes: list[Future[int]]


class InfluxStore(MetaReads):
    """A ReadingStore on InfluxDB (see the module docstring). Thread-safe: plans and sends are serialised, the
    waits of commits and reads are not (the hub commits in round order; marks never move backwards anyway)."""

    def __init__(
        self,
        *,
        target: InfluxTarget,
        community: str,
        meta_path: Path,
        raw_retention_days: int = 30,
        rollup_retention_days: int = 365,
        chunk_lines: int = 5_000,
        write_concurrency: int = 2,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``community``: the ``community`` tag of every point written and the filter of every query (several hubs
        may share a database). ``meta_path``: the SQLite file of dead letters, marks and health. ``chunk_lines``:
        lines per write request (5,000–10,000 is InfluxDB's advice). ``write_concurrency``: write requests of one
        commit in flight at once (InfluxDB parses a request on one core; two keep a 2-core server busy while this
        process encodes). ``clock``: seconds since the epoch, for retention decisions (tests move it)."""
        if raw_retention_days < 1 or rollup_retention_days < 1:
            raise ValueError("retention is at least one day")
        if not 1 <= chunk_lines <= 100_000:
            raise ValueError("chunk_lines must be within 1..100000")
        if not 1 <= write_concurrency <= 16:
            raise ValueError("write_concurrency must be within 1..16")
        self.target = target
        self.community = community
        self.raw_retention_days = raw_retention_days
        self.rollup_retention_days = rollup_retention_days
        self.chunk_lines = chunk_lines
        self.beyond_retention = 0
        """Readings not written because they were older than the raw retention (counted, logged)."""
        self._clock = clock
        self._raw = f"{quote_ident(target.database)}.{quote_ident(target.retention_policy)}.{MEASUREMENT}"
        rollup = target.rollup_retention_policy
        self._rollup = (
            None
            if rollup is None
            else f"{quote_ident(target.database)}.{quote_ident(rollup)}.{quote_ident(ROLLUP_MEASUREMENT)}"
        )
        self._where = f"community = {quote_string(community)}"
        self._lines = LineEncoder(community)
        self._http = InfluxHttp(target=target, timeout_s=timeout_s, max_connections=write_concurrency + 2)
        self._pool = ThreadPoolExecutor(max_workers=write_concurrency, thread_name_prefix="influx-write")
        self._commit_lock = threading.Lock()
        """Held while planning and sending (state below, ``_staged``, ``_writing``), not while waiting for the
        server: the next round's writes go out while this one's finish."""
        self._staged: list[_Started] = []
        self._writing: list[Future[int]] = []
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # Per-sensor state, indexed by the sensor's number: high mark, whether it was loaded, skewed time range.
        self._code: dict[str, int] = {}
        self._names: list[str] = []
        self._high = np.full(1024, _NEVER, np.int64)
        self._loaded = np.zeros(1024, bool)
        self._skew_low = np.full(1024, _ALWAYS, np.int64)
        self._skew_high = np.full(1024, _NEVER, np.int64)
        meta_path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = connect(meta_path)
        self._writer.executescript(META_SCHEMA + _SCHEMA)
        self._reader = connect(meta_path)
        self._meta, self._meta_lock = self._reader, self._read_lock
        try:
            if target.api_version == 1:
                self._ensure_schema()
        except BaseException:
            self.close()
            raise

    # -- opening -----------------------------------------------------------------------------------------------

    def _ensure_schema(self) -> None:
        """Database, both retention policies (durations as configured) and the rollup continuous query (1.x)."""
        target = self.target
        db = quote_ident(target.database)
        self._http.query([f"CREATE DATABASE {db}"])
        [series] = self._http.query([f"SHOW RETENTION POLICIES ON {db}"])
        existing = {row[0]: (row[1], bool(row[4])) for s in series for row in s.values}
        wanted = [(target.retention_policy, self.raw_retention_days, True)]
        if target.rollup_retention_policy is not None:
            wanted.append((target.rollup_retention_policy, self.rollup_retention_days, False))
        for name, days, default in wanted:
            clause = f"ON {db} DURATION {days}d REPLICATION 1" + (" DEFAULT" if default else "")
            if name not in existing:
                self._http.query([f"CREATE RETENTION POLICY {quote_ident(name)} {clause}"])
            elif existing[name][0] != f"{days * 24}h0m0s" or (default and not existing[name][1]):
                self._http.query([f"ALTER RETENTION POLICY {quote_ident(name)} {clause}"])
        if self._rollup is not None:
            body = self._rollup_select(where=None)
            create = (
                f"CREATE CONTINUOUS QUERY {quote_ident(ROLLUP_QUERY)} ON {db} "
                f"RESAMPLE EVERY 1m FOR {RESAMPLE_FOR_MIN}m BEGIN {body} END"
            )
            [queries] = self._http.query(["SHOW CONTINUOUS QUERIES"])
            current = {row[0]: row[1] for s in queries if s.name == target.database for row in s.values}
            if ROLLUP_QUERY in current and current[ROLLUP_QUERY].replace('"', "") != create.replace('"', ""):
                self._http.query([f"DROP CONTINUOUS QUERY {quote_ident(ROLLUP_QUERY)} ON {db}"])
                del current[ROLLUP_QUERY]
            if ROLLUP_QUERY not in current:
                self._http.query([create])

    def _rollup_select(self, *, where: str | None) -> str:
        """The 1-minute rollup as SELECT … INTO: the continuous query's body, and ``rebuild_rollups``'."""
        assert self._rollup is not None
        condition = f" WHERE {where}" if where else ""
        return (
            "SELECT count(value) AS value_count, min(value) AS value_min, max(value) AS value_max, "
            f"sum(value) AS value_sum INTO {self._rollup} FROM {self._raw}{condition} GROUP BY time(1m), *"
        )

    # -- writing -----------------------------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def stage(self, readings: ReadingColumns) -> None:
        """Plan and send this round's write requests now; ``commit`` of the same object waits for them and writes
        the marks (``ReadingStore.stage``). The hub stages a round while the round before is being committed, so
        InfluxDB parses the next requests instead of waiting for a round's tail, its meta transaction and the next
        round's plan. Bounded: at most ``_STAGED_MAX`` staged rounds are kept (the hub has one)."""
        require_finite(readings)
        with self._commit_lock:
            self._staged.append(self._start(readings))
            del self._staged[:-_STAGED_MAX]

    def commit(
        self,
        readings: ReadingColumns,
        dead: Sequence[DeadLetter],
        marks: Sequence[SessionMark],
        health: Sequence[HealthRecord] = (),
    ) -> int:
        require_finite(readings)
        with self._commit_lock:
            started = next((s for s in self._staged if s.readings is readings), None)
            if started is None:
                started = self._start(readings)
            else:
                self._staged.remove(started)
        plan = started.plan
        # Every request must have succeeded before the marks are written; result() re-raises the first failure.
        dropped = sum(write.result() for write in started.writes)
        if plan.too_old or dropped:
            with self._commit_lock:
                self.beyond_retention += plan.too_old + dropped
            log.warning(
                "%d readings older than the raw retention (%d days) not stored",
                plan.too_old + dropped,
                self.raw_retention_days,
            )
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN IMMEDIATE")
            try:
                write_meta(db, dead, marks, health)
                if plan.late is not None:
                    db.execute(
                        "INSERT INTO influx_rollup_dirty (id, start_ms, end_ms) VALUES (1, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET start_ms = min(start_ms, excluded.start_ms), "
                        "end_ms = max(end_ms, excluded.end_ms)",
                        plan.late,
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return len(plan.rows) - dropped

    def _start(self, readings: ReadingColumns) -> _Started:
        """Plan the rows to write and send them, each body as soon as it is assembled (the server parses one
        while the next is put together). High marks move past the rows at once: a later plan then checks its
        older readings against the server (after these writes have ended) instead of taking them for new, and a
        write that fails only sends those readings down the checked path when they come again."""
        plan = self._plan(readings)
        writes = [
            self._pool.submit(self._http.write, body)
            for body in self._lines.bodies(readings, rows=plan.rows, chunk_lines=self.chunk_lines)
        ]
        self._writing = [write for write in self._writing if not write.done()] + writes
        self._advance(readings, plan)
        return _Started(readings, plan, writes)

    def _codes(self, sensors: Sequence[str]) -> npt.NDArray[np.int64]:
        """Each sensor's number in the per-sensor state arrays (new sensors get one)."""
        found = list(map(self._code.get, sensors))
        if None in found:
            for name in dict.fromkeys(s for s, c in zip(sensors, found, strict=True) if c is None):
                self._code[name] = len(self._names)
                self._names.append(name)
            if len(self._names) > len(self._high):
                size = max(len(self._names), 2 * len(self._high))
                self._high = np.concatenate([self._high, np.full(size - len(self._high), _NEVER, np.int64)])
                self._loaded = np.concatenate([self._loaded, np.zeros(size - len(self._loaded), bool)])
                self._skew_low = np.concatenate([self._skew_low, np.full(size - len(self._skew_low), _ALWAYS)])
                self._skew_high = np.concatenate([self._skew_high, np.full(size - len(self._skew_high), _NEVER)])
            found = list(map(self._code.get, sensors))
        return np.array(found, np.int64)

    def _plan(self, readings: ReadingColumns) -> _Plan:
        """Rows to write (first of repeats, not stored yet, within retention) in input order; the late span."""
        codes = self._codes(readings.sensor)
        times = np.asarray(readings.time_ms, np.int64)
        order = np.lexsort((times, codes))  # stable: the first of equal (sensor, time) keeps its place
        sorted_codes, sorted_times = codes[order], times[order]
        repeats = np.flatnonzero((sorted_codes[1:] == sorted_codes[:-1]) & (sorted_times[1:] == sorted_times[:-1]))
        first = np.ones(len(times), bool)
        first[order[repeats + 1]] = False
        rows = np.flatnonzero(first)
        codes, times = codes[rows], times[rows]
        now_ms = self._now_ms()
        old = times < now_ms - self.raw_retention_days * DAY_MS + MINUTE_MS
        late: tuple[int, int] | None = None
        if self._rollup is not None:
            late_times = times[~old & (times < now_ms - LATE_MS)]
            if len(late_times):
                late = (int(late_times.min()), int(late_times.max()))
        unloaded = np.unique(codes[~self._loaded[codes]])
        if len(unloaded):
            self._load_high(unloaded)
        doubt = (times <= self._high[codes]) | ((times >= self._skew_low[codes]) & (times <= self._skew_high[codes]))
        doubt &= ~old
        keep = ~old
        if doubt.any():
            wait(self._writing)  # a staged round's points count as stored once the server has them
            where = np.flatnonzero(doubt)
            stored = self._stored([self._names[c] for c in codes[where].tolist()], times[where])
            keep[where[stored]] = False
        return _Plan(rows[keep], codes[keep], late, int(old.sum()))

    def _load_high(self, codes: npt.NDArray[np.int64]) -> None:
        """High marks of sensors first written since opening: the newest stored time (skewed ones included)."""
        names = [self._names[c] for c in codes.tolist()]
        found = self._last(names, fields="last(flags)", skip_skewed=False)
        self._high[codes] = [found[name][0] if name in found else _NEVER for name in names]
        self._loaded[codes] = True

    def _stored(self, names: Sequence[str], times: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """For each (sensor, time): does InfluxDB hold that point? One statement per run of close times."""
        by_sensor: dict[str, list[int]] = {}
        for name, t in zip(names, times.tolist(), strict=True):
            by_sensor.setdefault(name, []).append(t)
        runs: list[tuple[str, int, int]] = []
        for name, sensor_times in by_sensor.items():
            sensor_times.sort()
            run_start = sensor_times[0]
            for previous, t in zip(sensor_times, [*sensor_times[1:], None], strict=True):
                if t is None or t - previous > _RUN_GAP_MS:
                    runs.append((name, run_start, previous))
                    run_start = previous if t is None else t
        held: set[tuple[str, int]] = set()
        for start in range(0, len(runs), _STATEMENTS_PER_REQUEST):
            batch = runs[start : start + _STATEMENTS_PER_REQUEST]
            statements = [
                f"SELECT flags FROM {self._raw} WHERE {self._where} AND sensor = {quote_string(name)} "
                f"AND time >= {low}ms AND time <= {high}ms"
                for name, low, high in batch
            ]
            for (name, _, _), result in zip(batch, self._http.query(statements), strict=True):
                held.update((name, int(row[0])) for series in result for row in series.values)
        return np.fromiter(((n, t) in held for n, t in zip(names, times.tolist(), strict=True)), bool, len(names))

    def _advance(self, readings: ReadingColumns, plan: _Plan) -> None:
        """Move high marks and skew ranges past the rows just written."""
        times = readings.time_ms[plan.rows]
        skewed = (readings.flags[plan.rows] & ReadingFlag.CLOCK_SKEW).astype(bool)
        np.maximum.at(self._high, plan.codes[~skewed], times[~skewed])
        if skewed.any():
            np.minimum.at(self._skew_low, plan.codes[skewed], times[skewed])
            np.maximum.at(self._skew_high, plan.codes[skewed], times[skewed])

    # -- housekeeping ------------------------------------------------------------------------------------------

    def maintain(self, now_ms: int) -> None:
        """Recompute the 1-minute rollups of the span late readings fell into (1.x); retention is InfluxDB's own.

        Cheap when there is nothing to do (one SQLite read), so the hub may call it every second.
        """
        if self._rollup is None:
            return
        with self._write_lock:
            row = self._writer.execute("SELECT start_ms, end_ms FROM influx_rollup_dirty").fetchone()
        if row is None:
            return
        start_ms, end_ms = int(row[0]), int(row[1])
        self.rebuild_rollups(max(start_ms, now_ms - self.raw_retention_days * DAY_MS), end_ms + 1)
        with self._write_lock:
            self._writer.execute(
                "DELETE FROM influx_rollup_dirty WHERE id = 1 AND start_ms = ? AND end_ms = ?", (start_ms, end_ms)
            )

    def rebuild_rollups(self, start_ms: int, end_ms: int) -> None:
        """Recompute the community's 1-minute rollups of every minute that overlaps [start_ms, end_ms), a day per
        statement. The same SELECT … INTO as the continuous query, so both write the same points."""
        if self._rollup is None:
            raise RuntimeError("this target has no rollups (InfluxDB 2.x)")
        start = start_ms // MINUTE_MS * MINUTE_MS
        end = -(-end_ms // MINUTE_MS) * MINUTE_MS
        statements = [
            self._rollup_select(where=f"{self._where} AND time >= {day}ms AND time < {min(day + DAY_MS, end)}ms")
            for day in range(start, end, DAY_MS)
        ]
        for batch in _chunks(statements, 10):
            self._http.query(batch)

    # -- reading -----------------------------------------------------------------------------------------------

    def _last(self, sensors: Sequence[str], *, fields: str, skip_skewed: bool) -> dict[str, tuple[int, Sequence[Any]]]:
        """Per sensor, the time and ``fields`` row of its newest point: looked for in the last hour, then the last
        day, then all time, so that live sensors never cost a scan of their whole history."""
        found: dict[str, tuple[int, Sequence[Any]]] = {}
        now_ms = self._now_ms()
        skew = f" AND flags & {int(ReadingFlag.CLOCK_SKEW)} = 0" if skip_skewed else ""
        for since in (now_ms - HOUR_MS, now_ms - DAY_MS, None):
            missing = [s for s in dict.fromkeys(sensors) if s not in found]
            if not missing:
                break
            bound = f" AND time >= {since}ms" if since is not None else ""
            statements = [
                f"SELECT {fields} FROM {self._raw} WHERE {self._where} AND {_sensor_filter(chunk)}{skew}{bound} "
                "GROUP BY sensor"
                for chunk in _chunks(missing, _SENSORS_PER_STATEMENT)
            ]
            for batch in _chunks(statements, _STATEMENTS_PER_REQUEST):
                for result in self._http.query(batch):
                    for series in result:
                        for row in series.values:
                            found[series.tags["sensor"]] = (int(row[0]), row)
        return found

    def latest(self, sensors: Sequence[str]) -> dict[str, StoredReading]:
        """The newest reading of each sensor that has one; readings flagged CLOCK_SKEW are never the latest."""
        found = self._last(sensors, fields="last(value), flags, gateway", skip_skewed=True)
        return {
            sensor: StoredReading(sensor, t, float(row[1]), str(row[3]), int(row[2]))
            for sensor, (t, row) in found.items()
        }

    def _rows(self, series: Iterable[Series]) -> list[StoredReading]:
        """Rows of ``SELECT value, flags, gateway, sensor``."""
        return [
            StoredReading(str(row[4]), int(row[0]), float(row[1]), str(row[3]), int(row[2]))
            for s in series
            for row in s.values
        ]

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        if limit <= 0 or end_ms <= start_ms:
            return []
        [result] = self._http.query(
            [
                f"SELECT value, flags, gateway, sensor FROM {self._raw} WHERE {self._where} "
                f"AND sensor = {quote_string(sensor)} AND time >= {start_ms}ms AND time < {end_ms}ms "
                f"ORDER BY time ASC LIMIT {int(limit)}"
            ]
        )
        return self._rows(result)

    def window(self, sensors: Sequence[str], start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        """Readings of ``sensors`` in [start_ms, end_ms) by time then sensor, at most ``limit``.

        InfluxDB merges the series by time but orders equal times its own way, so the rows at the last time a
        LIMITed answer reached are fetched whole before sorting (a cut there would drop arbitrary sensors).
        """
        wanted = list(dict.fromkeys(sensors))
        if limit <= 0 or end_ms <= start_ms or not wanted:
            return []
        results = self._window_parts(wanted, start_ms, end_ms, limit)
        full = [part[-1].time_ms for part in results if len(part) >= limit]
        rows = [row for part in results for row in part]
        if full:
            edge = min(full)
            rows = [row for row in rows if row.time_ms < edge]
            # At one millisecond each sensor has at most one reading: this answer is never cut.
            rows.extend(row for part in self._window_parts(wanted, edge, edge + 1, len(wanted) + 1) for row in part)
        rows.sort(key=lambda r: (r.time_ms, r.sensor))
        return rows[:limit]

    def _window_parts(
        self, sensors: Sequence[str], start_ms: int, end_ms: int, limit: int
    ) -> list[list[StoredReading]]:
        """Each group of sensors' first ``limit`` readings in [start_ms, end_ms), one statement per group."""
        statements = [
            f"SELECT value, flags, gateway, sensor FROM {self._raw} WHERE {self._where} AND {_sensor_filter(chunk)} "
            f"AND time >= {start_ms}ms AND time < {end_ms}ms ORDER BY time ASC LIMIT {int(limit)}"
            for chunk in _chunks(sensors, _SENSORS_PER_STATEMENT)
        ]
        return [
            self._rows(result)
            for batch in _chunks(statements, _STATEMENTS_PER_REQUEST)
            for result in self._http.query(batch)
        ]

    def buckets(self, sensor: str, start_ms: int, end_ms: int, width_ms: int) -> list[Bucket]:
        """count/min/max/mean per ``width_ms`` bucket (aligned to the epoch) that has readings.

        Exact from raw points wherever raw points are still kept; buckets that start before the raw retention
        horizon (rounded up to the bucket width) come from the 1-minute rollups (1.x), so there the range edges
        are whole minutes and the mean is sum/count of the rollups. 2.x: raw points always.
        """
        if width_ms % MINUTE_MS or not MINUTE_MS <= width_ms <= DAY_MS:
            raise ValueError(f"bucket width {width_ms} ms is not a whole number of minutes from 1 minute to 1 day")
        if end_ms <= start_ms:
            return []
        sensor_where = f"{self._where} AND sensor = {quote_string(sensor)}"
        out: list[Bucket] = []
        split = start_ms
        if self._rollup is not None:
            horizon = -(-(self._now_ms() - self.raw_retention_days * DAY_MS) // width_ms) * width_ms
            if start_ms < horizon:
                split = min(end_ms, horizon)
                [result] = self._http.query(
                    [
                        "SELECT sum(value_count), min(value_min), max(value_max), sum(value_sum) "
                        f"FROM {self._rollup} WHERE {sensor_where} AND time >= {start_ms // MINUTE_MS * MINUTE_MS}ms "
                        f"AND time < {split}ms GROUP BY time({width_ms}ms) fill(none)"
                    ]
                )
                out.extend(
                    Bucket(int(t), int(c), float(lo), float(hi), float(total) / int(c))
                    for s in result
                    for t, c, lo, hi, total in s.values
                    if c
                )
        if split < end_ms:
            [result] = self._http.query(
                [
                    "SELECT count(value), min(value), max(value), mean(value) "
                    f"FROM {self._raw} WHERE {sensor_where} AND time >= {split}ms AND time < {end_ms}ms "
                    f"GROUP BY time({width_ms}ms) fill(none)"
                ]
            )
            out.extend(
                Bucket(int(t), int(c), float(lo), float(hi), float(mean))
                for s in result
                for t, c, lo, hi, mean in s.values
            )
        return out

    def count_readings(self) -> int:
        [result] = self._http.query([f"SELECT count(flags) FROM {self._raw} WHERE {self._where}"])
        return sum(int(row[1]) for s in result for row in s.values)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()
        with self._write_lock, self._read_lock:
            self._writer.close()
            self._reader.close()
