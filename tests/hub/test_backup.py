"""``anju-hub backup`` / ``restore`` (issue 8): the data directory copied while a real hub runs, restored into a fresh
one, and a new hub on it holds the same readings, alerts, audit chain and users; damaged or misplaced backups are
refused naming the file."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import Reading
from protocol.topics import Channel
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub
from tests.hub.identity_support import PASSWORD, add_users, login_tokens

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


async def snapshot(hub: Hub) -> dict[str, Any]:
    readings = (await hub.api.get("/api/v1/readings", params={"sensor": "gas-b1-101", "start": T0 - 1})).json()
    alerts = (await hub.api.get("/api/v1/alerts")).json()
    return {
        "readings": [(r["time_ms"], r["value"]) for r in readings["readings"]],
        "alerts": sorted((a["id"], a["state"], a["acknowledged_by"]) for a in alerts),
        "audit": (await hub.api.get("/api/v1/audit/verify")).json(),
        "users": sorted(u["name"] for u in (await hub.api.get("/api/v1/users")).json()),
    }


async def test_a_backup_taken_while_the_hub_runs_restores_into_a_new_hub_with_the_same_state(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    live, copy, restored = tmp_path / "live", tmp_path / "backup", tmp_path / "restored"
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=live) as hub:
        async with gateway(hub.mqtt_port) as gw:
            for seq in range(1, 6):
                await gw.publish(seq, *(Reading("gas-b1-101", T0 + (seq * 10 + k) * 1000, 1.0 + k / 10, "%LEL")
                                        for k in range(10)))  # fmt: skip
                await gw.ack()
            await gw.publish(6, Reading("gas-b1-301", T0, 27.4, "%LEL"), channel=Channel.ALARM)
            await gw.ack()
        (alert,) = await eventually(lambda: _alerts(hub))
        await hub.api.post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"by": "wang-li"})
        await add_users(hub, "wang")
        before = await snapshot(hub)
        made = cli("backup", "--data-dir", str(live), "--to", str(copy))  # the hub is running: online backup
        assert made.returncode == 0, made.stderr
        assert "readings.anju" in made.stdout and "alerts.sqlite3" in made.stdout
        again = cli("backup", "--data-dir", str(live), "--to", str(copy))
        assert again.returncode == 2 and "not empty" in again.stderr
    assert len(before["readings"]) == 50 and before["audit"]["intact"] and before["users"] == ["wang"]

    onto_live = cli("restore", "--from", str(copy), "--data-dir", str(live))
    assert onto_live.returncode == 2 and "holds data already" in onto_live.stderr, "never over a hub's live files"
    done = cli("restore", "--from", str(copy), "--data-dir", str(restored))
    assert done.returncode == 0, done.stderr
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=restored) as hub:
        after = await snapshot(hub)
        assert after == before
        assert (await login_tokens(hub, "wang", PASSWORD))["user"]["name"] == "wang", "users and passwords came back"


async def _alerts(hub: Hub) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = (await hub.api.get("/api/v1/alerts")).json()
    return found or None


def test_a_damaged_or_foreign_backup_is_refused_naming_the_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "rules-state.json").write_text('{"version": 1}\n', encoding="utf-8")
    made = cli("backup", "--data-dir", str(data), "--to", str(tmp_path / "b"))
    assert made.returncode == 0, made.stderr
    (tmp_path / "b" / "rules-state.json").write_text('{"version": 2}\n', encoding="utf-8")
    damaged = cli("restore", "--from", str(tmp_path / "b"), "--data-dir", str(tmp_path / "r1"))
    assert damaged.returncode == 2 and "rules-state.json" in damaged.stderr and "SHA-256" in damaged.stderr
    assert not (tmp_path / "r1").exists(), "nothing is written before the whole backup checked out"
    foreign = cli("restore", "--from", str(tmp_path), "--data-dir", str(tmp_path / "r2"))
    assert foreign.returncode == 2 and "manifest.json" in foreign.stderr
    missing = cli("backup", "--data-dir", str(tmp_path / "nope"), "--to", str(tmp_path / "c"))
    assert missing.returncode == 2 and "no such data directory" in missing.stderr
