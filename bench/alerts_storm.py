"""An alert storm (issue 6): 10,000 risk events in one minute from one building on fire → pages per person.

The building (5栋) has 400 detectors (smoke and heat grade III, CO pre-warnings grade IV) that start alarming floor
by floor over the minute, repeat their events and flap (one event in ten is "cleared"), and ten corroborated-fire
events (grade II, one per floor). Thirty seconds in, a gas leak starts in another building (2栋, grade II): its
page must not wait for the storm. Both systems get the same event stream and deliver to a webhook receiver:

- Anju: ``AlertService.submit`` for every event, notifications grouped by ``alerts.grouping`` with its defaults
  (per building and grade; first page at once, then one page per 20 s for I–II, 60 s for III, 300 s for IV;
  every alert change is a notification, persisted, and reaches the person inside a page — a digest when several).
- Prometheus Alertmanager 0.25 with matching grouping: ``group_by: [building, severity]``, ``group_wait: 0s``, the
  same group intervals per severity, ``send_resolved: true`` (a cleared event is an alert with ``endsAt`` now).

Time runs ``SPEED`` times faster than the wall clock for both (Anju reads a virtual clock; Alertmanager's intervals
are divided by ``SPEED``), so the minute of storm and the five minutes of windows after it take ~36 s each.
Answer deadlines are set to an hour for the run so that pages are the storm's, not escalations.

Reported per system: pages to the person (max over people for Anju), alerts covered by those pages against
alerts raised (none lost), and how long the other building's gas leak took to reach the person (wall-clock ms
from its event; for Alertmanager from the POST that carried it). ``python -m bench alerts_storm`` runs it (~2 min).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import random
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from alerts import AlertService, AlertStore, Directory, Grade, Grid, Person, RiskEvent, WebhookReceiver, WebhookTarget
from alerts.escalation import EscalationPolicy
from alerts.grouping import GroupingPolicy
from bench.alerts_latency import find_alertmanager, start_alertmanager
from hub.demo.processes import free_port

__all__ = ["main", "report", "run"]

EVENTS = 10_000
STORM_S = 60.0
SPEED = 10.0
AFTER_S = 330.0
"""Virtual seconds to keep running after the storm: the longest group interval (IV, 300 s) and a margin."""
GAS_AT_S = 30.0
SECRET = "bench-storm-secret-0123456789"
PEOPLE = (("zhang-wei", "张伟（网格员）"), ("li-desk", "物业值班室"))
FLOORS = 10


@dataclass(frozen=True, slots=True)
class Storm:
    """The event stream: (virtual seconds after the start, event) in order."""

    events: list[tuple[float, RiskEvent]]
    gas_key: str


def storm(start_ms: int, seed: int = 7) -> Storm:
    """10,000 events of a building on fire plus one gas leak elsewhere, deterministic for ``seed``."""
    rng = random.Random(seed)
    detectors = [("smoke", Grade.III, "alarm") for _ in range(250)]
    detectors += [("heat", Grade.III, "static alarm") for _ in range(100)]
    detectors += [("co", Grade.IV, "pre-warning") for _ in range(50)]
    rng.shuffle(detectors)
    events: list[tuple[float, RiskEvent]] = []
    fire_count = EVENTS - FLOORS - 1
    for i in range(fire_count):
        t = i * STORM_S / fire_count
        active = max(8, round(len(detectors) * (t + 1) / STORM_S))  # the fire spreads over the minute
        n = rng.randrange(min(active, len(detectors)))
        kind, grade, rule = detectors[n]
        floor = 1 + n * FLOORS // len(detectors)
        status = "cleared" if rng.random() < 0.1 else "firing"
        events.append((t, _event(f"{kind}-{n}", kind, grade, rule, f"5栋{floor}层", "5栋", start_ms, t, status)))
    for floor in range(1, FLOORS + 1):
        t = (floor - 0.5) * STORM_S / FLOORS
        events.append((t, _event(f"fire-{floor}", "corroboration", Grade.II, "fire", f"5栋{floor}层", "5栋",
                                 start_ms, t, "firing")))  # fmt: skip
    gas = _event("gas-2-301", "gas", Grade.II, "level-2 alarm", "2栋301厨房", "2栋", start_ms, GAS_AT_S, "firing")
    events.append((GAS_AT_S, gas))
    events.sort(key=lambda pair: pair[0])
    return Storm(events=events, gas_key=gas.key)


def _event(
    sensor: str, kind: str, grade: Grade, rule: str, where: str, place: str, start_ms: int, t: float, status: str
) -> RiskEvent:
    return RiskEvent(
        key=f"bench/{sensor}/{kind}/{rule}",
        community="bench",
        grid="grid-1",
        sensor=sensor,
        kind=kind,
        location_zh=f"基准社区 {where}",
        rule=rule,
        grade=grade,
        value=1.0,
        unit="",
        time_ms=start_ms + round(t * 1000),
        status="cleared" if status == "cleared" else "firing",
        source="bench storm",
        place=place,
    )


# -- the receiver ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Page:
    arrived_s: float
    """Wall-clock arrival (Unix s)."""
    recipient: str
    alerts: frozenset[str]
    """Alert keys the page names (Anju: its members' alerts; Alertmanager: the alerts of the group)."""
    notifications: int
    """Anju: notifications the page carried (a digest's count); Alertmanager: alerts in the group."""


class _Handler(http.server.BaseHTTPRequestHandler):
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    pages: list[Page]
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        now = time.time()
        if "alerts" in body:  # Alertmanager
            keys = frozenset(a["labels"]["id"] for a in body["alerts"])
            page = Page(now, "webhook", keys, len(body["alerts"]))
        else:
            count = body["digest"]["count"] if "digest" in body else 1
            keys = frozenset(i["alert_id"] for i in body["digest"]["items"]) if "digest" in body else frozenset()
            page = Page(now, body["recipient"]["id"], keys | {body["alert_key"]}, count)
        with self.lock:
            self.pages.append(page)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextlib.contextmanager
def _receiver() -> Any:
    _Handler.pages = []
    http.server.ThreadingHTTPServer.request_queue_size = 256
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(timeout=10)


class VirtualClock:
    """Unix ms running ``SPEED`` times faster than the wall clock from ``start_ms``."""

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self.wall_start = time.time()

    def __call__(self) -> int:
        return self.start_ms + round((time.time() - self.wall_start) * SPEED * 1000)

    def wall_at(self, virtual_s: float) -> float:
        return self.wall_start + virtual_s / SPEED


async def _until(wall_s: float) -> None:
    delay = wall_s - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


# -- Anju -----------------------------------------------------------------------------------------------------


async def _anju(workdir: Path) -> dict[str, Any]:
    with _receiver() as port:
        url = f"http://127.0.0.1:{port}/hook"
        directory = Directory(
            grids=[Grid(id="grid-1", name="网格", managers=tuple(p for p, _ in PEOPLE))],
            people=[Person(id=p, name=n, targets=(WebhookTarget(url=url, secret=SECRET),)) for p, n in PEOPLE],
        )
        hour = {g: 3_600_000 for g in Grade}
        clock = VirtualClock(round(time.time() * 1000))
        stream = storm(clock.start_ms)
        with AlertStore(workdir / "alerts.sqlite3") as store:
            async with (
                WebhookReceiver() as webhook,
                AlertService(
                    store=store,
                    directory=directory,
                    receiver=webhook,
                    clock=clock,
                    grouping=GroupingPolicy(),
                    escalation=EscalationPolicy([], hour, on_site_within_ms=hour),
                ) as service,
            ):
                tasks = []
                for t, event in stream.events:
                    await _until(clock.wall_at(t))
                    tasks.append(asyncio.create_task(service.submit(event)))
                await asyncio.gather(*tasks)
                await _until(clock.wall_at(STORM_S + AFTER_S))
                notifications = store.notifications()
                for _ in range(200):  # bounded: the last digests leave as their windows end
                    if all(n.status != "pending" for n in notifications):
                        break
                    await asyncio.sleep(0.1)
                    notifications = store.notifications()
                alerts = {n.alert_id for n in notifications}
        pages = list(_Handler.pages)
    gas_wall = clock.wall_at(GAS_AT_S)
    gas_pages = [p for p in pages if stream.gas_key in p.alerts]
    per_person = {person: sum(1 for p in pages if p.recipient == person) for person, _ in PEOPLE}
    carried = sum(p.notifications for p in pages)
    return {
        "events": len(stream.events),
        "alerts": len(alerts),
        "notifications": len(notifications),
        "carried": carried,
        "sent": sum(1 for n in notifications if n.status == "sent"),
        "pages_per_person": max(per_person.values()),
        "gas_ms": (min(p.arrived_s for p in gas_pages) - gas_wall) * 1000 if gas_pages else float("nan"),
    }


# -- Alertmanager ---------------------------------------------------------------------------------------------


def _alertmanager_config(hook_port: int) -> str:
    def interval(grade: Grade) -> str:
        return f"{GroupingPolicy().interval_ms(grade) / SPEED:g}ms"

    routes = "".join(
        f"    - matchers: ['severity=\"{g.name}\"']\n      group_interval: {interval(g)}\n"
        for g in (Grade.I, Grade.II, Grade.III, Grade.IV)
    )
    return (
        "route:\n"
        "  receiver: bench\n"
        "  group_by: ['building', 'severity']\n"
        "  group_wait: 0s\n"
        "  group_interval: 30s\n"
        "  repeat_interval: 4h\n"
        "  routes:\n" + routes + "receivers:\n"
        "  - name: bench\n"
        "    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{hook_port}/hook\n"
        "        send_resolved: true\n"
        "        max_alerts: 0\n"
    )


def _am_alert(event: RiskEvent, now: float) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(now, tz=UTC).isoformat()
    alert: dict[str, Any] = {
        "labels": {
            "alertname": f"{event.kind}-{event.rule}",
            "id": event.key,
            "building": event.place,
            "severity": event.grade.name,
        },
        "startsAt": stamp,
    }
    if event.status == "cleared":
        alert["endsAt"] = stamp
    return alert


async def _alertmanager_run(workdir: Path, binary: str) -> dict[str, Any]:
    with _receiver() as hook_port:
        process, port = await asyncio.to_thread(start_alertmanager, binary, workdir, _alertmanager_config(hook_port))
        try:
            clock = VirtualClock(round(time.time() * 1000))
            stream = storm(clock.start_ms)
            accepted = 0
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                tick = 0.2  # virtual seconds per POST: one array of the events in it
                index = 0
                second = 0.0
                gas_wall = clock.wall_at(GAS_AT_S)
                while index < len(stream.events):
                    second += tick
                    await _until(clock.wall_at(second))
                    batch = []
                    while index < len(stream.events) and stream.events[index][0] < second:
                        batch.append(_am_alert(stream.events[index][1], time.time()))
                        if stream.events[index][1].key == stream.gas_key:
                            gas_wall = time.time()  # measured from its POST, not from its instant in the stream
                        index += 1
                    if batch:
                        response = await client.post("/api/v2/alerts", json=batch)
                        accepted += len(batch) if response.status_code == 200 else 0
                await _until(clock.wall_at(STORM_S + AFTER_S))
        finally:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
        pages = list(_Handler.pages)
    raised = {event.key for _, event in stream.events}
    covered = set().union(*(p.alerts for p in pages)) if pages else set()
    gas_pages = [p for p in pages if stream.gas_key in p.alerts]
    return {
        "events": len(stream.events),
        "accepted": accepted,
        "alerts": len(raised),
        "covered": len(covered & raised),
        "pages_per_person": len(pages),
        "gas_ms": (min(p.arrived_s for p in gas_pages) - gas_wall) * 1000 if gas_pages else float("nan"),
    }


def run() -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="anju-bench-storm-") as tmp:
        workdir = Path(tmp)
        results["anju"] = asyncio.run(_anju(workdir))
        binary = find_alertmanager()
        if binary is not None:
            results["alertmanager"] = asyncio.run(_alertmanager_run(workdir, binary))
    return results


def report(results: dict[str, dict[str, Any]], say: Callable[[str], None] = print) -> None:
    anju = results["anju"]
    line = (
        f"alerts storm ({anju['events']:,} events in {STORM_S:g} s from one building, time x{SPEED:g}): Anju "
        f"{anju['pages_per_person']} pages per person carrying {anju['carried']:,} of {anju['notifications']:,} "
        f"notifications ({anju['sent']:,} sent, {anju['alerts']} alerts), other building's gas leak paged "
        f"{anju['gas_ms']:.0f} ms after its event"
    )
    am = results.get("alertmanager")
    if am is None:
        say(line + "; reference Alertmanager not installed (apt-get install prometheus-alertmanager)")
        return
    say(
        line + f"; reference Alertmanager (group_by building+severity, same intervals) {am['pages_per_person']} "
        f"pages, {am['covered']} of {am['alerts']} alerts covered, {am['accepted']:,} of {am['events']:,} "
        f"events accepted, gas leak paged {am['gas_ms']:.0f} ms after its POST"
    )


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
