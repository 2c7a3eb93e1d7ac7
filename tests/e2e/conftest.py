"""Fixtures of the end-to-end tests: a Mosquitto that a fault test can stop, kill and restart; the soak marker."""

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo.broker import find_mosquitto
from hub.demo.processes import Line
from tests.conftest import require_service
from tests.e2e.system import Broker


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long fault runs (minutes), run on demand with ANJU_SOAK=1")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto on 127.0.0.1 for this test only, started; the test may stop and start it again."""
    binary = find_mosquitto()
    require_service("mosquitto", binary)
    assert binary is not None
    instance = Broker(binary, tmp_path / "mosquitto", queue.Queue[Line]())
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
