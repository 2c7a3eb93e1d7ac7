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
from hub.store.influx import InfluxStore
from hub.store.influx_http import InfluxError, InfluxTarget
from hub.store.open import open_store

__all__ = [
    "Bucket",
    "ChunkStore",
    "DeadLetter",
    "HealthRecord",
    "InfluxError",
    "InfluxStore",
    "InfluxTarget",
    "ReadingColumns",
    "ReadingFlag",
    "ReadingStore",
    "SessionMark",
    "StoredReading",
    "open_store",
]
