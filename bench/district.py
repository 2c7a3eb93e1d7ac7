"""The district node's answers across communities (issue 7's API figures, for the district view of issue 8).

Real processes on loopback: PostgreSQL (Debian's package, fsync on) holding ``COMMUNITIES`` communities' alert state
as their hubs write it — ``ALERTS_EACH`` alerts each (10,000 in all, a third of them still open, grades I–IV) and an
incident with ``HOUSEHOLDS`` household reports in every fifth community, and a registry of ``GATEWAYS_EACH`` gateways
(every seventh offline) and ``SENSORS_EACH`` detectors as the community's hub publishes it — and ``anju-hub district
serve`` reading it over read-only connections. Each route is asked ``REQUESTS`` times in turn by one client (after a
warm-up), as an admin (every community in view):

* ``/alerts`` of every community, one page of 100, newest first — the district inbox;
* ``/alerts?active=true&grade=I&grade=II`` — what still needs a person, grades I–II;
* ``/communities`` — every community at a glance (counts by grade, incidents, households, gateways online);

References, same run and same server: ``/alerts`` of **one** community (the cost of merging the others is the
difference), and ``/health`` (the HTTP floor). Figures are medians and p95 in milliseconds.

``python -m bench district`` runs it (about a minute); logs go to run/bench/district-TIMESTAMP.
"""

import queue
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg

from alerts.incidents import HouseholdStatus, Incident, ResidentReport
from alerts.model import Alert, AlertState, Grade, RiskEvent
from alerts.store import AlertStore
from bench.common import loadavg, run_dir, save_lines
from hub.demo.postgres import find_postgres, running_postgres
from hub.demo.processes import Child, Line, free_port, wait_port
from hub.registry_mirror import GatewayRow, RegistryStore, SensorRow
from hub.settings import alerts_schema

__all__ = ["report", "run"]

COMMUNITIES = 20
ALERTS_EACH = 500
HOUSEHOLDS = 200
GATEWAYS_EACH = 20
SENSORS_EACH = 2_000
REQUESTS = 200
WARM_UP = 20
_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED, AlertState.RESOLVED)
_GRADES = (Grade.IV, Grade.III, Grade.III, Grade.II, Grade.IV, Grade.I)


def _alert(community: str, n: int, now_ms: int) -> Alert:
    opened = now_ms - n * 37_000
    grade = _GRADES[n % len(_GRADES)]
    event = RiskEvent(key=f"{community}/s{n}/gas/level", community=community, grid=f"{community}-{n % 4}",
                      sensor=f"gas-{n % 200}", kind="gas", location_zh=f"{n % 20}栋{n % 6 + 1}01厨房",
                      rule="level-1 alarm", grade=grade, value=27.0, unit="%LEL", time_ms=opened, status="firing",
                      source="GB/T 50493-2019 §5.5.2", threshold=25.0)  # fmt: skip
    return Alert(id=f"{community}-a{n:05d}", key=event.key, community=community, grid=event.grid, grade=grade,
                 state=_STATES[n % len(_STATES)], revision=1, first_event=event, last_event=event,
                 opened_at_ms=opened, updated_at_ms=opened, level=n % 3)  # fmt: skip


def _fill(url: str, communities: list[str]) -> None:
    now_ms = time.time_ns() // 1_000_000
    for index, community in enumerate(communities):
        registry = RegistryStore(url, schema=alerts_schema(community))  # as the community's hub publishes it
        try:
            wired = SENSORS_EACH // GATEWAYS_EACH
            gateways = [GatewayRow(f"gw-{g}", f"{g}栋弱电间", wired, g % 7 != 0, 1, now_ms, now_ms)
                        for g in range(GATEWAYS_EACH)]  # fmt: skip
            sensors = [SensorRow(f"gw-{n % GATEWAYS_EACH}", f"gas-{n}", "gas", "%LEL", f"{n % 20}栋厨房", "grid-1")
                       for n in range(SENSORS_EACH)]  # fmt: skip
            registry.replace(gateways, sensors)
        finally:
            registry.close()
        with AlertStore(url, schema=alerts_schema(community)) as store:
            store.commit_many([(_alert(community, n, now_ms), (), ()) for n in range(ALERTS_EACH)])
            if index % 5 == 0:
                incident = Incident(community=community, kind="flood", title="暴雨内涝", declared_by="li-na",
                                    declared_ms=now_ms)  # fmt: skip
                store.save_incident(incident)
                for h in range(HOUSEHOLDS):
                    status = list(HouseholdStatus)[h % 3]
                    report = ResidentReport(incident_id=incident.id, household=f"{h // 10}栋{h % 10}01",
                                            status=status, reported_by="li-na", reported_ms=now_ms)  # fmt: skip
                    store.save_report(report, (incident.id, None, "report", "li-na", "app", now_ms, report.household))


