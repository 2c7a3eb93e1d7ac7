"""The storage interface the ingest path and the API use, whatever the engine."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DeadLetter", "HealthRecord", "ReadingStore", "SessionMark", "StoredReading"]


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One reading as stored: ``value`` in the unit of the sensor's kind at ``time_ms`` (Unix ms)."""

    sensor: str
    time_ms: int
    value: float
    gateway: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that was refused, kept with its raw bytes so nothing is lost silently."""

    received_ms: int
    topic: str
    reason: str
    detail: str
    payload: bytes


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
        readings: Sequence[StoredReading],
        dead: Sequence[DeadLetter],
        marks: Sequence[SessionMark],
        health: Sequence[HealthRecord] = (),
    ) -> int:
        """Write everything in one transaction; return how many readings were new (idempotent writes).

        ``health`` replaces each gateway's stored latest health.
        """
        ...

    def latest_health(self) -> list[HealthRecord]: ...

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]: ...

    def count_readings(self) -> int: ...

    def session_marks(self) -> list[SessionMark]: ...

    def dead_letters(self, limit: int) -> list[DeadLetter]: ...

    def close(self) -> None: ...
