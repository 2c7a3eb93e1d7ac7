"""deploy/grafana (issue 7): the provisioning files agree with each other, and every query of the dashboard, with
Grafana's macros filled in as Grafana would, runs against a real InfluxDB holding what the hub writes and finds it."""

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml

from hub.store.base import ReadingColumns, ReadingFlag, StoredReading
from hub.store.influx import InfluxStore
from hub.store.influx_http import InfluxHttp, InfluxTarget

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "anju-community.json"
MINUTE_MS = 60_000


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def test_the_provisioning_files_point_at_each_other() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning/datasources/anju-influxdb.yaml").read_text())["datasources"]
    assert (source["uid"], source["type"], source["access"]) == ("anju-influxdb", "influxdb", "proxy")
    assert source["url"] == "${ANJU_INFLUXDB_URL}" and source["jsonData"]["dbName"] == "${ANJU_INFLUXDB_DATABASE}"
    [provider] = yaml.safe_load((GRAFANA / "provisioning/dashboards/anju.yaml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].endswith("/dashboards/anju")
    board = dashboard()
    assert board["uid"] == "anju-community" and board["title"].startswith("安居")
    uids = {p["datasource"]["uid"] for p in board["panels"]} | {
        t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]
    }
    uids |= {v["datasource"]["uid"] for v in board["templating"]["list"] if "datasource" in v}
    assert uids == {source["uid"]}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in board["panels"]:
        assert re.search(r"[\u4e00-\u9fff]", panel["title"]) and " / " in panel["title"], (
            "Chinese first, English second"
        )


def _fill(query: str, constants: dict[str, str]) -> str:
    """What Grafana sends: a 3-hour range, 1-minute buckets, community ``hongxing``, every gateway and sensor."""
    text = query.replace("$timeFilter", "time > now() - 3h").replace("$__interval", "1m")
    text = text.replace("$community", "hongxing").replace("$gateway", ".*").replace("$sensor", ".*")
    for name, value in constants.items():
        text = text.replace(f"${name}", value)
    left = re.findall(r"\$[A-Za-z_]\w*", text)
    assert not left, f"variables not filled in: {left} in {query}"
    return text


def test_every_dashboard_query_runs_on_what_the_hub_writes(influxdb: str, tmp_path: Path) -> None:
    target = InfluxTarget.v1(url=influxdb, database="anju")
    store = InfluxStore(target=target, community="hongxing", meta_path=tmp_path / "meta.sqlite3")
    now = time.time_ns() // 1_000_000
    rows = [
        StoredReading(sensor, now - k * 10_000, 1.0 + k % 7, gateway)
        for gateway, sensors in (("gw-b1", ("gas-b1-101", "temp-b1-101")), ("gw-b2", ("gas-b2-101",)))
        for sensor in sensors
        for k in range(60)
    ]
    rows.append(StoredReading("gas-b1-101", now + 3_600_000, 9.0, "gw-b1", int(ReadingFlag.CLOCK_SKEW)))
    try:
        assert store.commit(ReadingColumns.of(rows), [], []) == len(rows)
        store.rebuild_rollups(now - 20 * MINUTE_MS, now + MINUTE_MS)  # as the continuous query does each minute
    finally:
        store.close()
    board = dashboard()
    constants = {v["name"]: v["query"] for v in board["templating"]["list"] if v["type"] == "constant"}
    assert constants == {"raw_rp": target.retention_policy, "rollup_rp": target.rollup_retention_policy}
    queries = [(v["name"], v["query"]) for v in board["templating"]["list"] if v["type"] == "query"]
    queries += [(p["title"], t["query"]) for p in board["panels"] for t in p["targets"]]
    http = InfluxHttp(target=target)
    try:
        answers = {title: http.query([_fill(query, constants)])[0] for title, query in queries}
    finally:
        http.close()
    empty = [title for title, series in answers.items() if not any(s.values for s in series)]
    assert not empty, f"queries that found nothing: {empty}"
    values = {str(row[1]) for s in answers["sensor"] for row in s.values}
    assert values == {"gas-b1-101", "temp-b1-101", "gas-b2-101"}
    [skewed] = answers["时钟偏差读数 / Clock-skewed readings"]
    assert skewed.values[0][1] == 1
    [reporting] = answers["在报传感器 / Sensors reporting"]
    assert reporting.values[0][1] == 3