def _timed(client: httpx.Client, path: str) -> list[float]:
    for _ in range(WARM_UP):
        assert client.get(path).status_code == 200
    times = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        answer = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200, answer.text
    return times


def run(directory: Path | None = None) -> dict[str, object]:
    bin_dir = find_postgres()
    if bin_dir is None:
        raise SystemExit("district: PostgreSQL not found (apt install postgresql)")
    out = run_dir("district", directory)
    communities = [f"c{i:02d}" for i in range(COMMUNITIES)]
    results: dict[str, object] = {"loadavg_before": loadavg(), "logs": str(out)}
    with running_postgres(bin_dir, durable=True) as server:
        with psycopg.connect(server.url, autocommit=True) as admin:
            admin.execute('CREATE DATABASE "district"')
        url = server.database_url("district")
        began = time.monotonic()
        _fill(url, communities)
        results["fill_s"] = time.monotonic() - began
        lines = ["version: 1", "communities:"]
        lines += [f"  {c}: {{deployment: {c}.yaml, data_dir: d/{c}, http_port: {18400 + i}, workers: [w1]}}"
                  for i, c in enumerate(communities)]  # fmt: skip
        (out / "shards.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (out / "database.url").write_text(url + "\n", encoding="utf-8")
        token = secrets.token_hex(24)
        (out / "token").write_text(token + "\n", encoding="utf-8")
        port = free_port()
        said = queue.Queue[Line]()
        argv = [sys.executable, "-m", "hub", "--log-level", "warning", "district", "serve", "--shard-map",
                str(out / "shards.yaml"), "--alerts-database-file", str(out / "database.url"), "--api-token-file",
                str(out / "token"), "--data-dir", str(out / "node"), "--http-port", str(port)]  # fmt: skip
        node = Child("district", argv, said, cwd=Path(__file__).resolve().parents[1]).start()
        try:
            if not wait_port(port, timeout_s=60):
                raise SystemExit("district: the node did not start; see the log")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                              timeout=30) as client:  # fmt: skip
                shown = client.get("/api/v1/alerts", params={"limit": 100}).json()
                assert len(shown) == 100 and len({a["community"] for a in shown}) == COMMUNITIES
                results["routes"] = {
                    "health": _timed(client, "/api/v1/health"),
                    "one community": _timed(client, "/api/v1/alerts?limit=100&community=c07"),
                    "all communities": _timed(client, "/api/v1/alerts?limit=100"),
                    "active I-II": _timed(client, "/api/v1/alerts?limit=100&active=true&grade=I&grade=II"),
                    "communities": _timed(client, "/api/v1/communities"),
                }
        finally:
            node.stop(grace_s=10)
            save_lines(said, out / "district.log")
    results["loadavg_after"] = loadavg()
    return results


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    routes = results.get("routes")
    if not isinstance(routes, dict):
        say("district: no result")
        return
    total = COMMUNITIES * ALERTS_EACH
    say(f"district node, {COMMUNITIES} communities × {ALERTS_EACH} alerts ({total:,} in history) in PostgreSQL, "
        f"{REQUESTS} requests per route after {WARM_UP} warm-up, one client")  # fmt: skip
    for name, times in routes.items():
        say(f"  {name:16} median {statistics.median(times):6.2f} ms, p95 {_p95(times):6.2f} ms")
    one, every = routes["one community"], routes["all communities"]
    say(f"reference: the same page of one community's alerts through the same node, median "
        f"{statistics.median(one):.2f} ms; all {COMMUNITIES} communities / one: median ratio "
        f"{statistics.median(every) / statistics.median(one):.2f}, p95 ratio {_p95(every) / _p95(one):.2f}; "
        f"/health (HTTP floor) median {statistics.median(routes['health']):.2f} ms")  # fmt: skip
    say(f"load average before {results.get('loadavg_before')}, after {results.get('loadavg_after')}")
    say(f"logs in {results.get('logs')}")


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
