"""Takeover (issue 8): two hubs for one community on a shared PostgreSQL; the one running it is killed mid-incident.

The corridor fire drill of test_drill.py (its deployment, simulator scenario, edge and webhook sink), with two hub
processes pointed at one PostgreSQL (Debian's package, a database of this test's own) and one Mosquitto. Hub A starts
first and takes the community's lease; hub B waits as a standby, its API port closed. Right after the grid manager's
first page hub A is killed (SIGKILL, as a power cut would), before the answer deadline. Hub B must take the community
over within 30 s (the lease's 15 s term, its poll and its start), fire the escalations that came due while nobody
ran the community — once each, to the levels in order — page nobody twice, take the sub-district's acknowledgement
through its own API, and leave an intact audit chain in PostgreSQL (``anju-hub audit verify --database-file``).
About 60 s of wall time.
"""

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from hub.config import load_deployment
from hub.demo.orchestrator import prepare
from hub.demo.processes import free_port, wait_port
from tests.e2e.system import System, running, wait_for
from tests.e2e.test_drill import (
    ANSWER_WITHIN_S,
    DEPLOYMENT,
    DURATION_S,
    GRID_MANAGER,
    LEVEL_1,
    LEVEL_2,
    SCENARIO,
    SPEED,
    SUBDISTRICT,
    poll,
    received,
    the_corridor_fire,
)

pytestmark = pytest.mark.e2e

ANSWER_S = 8
"""The grade II answer deadline here: long enough that hub A is surely killed before the first escalation."""
TAKEOVER_BOUND_S = 30.0
"""Issue 8: a dead worker's communities are taken over within 30 s."""


class TwoHubs(System):
    """The drill's processes with hub A (started first: it takes the lease) and hub B (a standby) on PostgreSQL."""

    def __init__(self, *args: Any, database_file: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.database_file = database_file
        self.ports = {"hub-a": self.plan.http_port, "hub-b": free_port()}

    def start_hub(self) -> None:
        for name, port in self.ports.items():
            self.start(
                name, "hub", "--log-level", "info", "serve", "--config", str(self.plan.deployment),
                "--data-dir", str(self.plan.run_dir / name), "--mqtt-port", str(self.hub_mqtt_port),
                "--http-port", str(port), "--api-token-file", str(self.plan.token_file),
                "--alerts-database-file", str(self.database_file), "--lease-holder", name,
                port=port if name == "hub-a" else None,
            )  # fmt: skip


class Api:
    """One hub's API, as the people's apps use it: with the admin integration token, or a user's access token."""

    def __init__(self, system: TwoHubs, hub: str, token: str | None = None) -> None:
        token = token or system.plan.token_file.read_text(encoding="utf-8").strip()
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{system.ports[hub]}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def get(self, path: str, **params: str) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code == 200, f"POST {path} {body}: {response.status_code} {response.text}"
        return response.json()


@pytest.fixture
def database(database_url: str, tmp_path: Path) -> Path:
    """The file holding the URL of a database of this test's own on the session's PostgreSQL."""
    file = tmp_path / "alerts-database.url"
    file.write_text(database_url + "\n", encoding="utf-8")
    file.chmod(0o600)
    return file


@pytest.fixture
def system(mosquitto: int, database: Path, tmp_path: Path) -> Iterator[TwoHubs]:
    source = tmp_path / "drill.yaml"
    source.write_text(
        DEPLOYMENT.replace(f"answer_within_s: {{II: {ANSWER_WITHIN_S}}}", f"answer_within_s: {{II: {ANSWER_S}}}"),
        encoding="utf-8",
    )
    plan = prepare(tmp_path / "run", source=source, mqtt_port=mosquitto)
    assert load_deployment(plan.deployment).escalation.answer_within_s == {"II": ANSWER_S}
    drill = TwoHubs(
        plan, hub_mqtt_port=mosquitto, speed=SPEED, duration_s=DURATION_S, detectors=5, scenario=SCENARIO,
        database_file=database,
    )  # fmt: skip
    with running(drill) as started:
        yield started


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=60, check=False)


def outbox(database_file: Path, alert_id: str) -> list[tuple[str, str, str]]:
    """(key, reason, status) of every notification of ``alert_id`` in the shared database, by revision and person."""
    url = database_file.read_text(encoding="utf-8").strip()
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT key, reason, status FROM anju_hongxing.notifications WHERE alert_id = %s "
            "ORDER BY revision, person_id",
            (alert_id,),
        ).fetchall()
    return [(str(k), str(r), str(s)) for k, r, s in rows]


