"""The storage interface the ingest path and the API use, whatever the engine."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DeadLetter", "ReadingStore", "SessionMark", "StoredReading"]


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


class ReadingStore(Protocol):
    def commit(
        self, readings: Sequence[StoredReading], dead: Sequence[DeadLetter], marks: Sequence[SessionMark]
    ) -> int:
        """Write everything in one transaction; return how many readings were new (idempotent writes)."""
        ...

    def readings(self, sensor: str, start_ms: int, end_ms: int, limit: int) -> list[StoredReading]: ...

    def count_readings(self) -> int: ...

    def session_marks(self) -> list[SessionMark]: ...

    def dead_letters(self, limit: int) -> list[DeadLetter]: ...

    def close(self) -> None: ...
