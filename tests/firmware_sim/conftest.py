"""Shared fixtures of the firmware_sim tests."""

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).resolve().parents[2] / "firmware_sim" / "scenarios"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port


@pytest.fixture
def scenarios() -> Path:
    return SCENARIOS
