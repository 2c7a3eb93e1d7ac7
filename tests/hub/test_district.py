"""The district node (hub/district/): one read-only API over every community's alert state in PostgreSQL, for the
district emergency office and the sub-districts (issue 7's scopes across communities, issue 8's "any API node sees
all of it").

The communities' schemas are written the way their hubs write them (``AlertStore`` on ``anju_{community}``); the
node runs as the real ``anju-hub district serve`` process, its users made with the real ``anju-hub users`` command.
"""

from __future__ import annotations

import queue
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from alerts.incidents import HouseholdStatus, Incident, ResidentReport
from alerts.model import Alert, AlertState, Grade, Transition
from alerts.sqldb import DatabaseError
from alerts.store import AlertStore
from hub.demo.processes import Child, Line, free_port, wait_port
from hub.registry_mirror import GatewayRow, RegistryStore, SensorRow
from hub.settings import alerts_schema
from tests.alerts.support import event

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Lantern-harbour-7-quiet"
T0 = 1_790_000_000_000
"""A fixed opening time (ms), so that alerts of several communities tie and the order's tie-break is exercised."""

SHARD_MAP = """\
version: 1
communities:
  hongxing: {deployment: hongxing.yaml, data_dir: d/hongxing, http_port: 18101, workers: [hub-1, hub-2]}
  jinjiang: {deployment: jinjiang.yaml, data_dir: d/jinjiang, http_port: 18102, workers: [hub-2, hub-1]}
  qingyang: {deployment: qingyang.yaml, data_dir: d/qingyang, http_port: 18103, workers: [hub-1]}
  dongfeng: {deployment: dongfeng.yaml, data_dir: d/dongfeng, http_port: 18104, workers: [hub-2]}
sub_districts:
  chunxi: {name: 春熙路街道, communities: [hongxing, jinjiang]}
  caotang: {name: 草堂街道, communities: [qingyang, dongfeng]}
"""


def _alert(community: str, alert_id: str, grade: Grade, state: AlertState, opened_ms: int, **more: Any) -> Alert:
    first = event(community=community, key=f"{community}/{alert_id}", grade=grade, time_ms=opened_ms,
                  grid=f"{community}-01")  # fmt: skip
    return Alert(id=alert_id, key=first.key, community=community, grid=first.grid, grade=grade, state=state,
                 revision=1, first_event=first, last_event=first, opened_at_ms=opened_ms, updated_at_ms=opened_ms,
                 **more)  # fmt: skip


def _write_communities(url: str) -> None:
    """Three communities' alert state as their hubs leave it; dongfeng's hub has never run (no schema)."""
    written = {
        "hongxing": [
            _alert("hongxing", "hx-1", Grade.III, AlertState.OPEN, T0),
            _alert("hongxing", "hx-2", Grade.II, AlertState.ACKNOWLEDGED, T0 - 60_000, level=1),
            _alert("hongxing", "hx-3", Grade.IV, AlertState.RESOLVED, T0 - 120_000),
        ],
        "jinjiang": [
            _alert("jinjiang", "jj-1", Grade.III, AlertState.OPEN, T0),
            _alert("jinjiang", "jj-2", Grade.III, AlertState.EN_ROUTE, T0),
        ],
        "qingyang": [_alert("qingyang", "qy-1", Grade.I, AlertState.ON_SITE, T0 - 30_000)],
    }
    registry = RegistryStore(url, schema=alerts_schema("hongxing"))  # jinjiang's hub is of an earlier release
    try:
        registry.replace(
            [GatewayRow("gw-b1", "1栋弱电间", 2, True, 3, T0 - 3_600_000, T0 - 5_000),
             GatewayRow("gw-b2", "2栋地下车库", 1, False, 2, T0 - 600_000, T0 - 600_000)],
            [SensorRow("gw-b1", "gas-b1-301", "gas", "%LEL", "1栋301室厨房", "grid-1"),
             SensorRow("gw-b1", "smoke-b1-f1", "smoke", "dB/m", "1栋1层", "grid-1"),
             SensorRow("gw-b2", "water-b2-p1", "water", "cm", "2栋地下车库", "grid-2")],
        )  # fmt: skip
    finally:
        registry.close()
    for community, alerts in written.items():
        with AlertStore(url, schema=alerts_schema(community)) as store:
            for alert in alerts:
                steps = [Transition(alert_id=alert.id, from_state=None, to_state=AlertState.OPEN, by="anju",
                                    channel="sensor", time_ms=alert.opened_at_ms, note="opened")]  # fmt: skip
                if alert.state is not AlertState.OPEN:
                    taken = alert.opened_at_ms + 1000
                    steps.append(Transition(alert_id=alert.id, from_state=AlertState.OPEN, to_state=alert.state,
                                            by="zhang-wei", channel="app", time_ms=taken))  # fmt: skip
                store.commit(alert, transitions=steps)
            if community == "jinjiang":
                incident = Incident(id="inc-flood", community=community, kind="flood", title="锦江暴雨内涝",
                                    declared_by="li-na", declared_ms=T0)  # fmt: skip
                store.save_incident(incident)
                for household, status in (("1栋101", HouseholdStatus.SAFE), ("1栋102", HouseholdStatus.NEEDS_HELP),
                                          ("2栋201", HouseholdStatus.SAFE)):  # fmt: skip
                    report = ResidentReport(incident_id=incident.id, household=household, status=status,
                                            reported_by="li-na", reported_ms=T0 + 1)  # fmt: skip
                    store.save_report(report, ("inc-flood", None, "report", "li-na", "app", T0 + 1, household))


