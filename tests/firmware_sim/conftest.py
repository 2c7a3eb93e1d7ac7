"""Shared fixtures of the firmware_sim tests."""

from collections.abc import Callable
from pathlib import Path

import pytest

from hub.demo.processes import free_port as loopback_port

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios"


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    return loopback_port


@pytest.fixture
def scenarios() -> Path:
    return SCENARIOS
