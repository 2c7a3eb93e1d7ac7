"""systemd integration (issue 8): a real ``anju-hub serve`` tells a NOTIFY_SOCKET it is ready, pings the watchdog
from its event loop at half the period and says it is stopping; the unit file asks for what the hub relies on."""

import configparser
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub.demo.processes import free_port
from hub.provision.acl import HUB_USERS
from hub.settings import HubSettings
from hub.worker import STOP_TIMEOUT_S
from tests.conftest import require_service

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "anju-hub.service"


def test_the_hub_notifies_ready_pings_the_watchdog_and_says_it_stops(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.2)
    token = tmp_path / "api.token"
    token.write_text("a-long-random-token-for-this-test-only\n", encoding="utf-8")
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}  # 1 s: a ping every 0.5 s
    argv = [sys.executable, "-m", "hub", "serve", "--config", str(demo_deployment), "--data-dir", str(tmp_path / "d")]
    argv += ["--mqtt-port", str(mosquitto), "--http-port", str(free_port()), "--api-token-file", str(token)]
    hub = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    said: list[tuple[float, str]] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum(m == "WATCHDOG=1" for _, m in said) < 3:
            try:
                said.append((time.monotonic(), listener.recv(256).decode()))
            except TimeoutError:
                assert hub.poll() is None, "the hub exited"
        hub.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "STOPPING=1" not in [m for _, m in said]:
            try:
                said.append((time.monotonic(), listener.recv(256).decode()))
            except TimeoutError:
                continue
        # uvicorn re-raises the SIGTERM it handled, after its graceful stop: systemd counts that as a clean exit
        assert hub.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        if hub.poll() is None:
            hub.kill()
        listener.close()
    messages = [m for _, m in said]
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1", messages
    pings = [t for t, m in said if m == "WATCHDOG=1"]
    assert len(pings) >= 3
    assert all(0.3 <= b - a <= 0.9 for a, b in itertools.pairwise(pings)), "every half period"


def test_the_unit_runs_the_hub_sandboxed_with_its_watchdog() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read(UNIT, encoding="utf-8")
    service = unit["Service"]
    assert (service["Type"], service["NotifyAccess"], service["WatchdogSec"]) == ("notify", "main", "30")
    assert service["User"] == "anju-hub" and service["Restart"] == "always"
    assert service["ExecStart"].endswith("anju-hub serve")
    for key, value in {"ProtectSystem": "strict", "ReadWritePaths": "/var/lib/anju-hub", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
                       "StateDirectory": "anju-hub"}.items():  # fmt: skip
        assert service[key] == value, key
    environment = [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith("Environment=")]
    assert "ANJU_API_TOKEN_FILE=/etc/anju-hub/api.token" in environment, "the token from a file, never the unit"
    settings = {f"ANJU_{name.upper()}" for name in HubSettings.model_fields}
    assert {entry.split("=", 1)[0] for entry in environment} <= settings, "every variable is a hub setting"
    assert f"ANJU_MQTT_USERNAME={HUB_USERS[0]}" in environment, "the user `anju-hub provision init` creates"
    assert "ANJU_MQTT_PASSWORD_FILE=/etc/anju-hub/mqtt.password" in environment


def _service(path: Path) -> configparser.SectionProxy:
    """The ``[Service]`` section of the unit file at ``path`` (keys case-sensitive, as systemd's are)."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(path, encoding="utf-8")
    return unit["Service"]


def test_the_worker_unit_stops_its_hubs_itself_and_names_only_settings() -> None:
    """The worker unit (deploy/systemd/anju-hub-worker.service) is the hub unit's sandbox with what a worker needs:
    SIGTERM to the worker alone (it stops its hubs in order), the shard map checked before start, the database set."""
    worker_unit = UNIT.with_name("anju-hub-worker.service")
    hub, worker = _service(UNIT), _service(worker_unit)
    assert worker["ExecStart"] == "/opt/anju-hub/venv/bin/anju-hub worker"
    assert worker["ExecStartPre"] == "/opt/anju-hub/venv/bin/anju-hub shards check /etc/anju-hub/shards.yaml"
    assert (worker["Type"], worker["NotifyAccess"], worker["KillMode"]) == ("notify", "main", "mixed")
    assert float(worker["TimeoutStopSec"]) > STOP_TIMEOUT_S + 3, "the hubs' graceful stop fits in the unit's"
    differing = {"ExecStart", "ExecStartPre", "KillMode", "TimeoutStopSec", "Environment"}
    for key in set(hub) | set(worker):
        if key not in differing:
            assert hub.get(key) == worker.get(key), f"{key}: the worker's sandbox differs from the hub's"
    environment = [
        line.split("=", 1)[1] for line in worker_unit.read_text().splitlines() if line.startswith("Environment=")
    ]
    names = {entry.split("=", 1)[0] for entry in environment}
    assert names <= {f"ANJU_{name.upper()}" for name in HubSettings.model_fields} | {
        "ANJU_SHARD_MAP",
        "ANJU_WORKER_NAME",
    }
    assert (
        "ANJU_ALERTS_DATABASE_FILE" in names and "ANJU_DEPLOYMENT" not in names and "ANJU_MQTT_CLIENT_ID" not in names
    )


def test_the_district_unit_has_the_hub_sandbox_and_names_only_its_settings() -> None:
    """deploy/systemd/anju-district.service: the hub unit's sandbox around ``anju-hub district serve``, writing only its
    own state directory (the list cursors' key), its variables all district settings."""
    from hub.district.settings import DistrictSettings

    district_unit = UNIT.with_name("anju-district.service")
    hub, district = _service(UNIT), _service(district_unit)
    assert district["ExecStart"] == "/opt/anju-hub/venv/bin/anju-hub district serve"
    assert (district["StateDirectory"], district["ReadWritePaths"]) == ("anju-district", "/var/lib/anju-district")
    differing = {"ExecStart", "ExecStartPre", "Environment", "StateDirectory", "ReadWritePaths", "TimeoutStopSec"}
    for key in set(hub) | set(district):
        if key not in differing:
            assert hub.get(key) == district.get(key), f"{key}: the district node's sandbox differs from the hub's"
    environment = [
        line.split("=", 1)[1] for line in district_unit.read_text().splitlines() if line.startswith("Environment=")
    ]
    names = {entry.split("=", 1)[0] for entry in environment}
    assert names <= {f"ANJU_{name.upper()}" for name in DistrictSettings.model_fields}, names
    assert {"ANJU_SHARD_MAP", "ANJU_ALERTS_DATABASE_FILE", "ANJU_HUB_TOKEN_FILE"} <= names
    assert "ANJU_DATA_DIR=/var/lib/anju-district" in environment


@pytest.mark.parametrize("name", ["anju-hub.service", "anju-hub-worker.service", "anju-district.service"])
def test_systemd_analyze_verifies_the_hub_units(name: str, tmp_path: Path) -> None:
    require_service("systemd-analyze", shutil.which("systemd-analyze"))  # under CI: a failure, not a skip
    # The venv does not exist here: the commands point at /bin/true, so that only the unit itself is judged.
    unit = tmp_path / name
    unit.write_text(
        UNIT.with_name(name).read_text(encoding="utf-8").replace("/opt/anju-hub/venv/bin/anju-hub", "/bin/true")
    )
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