def _city_files(directory: Path, database_url: str) -> tuple[Path, Path, Path]:
    """The shard map, the file with the database's URL, and the users' password file, written in ``directory``."""
    files = (directory / "city.yaml", directory / "database.url", directory / "password")
    for path, text in zip(files, (SHARD_MAP, database_url + "\n", PASSWORD + "\n"), strict=True):
        path.write_text(text, encoding="utf-8")
    return files


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hub", *argv], cwd=REPO, capture_output=True, text=True, timeout=60)


class District:
    def __init__(self, base: str, root: Path, token: str) -> None:
        self.base = base
        self.root = root
        self.token = token
        """The node's static admin token (``--api-token-file``)."""

    @contextmanager
    def login(self, name: str) -> Iterator[httpx.Client]:
        """A client logged in as ``name`` with a password (a bearer session)."""
        with httpx.Client(base_url=self.base, timeout=20) as client:
            answer = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert answer.status_code == 200, answer.text
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            yield client


@pytest.fixture
def district(database_url: str, tmp_path: Path) -> Iterator[District]:
    _write_communities(database_url)
    shard_map, url_file, password = _city_files(tmp_path, database_url)
    users = ["users", "--shard-map", str(shard_map), "--database-file", str(url_file)]
    for name, role, person in (("wang", "emergency_office", None), ("chen", "sub_district", "chunxi")):
        linked = ["--person", person] if person else []
        made = _cli(*users, "add", name, "--role", role, *linked, "--password-file", str(password))
        assert made.returncode == 0, made.stderr
    token = secrets.token_hex(24)
    (tmp_path / "api.token").write_text(token + "\n", encoding="utf-8")
    # The hubs' token, for declarations; their address is a closed port, so a declaration stays pending here.
    (tmp_path / "hub.token").write_text(secrets.token_hex(24) + "\n", encoding="utf-8")
    nowhere = f"http://127.0.0.1:{free_port()}/{{community}}"
    port = free_port()
    lines = queue.Queue[Line]()
    argv = [sys.executable, "-m", "hub", "--log-level", "warning", "district", "serve", "--shard-map", str(shard_map)]
    argv += ["--alerts-database-file", str(url_file), "--data-dir", str(tmp_path / "data"), "--http-port", str(port)]
    argv += ["--api-token-file", str(tmp_path / "api.token"), "--hub-token-file", str(tmp_path / "hub.token")]
    argv += ["--hub-url-template", nowhere]
    node = Child("district", argv, lines, cwd=REPO).start()
    try:
        if not wait_port(port, timeout_s=30):
            said = "\n".join(str(line) for line in list(lines.queue)[-30:])
            raise AssertionError(f"the district node did not start:\n{said}")
        yield District(f"http://127.0.0.1:{port}", tmp_path, token)
    finally:
        # uvicorn stops gracefully on SIGTERM, then re-raises it so that the exit says which signal ended it.
        assert node.stop(grace_s=10) == -signal.SIGTERM


