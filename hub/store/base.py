"""The storage interface the ingest path and the API use, whatever the engine.

Readings travel to a store as columns (``ReadingColumns``): the ingest round decodes thousands of readings,
and building one object per reading only to take it apart again in the store costs more than the write.
Everything else (dead letters, session marks, health) is small and stays in records.

Every backend passes the same contract suite (tests/hub/test_store_contract.py):
- ``commit`` is idempotent on (sensor, device time): the same point written twice is one row, and the return
  value counts only the new ones. Sensor ids are unique in a deployment (hub/config.py), so the key
  (gateway, sensor, time) of DESIGN.md is (sensor, time) with the gateway kept alongside.
- Once ``commit`` has returned, everything it was given survives a crash (kill -9) of the process: the hub
  publishes hub-acks only after it returns.
- Queries return what was committed, in time order.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

__all__ = [
    "Bucket",
    "DeadLetter",
    "HealthRecord",
    "ReadingColumns",
    "ReadingFlag",
    "ReadingStore",
    "SessionMark",
    "StoredReading",
]


class ReadingFlag(IntFlag):
    """Marks stored with a reading (a bit set in ``flags``)."""

    NONE = 0
    CLOCK_SKEW = 1
    """The device time is far from the hub's clock when received (hub.ingest): stored, reported, not judged."""


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as stored: ``value`` in the unit of the sensor's kind at ``time_ms`` (Unix ms)."""

    sensor: str
    time_ms: int
    value: float
    gateway: str
    flags: int = 0


@dataclass(frozen=True, slots=True)
class ReadingColumns:
    """Readings as parallel columns, row i = (sensor[i], gateway[i], time_ms[i], value[i], flags[i])."""

    sensor: Sequence[str]
    gateway: Sequence[str]
    time_ms: npt.NDArray[np.int64]
    value: npt.NDArray[np.float64]
    flags: npt.NDArray[np.uint8]

    def __post_init__(self) -> None:
        n = len(self.sensor)
        if not len(self.gateway) == len(self.time_ms) == len(self.value) == len(self.flags) == n:
            raise ValueError("reading columns differ in length")

    def __len__(self) -> int:
        return len(self.sensor)

    @classmethod
    def of(cls, rows: Iterable[StoredReading]) -> Self:
        """Columns from records (tests, small writes)."""
        rows = list(rows)
        return cls(
            [r.sensor for r in rows],
            [r.gateway for r in rows],
            np.array([r.time_ms for r in rows], dtype=np.int64),
            np.array([r.value for r in rows], dtype=np.float64),
            np.array([r.flags for r in rows], dtype=np.uint8),
        )

    @classmethod
    def empty(cls) -> Self:
        return cls([], [], np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.uint8))

    def rows(self) -> list[StoredReading]:
        return [
            StoredReading(s, int(t), float(v), g, int(f))
            for s, g, t, v, f in zip(self.sensor, self.gateway, self.time_ms, self.value, self.flags, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Bucket:
    """Aggregate of one sensor's readings in [start_ms, start_ms + width): buckets are aligned to the Unix epoch."""

    start_ms: int
    count: int
    min: float
    max: float
    mean: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that was refused, kept with its raw bytes so nothing is lost silently."""

    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: bytes
    id: int = field(default=0, compare=False)
    """The store's number for it, once stored (1, 2, … in the order refused; 0 before): a paging position."""


@dataclass(frozen=True, slots=True)
class SessionMark:
    """The highest contiguous seq of (gateway, session) committed; persisted with the readings."""

    gateway: str
    session: int
    acked_seq: int


@dataclass(frozen=True, slots=True)
class HealthRecord:
    """A gateway's latest health payload as received (``protocol.telemetry``), kept so a restarted hub shows it.

    The raw bytes rather than columns: the payload is tolerant of fields the hub does not know yet, and the
    table need not change whenever the gateway's health grows a field.
    """

    gateway: str
    received_ms: int
    payload: bytes


class ReadingStore(Protocol):
    def commit(
        self,
        readings: ReadingColumns,
        dead: Sequence[DeadLetter],
        marks: Sequence[SessionMark],
        health: Sequence[HealthRecord] = (),
    ) -> int:
        """Make everything durable before returning; return how many readings were new (idempotent writes).

        ``health`` replaces each gateway's stored latest health; a mark never moves backwards.
        """
        ...

    def stage(self, readings: ReadingColumns) -> None:
        """An optional head start on a later ``commit`` of this very object (compared by identity), so that a
        round's writes may overlap the commit of the round before: only ``commit`` claims the readings durable
        (writes the marks) and returns the count. A store may do nothing here (the embedded one does: its commit
        is one local transaction). A staged round never committed leaves no mark; its readings may be stored
        (the gateway's replay of them is then absorbed, as after a crash between a write and its marks)."""
        ...

    def latest(self, sensors: Sequence[str]) -> dict[str, StoredReading]:
        """The newest stored reading of each of ``sensors`` that has one (by device time)."""
        ...

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        """One sensor's readings with start_ms <= time < end_ms, oldest first, at most ``limit``."""
        ...

    def window(self, sensors: Sequence[str], start_ms: int, end_ms: int, limit: int) -> list[StoredReading]:
        """Readings of several sensors (a grid) with start_ms <= time < end_ms, by time then sensor."""
        ...

    def buckets(self, sensor: str, start_ms: int, end_ms: int, width_ms: int) -> list[Bucket]:
        """min/max/mean/count per ``width_ms`` bucket (a multiple of 60,000, at most a day) that has readings."""
        ...

    def count_readings(self) -> int: ...

    def latest_health(self) -> list[HealthRecord]: ...

    def session_marks(self) -> list[SessionMark]: ...

    def dead_letters(self, limit: int, before: int | None = None) -> list[DeadLetter]:
        """The newest ``limit`` dead letters, newest first; only those numbered below ``before`` when given."""
        ...

    def maintain(self, now_ms: int) -> None:
        """Housekeeping that is not on the ack path: retention, compaction. Safe to call at any time."""
        ...

    def close(self) -> None: ...
