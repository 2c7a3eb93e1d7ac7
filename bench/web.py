"""``python -m bench web``: issue 7's figures for the pages — how fast the API answers the inbox and the overview of
a community with 2,000 sensors and 10,000 alerts in its history, and how long a gas alarm takes from the gateway's
publish to its card in an open browser.

The hub is ``anju-hub serve`` (embedded store, Mosquitto on loopback) with the load generator's deployment (20
gateways × 100 sensors); the history is written into its alert database before it starts (9,950 alerts closed over
the last 30 days, 50 open), so nobody is paged for it. The API figures are sequential requests (p50 and p95 of
``REQUESTS``), with ``/api/v1/health`` measured in the same run as the floor of any answer. The live figure is a real
headless Chromium logged in on ``/app/``: a page-side MutationObserver notes when the alert's card is drawn, against
the wall clock at which the bench published the alarm (one machine, one clock); ``TRIALS`` alarms, each on another
gas detector.
"""

import random
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Page

from alerts.model import Alert, AlertState, Grade, RiskEvent, Transition
from alerts.store import AlertStore
from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.demo.broker import find_mosquitto, mosquitto_config
from hub.demo.hub_process import serving_hub
from hub.demo.processes import free_port, wait_port
from protocol.senml import Batch, Reading, encode_batch
from protocol.topics import Channel, topic

__all__ = ["report", "run"]

REPO = Path(__file__).resolve().parents[1]
COMMUNITY = "load"
GATEWAYS, SENSORS_PER_GATEWAY = 20, 100
HISTORY, OPEN = 10_000, 50
REQUESTS = 100
TRIALS = 20
TARGET_LIVE_S = 1.0
DAY_MS = 86_400_000


def _seed_history(path: Path, options: LoadOptions, now_ms: int) -> None:
    """``HISTORY`` alerts of the fleet's sensors over 30 days, the newest ``OPEN`` still open, each with its audit."""
    rng = random.Random(20261130)
    sensors = [
        (gateway, sensor, kind) for gateway in options.gateway_ids() for sensor, kind in options.sensors(gateway)
    ]
    writes: list[tuple[Alert, list[Transition], list[object]]] = []
    for index in range(HISTORY):
        gateway, sensor, kind = rng.choice(sensors)
        opened = now_ms - (HISTORY - index) * (30 * DAY_MS // HISTORY)
        grade = rng.choice([Grade.IV, Grade.IV, Grade.III, Grade.II])
        event = RiskEvent(
            key=f"{COMMUNITY}/{sensor}/{kind}/history-{index}", community=COMMUNITY, grid="load-grid", sensor=sensor,
            kind=kind, location_zh=f"unit of {gateway}", rule="history", grade=grade, value=1.0, unit="x",
            time_ms=opened, status="firing", source="bench web: seeded history",
        )  # fmt: skip
        still_open = index >= HISTORY - OPEN
        state = AlertState.OPEN if still_open else AlertState.CLOSED
        alert = Alert(
            id=f"al-{index:08x}{secrets.token_hex(4)}", key=event.key, community=COMMUNITY, grid="load-grid",
            grade=grade, state=state, revision=1, first_event=event, last_event=event, opened_at_ms=opened,
            updated_at_ms=opened + 600_000, acknowledged_by=None if still_open else "load-operator",
            acknowledged_at_ms=None if still_open else opened + 60_000,
            resolved_by=None if still_open else "load-operator",
            resolved_at_ms=None if still_open else opened + 600_000, resolved_note=None if still_open else "seeded",
        )  # fmt: skip
        steps = [Transition(alert_id=alert.id, from_state=None, to_state=AlertState.OPEN, by="anju", channel="event",
                            time_ms=opened, note="seeded")]  # fmt: skip
        if not still_open:
            steps.append(
                Transition(
                    alert_id=alert.id,
                    from_state=AlertState.OPEN,
                    to_state=AlertState.CLOSED,
                    by="load-operator",
                    channel="api",
                    time_ms=opened + 600_000,
                )
            )
        writes.append((alert, steps, []))
    with AlertStore(path) as store:
        for start in range(0, len(writes), 1_000):
            store.commit_many(writes[start : start + 1_000])  # type: ignore[arg-type]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _timed(client: httpx.Client, path: str) -> list[float]:
    times = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - began)
        answer.raise_for_status()
    return times


_OBSERVER = """(location) => {
  window.__seen = null;
  const since = Date.now();
  const look = () => {
    for (const card of document.querySelectorAll('#active article.card')) {
      if (card.textContent.includes(location)) { window.__seen = Date.now(); observer.disconnect(); return; }
    }
  };
  const observer = new MutationObserver(look);
  observer.observe(document.getElementById('active'), {childList: true, subtree: true, characterData: true});
  return since;
}"""


def _seen_ms(page: "Page", *, timeout_s: float) -> float:
    """When the page's observer saw the card (page clock, ms): read by a function call, never an eval (the pages'
    Content-Security-Policy forbids eval, and the page is measured as users get it)."""
    deadline = time.monotonic() + timeout_s
    while (seen := page.evaluate("() => window.__seen")) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no card within {timeout_s:g} s")
        time.sleep(0.02)
    return float(seen)


