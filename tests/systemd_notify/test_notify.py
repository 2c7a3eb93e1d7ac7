"""systemd_notify on its own, against real datagram sockets: where a notification goes, and when the watchdog does
not ping at all. The pings' timing and the ``alive`` gate are tested through real processes: tests/hub/test_systemd.py
and tests/edge/test_systemd.py."""

import asyncio
import os
import socket
import uuid
from pathlib import Path

import pytest

from systemd_notify import notify, watchdog_forever, watchdog_interval_s


def test_notify_does_nothing_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_reaches_a_path_or_an_abstract_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, abstract: bool
) -> None:
    name = f"@anju-test-{uuid.uuid4().hex}" if abstract else str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name[1:] if abstract else name)
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        assert notify("READY=1") is True
        assert listener.recv(64) == b"READY=1"


def test_a_socket_that_is_gone_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert notify("WATCHDOG=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "interval_s"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),
        (None, None, None),
        ("x", None, None),
    ],
    ids=["interval", "for-this-process", "for-another-process", "no-watchdog", "not-a-number"],
)
def test_the_watchdog_interval_comes_from_systemd(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, interval_s: float | None
) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert watchdog_interval_s() == interval_s


def test_without_a_watchdog_nothing_pings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "200000")
        monkeypatch.setenv("WATCHDOG_PID", "1")  # the watchdog is another process's

        async def bounded() -> None:
            async with asyncio.timeout(2):
                await watchdog_forever()

        asyncio.run(bounded())  # returns at once, else TimeoutError
        with pytest.raises(BlockingIOError):
            listener.recv(64)