def test_the_emergency_office_sees_every_community_and_which_one_cannot_be_read(district: District) -> None:
    with district.login("wang") as office:
        me = office.get("/api/v1/auth/me").json()
        assert me["role"] == "emergency_office"
        assert me["communities"] == ["dongfeng", "hongxing", "jinjiang", "qingyang"]
        answer = office.get("/api/v1/communities")
        assert answer.status_code == 200
        assert answer.headers["Anju-Unavailable"] == "dongfeng"
        by_id = {c["id"]: c for c in answer.json()}
        assert list(by_id) == ["dongfeng", "hongxing", "jinjiang", "qingyang"]
        assert "does not exist" in by_id["dongfeng"]["unavailable"], by_id["dongfeng"]
        hongxing = by_id["hongxing"]
        assert hongxing["open_by_grade"] == {"I": 0, "II": 1, "III": 1, "IV": 0}, "the resolved IV is not open"
        assert (hongxing["escalated"], hongxing["unacknowledged"], hongxing["unavailable"]) == (1, 1, None)
        assert (hongxing["sub_district"], hongxing["sub_district_name"]) == ("chunxi", "春熙路街道")
        jinjiang = by_id["jinjiang"]
        assert jinjiang["active_incidents"] == 1
        assert jinjiang["households"]["safe"] == 2 and jinjiang["households"]["needs-help"] == 1
        assert by_id["qingyang"]["open_by_grade"]["I"] == 1
        assert [hongxing["gateways"], hongxing["gateways_online"], hongxing["sensors"]] == [2, 1, 3]
        assert [jinjiang["gateways"], jinjiang["sensors"]] == [None, None], "not published: unknown, not zero"
        gateways = office.get("/api/v1/communities/hongxing/gateways").json()
        assert [(g["id"], g["online"], g["sensors"]) for g in gateways] == [("gw-b2", False, 1), ("gw-b1", True, 2)]
        assert gateways[0]["location"] == "2栋地下车库" and gateways[0]["last_message_at"].startswith("20")
        unpublished = office.get("/api/v1/communities/jinjiang/gateways")
        assert unpublished.status_code == 503 and "not published" in unpublished.json()["detail"]
        failures = office.get("/metrics").text
        assert "registry" not in failures and 'community="jinjiang"' not in failures, "not published is no failure"

        alerts = office.get("/api/v1/alerts")
        assert alerts.headers["Anju-Unavailable"] == "dongfeng"
        order = [(a["community"], a["id"]) for a in alerts.json()]
        assert order == [("hongxing", "hx-1"), ("jinjiang", "jj-1"), ("jinjiang", "jj-2"), ("qingyang", "qy-1"),
                         ("hongxing", "hx-2"), ("hongxing", "hx-3")], "newest first; a tie by community"  # fmt: skip
        active = office.get("/api/v1/alerts", params={"active": "true", "grade": ["I", "II"]}).json()
        assert [a["id"] for a in active] == ["qy-1", "hx-2"]

        detail = office.get("/api/v1/communities/qingyang/alerts/qy-1").json()
        assert detail["grade"] == "I" and detail["state"] == "on_site"
        assert [(t["from_state"], t["to_state"], t["by"]) for t in detail["transitions"]] == [
            (None, "open", "anju"),
            ("open", "on_site", "zhang-wei"),
        ]
        incidents = office.get("/api/v1/incidents", params={"active_only": "true"}).json()
        assert [(i["community"], i["id"], i["counts"]["safe"]) for i in incidents] == [("jinjiang", "inc-flood", 2)]


def test_a_sub_district_sees_only_its_communities_and_the_others_do_not_exist(district: District) -> None:
    with district.login("chen") as chunxi:
        assert chunxi.get("/api/v1/auth/me").json()["communities"] == ["hongxing", "jinjiang"]
        communities = chunxi.get("/api/v1/communities")
        assert [c["id"] for c in communities.json()] == ["hongxing", "jinjiang"]
        assert "Anju-Unavailable" not in communities.headers, "dongfeng is not theirs: nothing is said of it"
        alerts = chunxi.get("/api/v1/alerts").json()
        assert {a["community"] for a in alerts} == {"hongxing", "jinjiang"} and len(alerts) == 5
        assert [i["id"] for i in chunxi.get("/api/v1/incidents").json()] == ["inc-flood"]

        assert chunxi.get("/api/v1/communities/hongxing/gateways").status_code == 200
        assert chunxi.get("/api/v1/communities/qingyang/gateways").status_code == 404, "not theirs: as if absent"
        other = chunxi.get("/api/v1/communities/qingyang/alerts/qy-1")
        nowhere = chunxi.get("/api/v1/communities/nowhere/alerts/qy-1")
        assert other.status_code == nowhere.status_code == 404
        assert other.headers["content-type"] == "application/problem+json"
        mine_but_missing = chunxi.get("/api/v1/communities/hongxing/alerts/qy-1")
        assert mine_but_missing.status_code == 404
        filtered_other = chunxi.get("/api/v1/alerts", params={"community": "qingyang"})
        filtered_nowhere = chunxi.get("/api/v1/alerts", params={"community": "nowhere"})
        assert filtered_other.status_code == filtered_nowhere.status_code == 404
        assert filtered_other.json()["errors"][0]["loc"] == ["query", "community"]
        only = chunxi.get("/api/v1/alerts", params={"community": "jinjiang"}).json()
        assert [a["id"] for a in only] == ["jj-1", "jj-2"]
        flood = {"kind": "flood", "title": "内涝", "communities": ["jinjiang"]}
        as_other = chunxi.post("/api/v1/declarations", json={**flood, "by": "wang"})
        assert as_other.status_code == 403, "a user declares as themself"
        not_theirs = chunxi.post("/api/v1/declarations", json={**flood, "by": "chen", "communities": ["qingyang"]})
        assert not_theirs.status_code == 404
        twice = chunxi.post("/api/v1/declarations", json={**flood, "by": "chen", "communities": ["jinjiang"] * 2})
        assert twice.status_code == 422 and "twice" in twice.json()["detail"]
        assert chunxi.get("/api/v1/declarations").json() == [], "nothing was recorded by the refused ones"
    anonymous = httpx.get(f"{district.base}/api/v1/alerts")
    assert anonymous.status_code == 401


