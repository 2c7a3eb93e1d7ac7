"""Shared fixtures for the alerts tests: the anyio backend, a real sink on loopback, and the alert database's engine
(each test that opens a store runs on a SQLite file and again on a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from alerts.sink import RunningSink, Sink, start_sink
from hub.demo.postgres import Postgres
from tests.alerts.support import SECRET, use_postgres


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[RunningSink]:
    async with start_sink(Sink(secret=SECRET, log_path=tmp_path / "sink.jsonl")) as running:
        yield running


@pytest.fixture(params=["sqlite", "postgresql"])
def alerts_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine under this test's ``open_alert_store``: a SQLite file, or a schema of the session's PostgreSQL."""
    if request.param == "postgresql":
        server: Postgres = request.getfixturevalue("postgres_server")
        use_postgres(server.url)
    try:
        yield request.param
    finally:
        use_postgres(None)