def _live(base: str, token: str, mqtt_port: int, options: LoadOptions, say: Callable[[str], None]) -> list[float]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("chromium is not installed (scripts/ensure-services installs it)")
    password = secrets.token_urlsafe(16)
    user = {"name": "operator", "role": "grid_manager", "person": "load-operator", "password": password}
    httpx.post(f"{base}/api/v1/users", json=user, headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    gas = [(g, s) for g in options.gateway_ids() for s, kind in options.sensors(g) if kind == "gas"][:TRIALS]
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-web-{secrets.token_hex(4)}")
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    delays: list[float] = []
    try:
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_context(base_url=base).new_page()
            page.goto("/app/login")
            page.fill("#username", "operator")
            page.fill("#password", password)
            page.click("button[type=submit]")
            page.wait_for_selector("#status.live", timeout=30_000)
            for trial, (gateway, sensor) in enumerate(gas, start=1):
                unit = next(i for i, (s, _) in enumerate(options.sensors(gateway), start=1) if s == sensor)
                page.evaluate(_OBSERVER, f"unit {unit} of {gateway}")
                now_ms = time.time_ns() // 1_000_000
                body = encode_batch(
                    Batch(COMMUNITY, gateway, 1_000 + trial, 1, (Reading(sensor, now_ms, 30.0, "%LEL"),))
                )
                sent = time.time()
                client.publish(topic(COMMUNITY, gateway, Channel.ALARM), body, qos=1).wait_for_publish(5)
                delays.append(_seen_ms(page, timeout_s=15) / 1000 - sent)
            browser.close()
    finally:
        client.loop_stop()
        client.disconnect()
    say(f"  live: {len(delays)} alarms, publish → card drawn {', '.join(f'{d * 1000:.0f}' for d in delays)} ms")
    return delays


def run(*, say: Callable[[str], None] = lambda text: print(text, flush=True)) -> dict[str, object]:
    mosquitto = find_mosquitto()
    if mosquitto is None:
        raise RuntimeError("mosquitto is not installed")
    options = LoadOptions(community=COMMUNITY, gateways=GATEWAYS, sensors_per_gateway=SENSORS_PER_GATEWAY)
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="anju-bench-web-") as folder:
        workdir = Path(folder)
        (workdir / "deployment.yaml").write_text(render_deployment(options), encoding="utf-8")
        (workdir / "data").mkdir()
        _seed_history(workdir / "data" / "alerts.sqlite3", options, time.time_ns() // 1_000_000)
        port = free_port()
        broker = subprocess.Popen([mosquitto, "-c", str(mosquitto_config(port=port, directory=workdir / "m"))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            if not wait_port(port, timeout_s=30):
                raise RuntimeError("mosquitto did not listen")
            with (
                serving_hub(
                    config=workdir / "deployment.yaml",
                    data_dir=workdir / "data",
                    mqtt_port=port,
                    http_port=free_port(),
                    log=workdir / "hub.log",
                ) as (base, token),
                httpx.Client(
                    base_url=base, headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=30
                ) as client,
            ):
                paths = {
                    "health (floor)": "/api/v1/health",
                    "inbox: open alerts": "/api/v1/alerts?active=true&limit=500",
                    "overview: sensors": "/api/v1/sensors?limit=5000",
                    "overview: alerts": "/api/v1/alerts?active=true&limit=1000",
                    "overview: community": "/api/v1/community",
                }
                for name, path in paths.items():
                    _timed(client, path)  # warm: first-use imports and caches are not the steady state
                    p50, p95 = _percentiles(_timed(client, path))
                    results[name] = {"p50_ms": p50 * 1000, "p95_ms": p95 * 1000}
                    say(f"  {name}: p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms ({REQUESTS} requests)")
                delays = _live(base, token, port, options, say)
                p50, p95 = _percentiles(delays)
                results["live"] = {"p50_s": p50, "p95_s": p95, "max_s": max(delays), "trials": len(delays)}
        finally:
            broker.terminate()
            broker.wait(timeout=10)
    return results


def report(results: dict[str, object], say: Callable[[str], None] = lambda text: print(text, flush=True)) -> None:
    floor = results["health (floor)"]
    assert isinstance(floor, dict)
    say(f"reference: GET /api/v1/health p95 {floor['p95_ms']:.1f} ms (the floor of any answer, same hub, same run)")
    for name in ("inbox: open alerts", "overview: sensors", "overview: alerts", "overview: community"):
        figure = results[name]
        assert isinstance(figure, dict)
        say(
            f"API {name} with {GATEWAYS * SENSORS_PER_GATEWAY:,} sensors and {HISTORY:,} alerts in history: "
            f"p50 {figure['p50_ms']:.1f} ms, p95 {figure['p95_ms']:.1f} ms; ratio to the floor "
            f"{figure['p95_ms'] / floor['p95_ms']:.1f}"
        )
    live = results["live"]
    assert isinstance(live, dict)
    say(
        f"gas alarm published → its card drawn in an open browser (headless Chromium, {live['trials']} alarms): "
        f"median {live['p50_s'] * 1000:.0f} ms, p95 {live['p95_s'] * 1000:.0f} ms, max {live['max_s'] * 1000:.0f} ms; "
        f"target <= {TARGET_LIVE_S * 1000:.0f} ms: {'met' if live['p95_s'] <= TARGET_LIVE_S else 'not met'}"
    )


def main() -> int:
    report(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
