"""Shared fixtures for the alerts tests: the anyio backend, a real sink on loopback, and the alert database's engine
(each test that opens a store runs on a SQLite file and again on a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerts.sink import RunningSink, Sink, start_sink
from tests.alerts.support import SECRET, use_postgres
from tests.conftest import engine_fixture


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[RunningSink]:
    async with start_sink(Sink(secret=SECRET, log_path=tmp_path / "sink.jsonl")) as running:
        yield running


alerts_engine = engine_fixture(use_postgres, "this test's ``open_alert_store``")
