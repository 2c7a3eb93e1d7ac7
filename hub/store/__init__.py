"""Time-series storage backends behind one interface (SQLite embedded now; InfluxDB with the ingest issue)."""

from hub.store.base import DeadLetter, HealthRecord, ReadingStore, SessionMark, StoredReading
from hub.store.sqlite import SqliteStore

__all__ = ["DeadLetter", "HealthRecord", "ReadingStore", "SessionMark", "SqliteStore", "StoredReading"]
