"""deploy/systemd/anju-edge.service: the directives the Pi install relies on, and ``systemd-analyze verify``."""

import shutil
import subprocess
from pathlib import Path

from tests.conftest import require_service

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "anju-edge.service"
REQUIRED = {
    "Type": "notify",  # READY=1 and watchdog pings from anju-edge run (tests/edge/test_systemd.py)
    "NotifyAccess": "main",
    "WatchdogSec": "30",
    "User": "anju-edge",
    "ExecStart": "/opt/anju-edge/venv/bin/anju-edge run --config /etc/anju-edge/edge.yaml",
    "Restart": "always",
    "RestartSec": "2",
    "StateDirectory": "anju-edge",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/anju-edge /etc/anju-edge",  # config push writes edge.yaml there
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "TimeoutStopSec": "30",
}


def test_unit_has_the_required_directives() -> None:
    pairs = [line.split("=", 1) for line in UNIT.read_text(encoding="utf-8").splitlines() if "=" in line]
    settings = {key: value for key, value in pairs if not key.startswith("#")}
    assert {key: settings.get(key) for key in REQUIRED} == REQUIRED


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    require_service("systemd-analyze", shutil.which("systemd-analyze"))  # under CI: a failure, not a skip
    # The venv does not exist here: point the commands at /bin/true so that only the unit itself is judged.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace("/opt/anju-edge/venv/bin/anju-edge", "/bin/true"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
