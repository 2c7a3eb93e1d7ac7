"""Shared fixtures for the alerts tests: the anyio backend and a real sink on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from alerts.sink import RunningSink, Sink, start_sink
from tests.alerts.support import SECRET


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sink(tmp_path: Path) -> AsyncIterator[RunningSink]:
    async with start_sink(Sink(secret=SECRET, log_path=tmp_path / "sink.jsonl")) as running:
        yield running
