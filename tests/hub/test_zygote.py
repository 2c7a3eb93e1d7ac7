"""The worker's zygote (hub/zygote.py): real hubs forked from it, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from hub.demo.processes import free_port
from hub.zygote import Zygote, ZygoteGone, children

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def base_env() -> dict[str, str]:
    return {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}


async def heard(listener: socket.socket, wanted: str, timeout_s: float = 60) -> list[str]:
    """The notifications read from ``listener`` until ``wanted`` (fails after ``timeout_s``)."""
    said: list[str] = []
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        while wanted not in said:
            said.append((await loop.sock_recv(listener, 256)).decode())
    return said


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="ascii").split()[2] != "Z"
    except OSError:
        return False


def title(pid: int) -> str:
    """The process's command line as ``ps`` shows it."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()


def gone(pid: int, timeout_s: float) -> bool:
    """Whether process ``pid`` is gone (or a zombie) within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


async def test_a_forked_hub_runs_with_its_own_arguments_and_environment_and_stops_on_sigterm(
    mosquitto: int, demo_deployment: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    request.addfinalizer(listener.close)
    listener.bind(str(tmp_path / "notify.sock"))
    listener.setblocking(False)
    token = tmp_path / "api.token"
    token.write_text("a-long-random-token-for-this-test-only\n", encoding="utf-8")
    args = ["serve", "--config", str(demo_deployment), "--data-dir", str(tmp_path / "d"),
            "--mqtt-port", str(mosquitto), "--http-port", str(free_port()), "--api-token-file", str(token)]  # fmt: skip
    env = {**base_env(), "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    async with Zygote(base_env()) as zygote:
        hub = await zygote.spawn(args, env)
        said = await heard(listener, "WATCHDOG=1")
        assert said[0] == "READY=1", "the hub ran whole from the fork and spoke on the socket its environment named"
        assert title(hub.pid).startswith(f"anju-hub serve --config {demo_deployment}"), "`ps` names the hub"
        hub.terminate()
        assert "STOPPING=1" in await heard(listener, "STOPPING=1", timeout_s=20)
        assert await asyncio.wait_for(hub.wait(), 20) in (0, -signal.SIGTERM), "as systemd counts a clean stop"
        with pytest.raises(ProcessLookupError):
            hub.kill()


async def test_a_hub_that_cannot_start_reports_its_status_and_says_why(capfd: pytest.CaptureFixture[str]) -> None:
    async with Zygote(base_env()) as zygote:
        hub = await zygote.spawn(["serve", "--config", "/nonexistent.yaml"], {**base_env(), "ANJU_HTTP_PORT": "abc"})
        assert await asyncio.wait_for(hub.wait(), 30) == 2
        again = await zygote.spawn(["--log-level", "nonsense", "serve"], base_env())
        assert await asyncio.wait_for(again.wait(), 30) == 2, "the zygote forks again after a hub failed"
    err = capfd.readouterr().err
    assert "invalid settings — http_port: Input should be a valid integer" in err
    assert "argument --log-level: 'nonsense' is not a log level: give one of debug, info" in err


async def test_hubs_stop_when_their_zygote_dies_and_the_worker_is_told(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    args = ["serve", "--config", str(demo_deployment), "--data-dir", str(tmp_path / "d"),
            "--mqtt-port", str(mosquitto), "--http-port", str(free_port())]  # fmt: skip
    async with Zygote(base_env()) as zygote:
        hub = await zygote.spawn(args, base_env())
        assert zygote.pid is not None and alive(hub.pid)
        os.kill(zygote.pid, signal.SIGKILL)
        await asyncio.wait_for(zygote.gone.wait(), 10)
        assert await hub.wait() == -1, "its status died with the zygote: unknown"
        with pytest.raises(ZygoteGone):
            await zygote.spawn(args, base_env())
        orphan_stopped = await asyncio.to_thread(gone, hub.pid, 30)
        assert orphan_stopped, "the kernel sent the orphaned hub SIGTERM (PR_SET_PDEATHSIG) and it stopped"


async def test_bad_requests_are_refused_and_the_zygote_serves_on(caplog: pytest.LogCaptureFixture) -> None:
    async with Zygote(base_env()) as zygote:
        with pytest.raises(ValueError, match=r"take \d+ bytes; at most 65536"):
            await zygote.spawn(["--help"], {"PADDING": "x" * 70_000})
        assert zygote._socket is not None
        zygote._socket.send(b"{not json")  # as a worker of another release might
        hub = await zygote.spawn(["--help"], base_env())
        assert await asyncio.wait_for(hub.wait(), 30) == 0, "the zygote answered and forked on"
    assert any("hub zygote: bad request: Expecting property name" in r.getMessage() for r in caplog.records)


async def test_a_hub_nobody_waits_for_any_more_is_killed(mosquitto: int, demo_deployment: Path, tmp_path: Path) -> None:
    args = ["serve", "--config", str(demo_deployment), "--data-dir", str(tmp_path / "d"),
            "--mqtt-port", str(mosquitto), "--http-port", str(free_port())]  # fmt: skip
    async with Zygote(base_env()) as zygote:
        assert zygote.pid is not None
        kept = await zygote.spawn(args, base_env())
        assert await asyncio.to_thread(gone, kept.pid, 5) is False, "such a hub serves on"
        kept.kill()
        assert await asyncio.wait_for(kept.wait(), 10) == -signal.SIGKILL
        spawning = asyncio.ensure_future(zygote.spawn(args, base_env()))
        await asyncio.sleep(0)  # the request is sent; the seat waiting for it is cancelled (the worker stops)
        spawning.cancel()
        left = await asyncio.to_thread(gone_children, zygote.pid, 10)
        assert left == [], "the forked hub, which would serve on, was killed rather than left without its seat"


def gone_children(pid: int, timeout_s: float) -> list[int]:
    """The children of ``pid`` left after ``timeout_s`` (or as soon as there are none)."""
    deadline = time.monotonic() + timeout_s
    while children(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return children(pid)
