"""Time-series storage backends behind one interface: the embedded chunk store (default) and InfluxDB."""

from hub.store.base import (
    Bucket,
    DeadLetter,
    HealthRecord,
    ReadingColumns,
    ReadingFlag,
    ReadingStore,
    SessionMark,
    StoredReading,
)
from hub.store.chunks import ChunkStore

__all__ = [
    "Bucket",
    "ChunkStore",
    "DeadLetter",
    "HealthRecord",
    "ReadingColumns",
    "ReadingFlag",
    "ReadingStore",
    "SessionMark",
    "StoredReading",
]