def test_pages_of_the_district_list_walk_every_alert_once_across_communities(district: District) -> None:
    with district.login("wang") as office:
        whole = [(a["community"], a["id"]) for a in office.get("/api/v1/alerts").json()]
        walked: list[tuple[str, str]] = []
        url: str | None = "/api/v1/alerts?limit=2"
        for _ in range(10):
            if url is None:
                break
            answer = office.get(url)
            assert answer.status_code == 200, answer.text
            walked += [(a["community"], a["id"]) for a in answer.json()]
            url = answer.links.get("next", {}).get("url")
        assert walked == whole and len(whole) == 6

        forged = office.get("/api/v1/alerts", params={"cursor": "abc.def"})
        assert forged.status_code == 400 and forged.json()["errors"][0]["loc"] == ["query", "cursor"]
        bad_grade = office.get("/api/v1/alerts", params={"grade": "V"})
        assert bad_grade.status_code == 422 and "grade" in bad_grade.json()["detail"]
        too_many = office.get("/api/v1/alerts", params={"limit": "100000"})
        assert too_many.status_code == 422


def test_the_district_node_writes_nothing_to_a_community(database_url: str) -> None:
    _write_communities(database_url)
    with AlertStore(database_url, schema=alerts_schema("hongxing"), read_only=True) as view:
        assert view.get("hx-1") is not None
        with pytest.raises(DatabaseError, match="read-only"):
            view.commit(_alert("hongxing", "hx-9", Grade.IV, AlertState.OPEN, T0))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            view._query("DELETE FROM alerts")  # the server refuses it too, on the node's own connection
    with AlertStore(database_url, schema=alerts_schema("hongxing")) as store:
        assert store.get("hx-9") is None and len(store.list_alerts(limit=-1)) == 3
    with pytest.raises(DatabaseError, match="PostgreSQL schema"):
        AlertStore(Path("alerts.sqlite3"), read_only=True)
    with psycopg.connect(database_url) as db:
        (schemas,) = db.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'anju_dongfeng'"
        ).fetchone() or (None,)
    assert schemas == 0, "reading a community no hub has run creates nothing"


def test_district_users_and_settings_are_refused_by_name(database_url: str, tmp_path: Path) -> None:
    shard_map, url_file, password = _city_files(tmp_path, database_url)
    users = ["users", "--shard-map", str(shard_map), "--database-file", str(url_file)]
    add = [*users, "add", "zhou", "--password-file", str(password)]
    refused = {
        "grid_manager": (["--role", "grid_manager", "--person", "chunxi"], "works in one community"),
        "unknown sub-district": (["--role", "sub_district", "--person", "nowhere"], "caotang, chunxi"),
        "no sub-district": (["--role", "sub_district"], "must be linked to a sub-district"),
        "office with a person": (["--role", "emergency_office", "--person", "chunxi"], "link no person"),
    }
    for case, (flags, said) in refused.items():
        answer = _cli(*add, *flags)
        assert answer.returncode == 2 and said in answer.stderr, (case, answer.stderr)
    no_database = _cli("users", "--shard-map", str(shard_map), "add", "zhou", "--role", "admin",
                       "--password-file", str(password))  # fmt: skip
    assert no_database.returncode == 2 and "--database-file" in no_database.stderr
    neither = _cli("users", "list")
    assert neither.returncode == 2 and "--config" in neither.stderr and "--shard-map" in neither.stderr

    started = time.monotonic()
    serve = _cli("district", "serve", "--shard-map", str(shard_map), "--http-port", str(free_port()))
    assert serve.returncode == 2 and "alerts_database" in serve.stderr, serve.stderr
    bad_map = tmp_path / "bad.yaml"
    bad_map.write_text(SHARD_MAP.replace("[qingyang, dongfeng]", "[qingyang, hongxing]"), encoding="utf-8")
    serve = _cli("district", "serve", "--shard-map", str(bad_map), "--alerts-database-file", str(url_file))
    assert serve.returncode == 2 and "already in the sub-district 'chunxi'" in serve.stderr, serve.stderr
    assert time.monotonic() - started < 60


