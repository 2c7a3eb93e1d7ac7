"""Helpers shared by the alerts tests: events, a directory pointing at a sink, bounded waiting."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from alerts import AlertStore, Directory, Grade, Grid, Person, RiskEvent, WebhookTarget
from alerts.escalation import EscalationLevel
from alerts.sink import RunningSink

SECRET = "test-secret-0123456789abcdef"


def event(**changes: Any) -> RiskEvent:
    """A gas level-1 event in Hongxing 1栋301, changed by keyword."""
    fields: dict[str, Any] = {
        "key": "hongxing/gas-b1-301/gas/level",
        "community": "hongxing",
        "grid": "hongxing-01",
        "sensor": "gas-b1-301",
        "kind": "gas",
        "location_zh": "红星社区 1栋301厨房",
        "rule": "level-1 alarm",
        "grade": Grade.III,
        "value": 27.4,
        "unit": "%LEL",
        "time_ms": int(time.time() * 1000),
        "status": "firing",
        "source": "GB/T 50493-2019 §5.5.2",
        "threshold": 25.0,
    }
    fields.update(changes)
    return RiskEvent(**fields)


def directory_for(url: str, *, secret: str = SECRET, grid: str = "hongxing-01") -> Directory:
    return Directory(
        grids=[Grid(id=grid, name="红星一网格", managers=("zhang-wei",))],
        people=[Person(id="zhang-wei", name="张伟", targets=(WebhookTarget(url=url, secret=secret),))],
    )


async def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms; fail the test after ``timeout_s``."""
    with anyio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110 - plain predicates (counters, files), bounded by fail_after
            await anyio.sleep(0.01)


MINUTE_MS = 60_000
T0 = 1_790_000_000_000

CHAIN = (
    EscalationLevel(id="property", name="物业服务中心", people=("li-property", "zhao-committee")),
    EscalationLevel(id="subdistrict", name="街道应急办", people=("chen-subdistrict",)),
    EscalationLevel(id="district", name="区应急管理局", people=("wu-district",)),
)


def chain_directory(url: str) -> Directory:
    names = {
        "zhang-wei": "张伟",
        "li-property": "李物业",
        "zhao-committee": "赵居委",
        "chen-subdistrict": "陈街道",
        "wu-district": "吴区应急",
    }
    target = (WebhookTarget(url=url, secret=SECRET),)
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[Person(id=pid, name=name, targets=target) for pid, name in names.items()],
    )


class Clock:
    """Unix ms that a test moves by hand (the service reads time only through it)."""

    def __init__(self, now_ms: int = T0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def pages(sink: RunningSink, reason: str) -> list[str]:
    return sorted(b["recipient"]["id"] for b in sink.sink.received if b["reason"] == reason)


_engine_url: list[str] = []
"""The PostgreSQL server the ``alerts_engine`` fixture chose for this test, or empty for SQLite."""


StoreT = TypeVar("StoreT", bound=AlertStore)


def use_postgres(url: str | None) -> None:
    """Open the next tests' alert stores on the PostgreSQL at ``url`` (None: SQLite files again)."""
    _engine_url[:] = [url] if url else []


def open_alert_store(path: Path, kind: type[StoreT] = AlertStore) -> StoreT:  # type: ignore[assignment]
    """The test's alert store at ``path``: that SQLite file, or, when the ``alerts_engine`` fixture picked PostgreSQL,
    a schema of the test server named after ``path`` — so opening the same path again is a restart of the hub on the
    same database, and another test's path is another, empty, database. ``kind``: a subclass of the store to open."""
    if not _engine_url:
        return kind(path)
    return kind(_engine_url[0], schema="t" + hashlib.sha256(str(path).encode()).hexdigest()[:20])