def test_a_standby_takes_over_a_killed_hub_and_the_drill_completes(system: TwoHubs) -> None:
    plan = system.plan
    hub_a, hub_b = Api(system, "hub-a"), Api(system, "hub-b")
    try:
        # 1. Hub A runs the community; hub B waits with its port closed.
        leases = cli("leases", "--database-file", str(system.database_file))
        assert leases.returncode == 0, leases.stderr
        assert leases.stdout.startswith("hongxing\thub-a\tepoch 1\theld"), leases.stdout
        assert not wait_port(system.ports["hub-b"], timeout_s=0.5), "a standby must not serve the API"

        # The sub-district's user is added while hub A runs (the CLI writes to the shared database) and logs in there.
        secret = "消防演练-drill-2026"
        password = system.plan.run_dir / "chen.password"
        password.write_text(secret + "\n", encoding="utf-8")
        shared = ("--config", str(plan.deployment), "--database-file", str(system.database_file))
        added = cli("users", *shared, "add", "chen", "--role", "sub_district", "--person", SUBDISTRICT,
                    "--password-file", str(password))  # fmt: skip
        assert added.returncode == 0, added.stderr
        login = httpx.post(f"{hub_a.http.base_url}auth/login", json={"username": "chen", "password": secret})
        assert login.status_code == 200, login.text
        chen_token = login.json()["access_token"]

        # 2. The corridor fire opens on hub A and pages the grid manager.
        fire = poll(lambda: the_corridor_fire(hub_a), system, "the corridor's corroborated alert", 90)  # type: ignore[arg-type]
        alert_id = str(fire["id"])
        poll(lambda: received(plan, alert_id) or None, system, "the first page of the corridor fire", 30)
        assert fire["escalation_level"] == 0

        # 3. Hub A dies before the answer deadline; hub B takes over within the bound.
        killed = time.monotonic()
        system.children.pop("hub-a").kill()
        assert wait_port(system.ports["hub-b"], timeout_s=TAKEOVER_BOUND_S + 10), f"no takeover:\n{system.tail()}"
        took_s = time.monotonic() - killed
        assert took_s <= TAKEOVER_BOUND_S, f"hub B took {took_s:.1f} s to take over"
        assert system.lines_of("hub-b", "lease on community hongxing taken by hub-b (epoch 2)"), system.tail()
        metrics = httpx.get(f"http://127.0.0.1:{system.ports['hub-b']}/metrics", timeout=10).text
        assert re.search(r"^anju_lease_epoch 2(\.0)?$", metrics, re.M), metrics

        # 4. Hub B fires the escalations that came due, once each and in order, and takes the acknowledgement.
        def reached_sub_district() -> bool:
            return any(p.recipient == SUBDISTRICT and p.level == 2 for p in received(plan, alert_id))

        wait_for(reached_sub_district, system, "the escalation to the sub-district by hub B", 2 * ANSWER_S + 30)
        # The session opened on hub A holds on hub B: users and sessions are the community's, not a hub's.
        chen = Api(system, "hub-b", chen_token)
        try:
            answered = chen.post(f"/alerts/{alert_id}/acknowledge", {"by": SUBDISTRICT, "note": "接单 on our way"})
        finally:
            chen.http.close()
        assert answered["state"] == "acknowledged" and answered["escalation_level"] == 2, answered
        path = hub_b.get(f"/alerts/{alert_id}/transitions")
    finally:
        hub_a.http.close()
        hub_b.http.close()
        system.stop()

    timers = [t["note"] for t in path if t["channel"] == "timer" and t["note"].startswith("escalated")]
    assert [note.split(" (")[0] for note in timers] == ["escalated to level 1", "escalated to level 2"], path
    pages = received(plan, alert_id)
    keys = [page.key for page in pages]
    assert len(keys) == len(set(keys)), f"a page arrived twice: {sorted(keys)}"
    first_to = {(page.recipient, page.level) for page in pages if page.level is not None}
    assert (GRID_MANAGER, 0) in first_to and {(who, 1) for who in LEVEL_1 - {GRID_MANAGER}} <= first_to, first_to
    assert (SUBDISTRICT, 2) in first_to, first_to
    rows = outbox(system.database_file, alert_id)
    escalated = {(key.split(":")[1], key.split(":")[2]) for key, reason, _ in rows if reason == "escalated"}
    assert escalated == {("2", who) for who in LEVEL_1} | {("3", who) for who in LEVEL_2}, rows
    assert not [row for row in rows if row[2] == "failed"], rows

    verify = cli("audit", "verify", "--database-file", str(system.database_file), "--community", "hongxing")
    assert verify.returncode == 0 and verify.stdout.startswith("audit log intact: "), verify.stdout + verify.stderr
    acknowledged = next(t for t in path if t["to_state"] == "acknowledged")
    assert acknowledged["by"] == SUBDISTRICT and acknowledged["channel"] == "api", acknowledged


def test_a_hub_whose_lease_is_taken_stops_at_once_with_status_75(
    mosquitto: int, database: Path, demo_deployment: Path, tmp_path: Path
) -> None:
    """The lease row is taken from a running hub (as a standby would after a partition): at its next renewal the hub
    leaves at once with status 75 (systemd starts it again, as a standby), without its graceful stop."""
    token = tmp_path / "api.token"
    token.write_text("a-long-random-token-0123456789\n", encoding="utf-8")
    port = free_port()
    argv = [sys.executable, "-m", "hub", "serve", "--config", str(demo_deployment), "--data-dir", str(tmp_path / "d"),
            "--mqtt-port", str(mosquitto), "--http-port", str(port), "--api-token-file", str(token),
            "--alerts-database-file", str(database), "--lease-term", "3", "--lease-holder", "victim"]  # fmt: skip
    log = (tmp_path / "hub.log").open("w+", encoding="utf-8")
    hub = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_port(port, timeout_s=60), "the hub did not start"
        url = database.read_text(encoding="utf-8").strip()
        with psycopg.connect(url, autocommit=True) as db:
            taken = db.execute(
                "UPDATE anju.leases SET holder = 'thief', epoch = epoch + 1, expires_at = now() + interval '1 minute' "
                "WHERE community = 'hongxing' AND holder = 'victim'"
            ).rowcount
        assert taken == 1
        stolen = time.monotonic()
        assert hub.wait(timeout=10) == 75
        assert time.monotonic() - stolen <= 1 + 1.5, "within one renewal interval (term / 3) and its answer"
    finally:
        if hub.poll() is None:
            hub.kill()
            hub.wait(timeout=10)
        log.seek(0)
        output = log.read()
        log.close()
    assert "lease on community hongxing was taken over (epoch 1 is no longer ours); stopping" in output, output
    assert "hub stopped" not in output, "no graceful stop after the lease is lost"