def test_no_district_operation_answers_a_server_error_or_breaks_its_schema(district: District) -> None:
    """Schemathesis over the node's published OpenAPI schema, as on a hub (tests/hub/test_api_fuzz.py): no 5xx, and
    every documented answer in its documented shape."""
    from tests.hub.test_api_fuzz import fuzz_schema

    operations, failures = fuzz_schema(district.base, district.token)
    assert operations >= 11, "the schema lists the node's routes"
    assert not failures, "\n\n".join(failures)
    with district.login("wang") as office:
        declared = office.post("/api/v1/declarations", json={"by": "wang", "kind": "fire", "title": "演练",
                                                             "communities": ["hongxing"]})  # fmt: skip
        assert declared.status_code == 201, declared.text
        (part,) = declared.json()["parts"]
        assert part["state"] == "pending" and "ConnectError" in part["error"], "its hub is nowhere: tried again later"


@pytest.mark.anyio
async def test_a_node_without_the_hubs_token_only_reads(database_url: str, tmp_path: Path) -> None:
    """Declaring needs the hubs' token (``hub_token_file``): without it the node answers 503 saying so, and records
    nothing."""
    from hub.district.app import create_district_app
    from hub.district.settings import DistrictSettings

    shard_map = tmp_path / "city.yaml"
    shard_map.write_text(SHARD_MAP, encoding="utf-8")
    token = secrets.token_hex(24)
    settings = DistrictSettings(shard_map=shard_map, alerts_database=database_url, data_dir=tmp_path / "data",
                                api_token=token)  # fmt: skip
    app = create_district_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                     headers={"Authorization": f"Bearer {token}"}) as client:  # fmt: skip
            answer = await client.post("/api/v1/declarations", json={"by": "ops", "kind": "fire", "title": "演练",
                                                                     "communities": ["hongxing"]})  # fmt: skip
            assert answer.status_code == 503 and "hub_token_file" in answer.json()["detail"]
            assert (await client.get("/api/v1/declarations")).json() == []
            page = await client.get("/app/")
            assert page.status_code == 200 and "district.js" in page.text
            assert "script-src 'self'" in page.headers["content-security-policy"]


def test_text_postgresql_cannot_store_is_a_422_naming_it_not_a_server_error(district: District) -> None:
    """PostgreSQL refuses a NUL character in text (SQLite takes it): a login or a lookup carrying one is the caller's
    bad input, answered 422 (found by the fuzz above, on the district's PostgreSQL identity store)."""
    with httpx.Client(base_url=district.base, timeout=20) as client:
        answer = client.post("/api/v1/auth/login", json={"username": "wa\u0000ng", "password": PASSWORD})
        assert answer.status_code == 422 and "NUL" in answer.json()["detail"], answer.text
        fine = client.post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD})
        assert fine.status_code == 200
        bearer = {"Authorization": f"Bearer {fine.json()['access_token']}"}
        lookup = client.get("/api/v1/communities/hongxing/alerts/hx%001", headers=bearer)
        assert lookup.status_code == 422, lookup.text
        huge = client.post("/api/v1/declarations", content=b"x" * (2 << 20), headers=bearer)
        assert huge.status_code == 413
        client.get("/api/v1/communities", headers=bearer)  # dongfeng cannot be read: counted
        metrics = client.get("/metrics").text
    assert 'anju_district_api_refused_total{reason="body_too_large"} 1' in metrics, metrics
    assert 'anju_district_read_failures_total{community="dongfeng"}' in metrics, metrics
    assert "anju_district_handover_attempts_total 0" in metrics, "no declaration yet"
