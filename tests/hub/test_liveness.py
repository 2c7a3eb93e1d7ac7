"""Device liveness (issue 4): learned report intervals, stale sensors, offline gateways, and the risk events.

Unit tests drive ``Liveness`` with explicit hub clocks (``now_ms``), no sleeps; the last test runs the real hub
against a real Mosquitto, where a gateway's Will fires and the offline events reach the alert service."""

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from alerts.model import Grade, RiskEvent
from hub.config import ConfigError, Deployment, load_deployment
from hub.ingest.intervals import IntervalPolicy, ReportIntervals
from hub.ingest.liveness import Liveness
from hub.ingest.registry import Registry
from hub.metrics import Metrics
from protocol import GatewayState, Reading, encode_state
from tests.hub.harness import Hub, eventually, gateway, running_hub

T0 = 1_764_400_000_000
STALE_SOURCE = "Anju liveness: no reading for 3 × the sensor's report interval"
GATEWAY_SOURCE = "Anju liveness: the broker reports the gateway offline (death/Will, or no birth)"
HEARTBEAT_SOURCE = "Anju liveness: no message for 3 × the gateway's heartbeat interval"
VIA_GATEWAY_SOURCE = "Anju liveness: the sensor's gateway is offline"


def _deployment(gateways: int = 2, sensors: int = 3, override: dict[str, float] | None = None) -> Deployment:
    override = override or {}
    return Deployment.model_validate(
        {
            "community": {"id": "hongxing", "name": "红星社区"},
            "grids": [
                {"id": "grid-1", "name": "第一网格", "managers": ["wang-li"]},
                {"id": "grid-2", "name": "第二网格", "managers": ["wang-li"]},
            ],
            "people": [{"id": "wang-li", "name": "王丽"}],
            "gateways": [
                {
                    "id": f"gw-{g}",
                    "location": f"{g}栋一层弱电间",
                    "sensors": [
                        {
                            "id": f"gas-{g}-{s}",
                            "kind": "gas",
                            "unit_id": s,
                            "location": f"{g}栋{s}01室厨房",
                            "grid": "grid-1" if s != 2 else "grid-2",
                            **({"report_interval_s": override[f"gas-{g}-{s}"]} if f"gas-{g}-{s}" in override else {}),
                        }
                        for s in range(1, sensors + 1)
                    ],
                }
                for g in range(1, gateways + 1)
            ],
        }
    )


def _liveness(
    deployment: Deployment | None = None, *, online: bool = True, **kwargs: Any
) -> tuple[Liveness, Registry, Metrics]:
    registry = Registry(deployment or _deployment())
    metrics = Metrics()
    if online:
        for gateway_id in registry.gateways:
            registry.set_state(gateway_id, online=True, session=1)
    liveness = Liveness(registry=registry, metrics=metrics, **kwargs)
    assert liveness.sweep(T0, connected=True) == [], "the hub connects at T0: nothing to say yet"
    return liveness, registry, metrics


def _feed(liveness: Liveness, sensors: list[str], at_ms: int, device_ms: list[int] | None = None) -> None:
    times = device_ms if device_ms is not None else [at_ms] * len(sensors)
    liveness.observe(sensors, np.array(times, np.int64), at_ms)


def _every_10_s(liveness: Liveness, sensor: str, first_ms: int, count: int) -> int:
    """``count`` readings 10 s apart (device time = arrival); returns the last arrival."""
    for k in range(count):
        _feed(liveness, [sensor], first_ms + 10_000 * k)
    return first_ms + 10_000 * (count - 1)


def _sensor(liveness: Liveness, sensor: str, now_ms: int) -> Any:
    _, _, page = liveness.sensor_page(now_ms, limit=10_000)
    return next(item for item in page if item.sensor == sensor)


def _summary(events: list[RiskEvent]) -> set[tuple[str, str, str]]:
    return {(event.sensor, event.rule, event.status) for event in events}


def test_a_sensor_is_stale_after_three_learned_intervals_and_fresh_on_its_next_reading() -> None:
    liveness, _, metrics = _liveness()
    last = _every_10_s(liveness, "gas-1-1", T0 + 1_000, 4)
    seen = _sensor(liveness, "gas-1-1", last)
    assert (seen.interval_s, seen.interval_source, seen.stale_after_s) == (10.0, "learned", 30.0)
    assert _sensor(liveness, "gas-1-2", last).interval_source == "default"

    assert liveness.sweep(last + 30_000, connected=True) == [], "3 intervals exactly is not yet stale"
    stale = liveness.sweep(last + 30_001, connected=True)
    assert stale == [
        RiskEvent(
            key="hongxing/gas-1-1/offline",
            community="hongxing",
            grid="grid-1",
            sensor="gas-1-1",
            kind="gas",
            location_zh="红星社区 1栋101室厨房",
            rule="stale",
            grade=Grade.IV,
            value=30.001,
            unit="s",
            time_ms=last + 30_001,
            status="firing",
            source=STALE_SOURCE,
            threshold=30.0,
            maintenance=True,
        )
    ]
    assert liveness.sweep(last + 31_000, connected=True) == [], "emitted on change only"
    assert _sensor(liveness, "gas-1-1", last + 31_000).status == "stale"

    _feed(liveness, ["gas-1-1"], last + 39_000)
    (cleared,) = liveness.sweep(last + 39_500, connected=True)
    assert (cleared.key, cleared.rule, cleared.status, cleared.time_ms, cleared.value) == (
        "hongxing/gas-1-1/offline",
        "stale",
        "cleared",
        last + 39_000,
        0.5,
    )
    # The 39 s gap ended by one reading teaches (a sensor may really have slowed): capped at 2 × 10 s, weight 1/4.
    assert cleared.threshold == 37.5
    assert _sensor(liveness, "gas-1-1", last + 39_500).status == "fresh"
    text = metrics.render()
    assert 'anju_liveness_transitions_total{reason="stale",subject="sensor"} 1' in text
    assert 'anju_liveness_transitions_total{reason="cleared",subject="sensor"} 1' in text
    assert 'anju_sensors_stale{community="hongxing",reason="stale"} 0' in text


def test_sensors_never_seen_are_judged_one_default_limit_after_the_hub_connected() -> None:
    liveness, _, metrics = _liveness()
    assert _sensor(liveness, "gas-2-3", T0).status == "unseen"
    assert liveness.sweep(T0 + 180_000, connected=True) == []
    events = liveness.sweep(T0 + 180_001, connected=True)
    assert {(e.sensor, e.rule, e.value, e.threshold) for e in events} == {
        (f"gas-{g}-{s}", "stale", 180.001, 180.0) for g in (1, 2) for s in (1, 2, 3)
    }
    assert {e.grid for e in events if e.sensor.endswith("-2")} == {"grid-2"}
    assert 'anju_sensors_stale{community="hongxing",reason="stale"} 6' in metrics.render()


def test_a_gateway_will_makes_every_sensor_of_it_stale_at_once_and_each_clears_on_its_own_reading() -> None:
    liveness, registry, metrics = _liveness()
    everyone = [f"gas-{g}-{s}" for g in (1, 2) for s in (1, 2, 3)]
    _feed(liveness, everyone, T0 + 1_000)
    assert liveness.sweep(T0 + 1_500, connected=True) == []

    registry.set_state("gw-1", online=False, session=1)  # the broker published its Will
    events = liveness.sweep(T0 + 2_000, connected=True)
    assert events[0] == RiskEvent(
        key="hongxing/gateway/gw-1/offline",
        community="hongxing",
        grid="grid-1",
        sensor="gw-1",
        kind="gateway",
        location_zh="红星社区 1栋一层弱电间 网关 gw-1",
        rule="gateway-offline",
        grade=Grade.IV,
        value=1.0,
        unit="s",
        time_ms=T0 + 2_000,
        status="firing",
        source=GATEWAY_SOURCE,
        threshold=None,
        maintenance=True,
    )
    assert [(e.key, e.rule, e.status, e.value, e.threshold, e.source) for e in events[1:]] == [
        (f"hongxing/gas-1-{s}/offline", "gateway-offline", "firing", 1.0, None, VIA_GATEWAY_SOURCE) for s in (1, 2, 3)
    ]
    assert liveness.gateway_view("gw-1").status == "offline"  # type: ignore[union-attr]
    text = metrics.render()
    assert 'anju_sensors_stale{community="hongxing",reason="gateway-offline"} 3' in text
    assert 'anju_gateways_offline{community="hongxing",reason="gateway-offline"} 1' in text

    registry.set_state("gw-1", online=True, session=2)  # rebirth: the gateway clears, its sensors wait
    assert _summary(liveness.sweep(T0 + 3_000, connected=True)) == {("gw-1", "gateway-offline", "cleared")}
    _feed(liveness, ["gas-1-1"], T0 + 3_500)
    (back,) = liveness.sweep(T0 + 4_000, connected=True)
    assert (back.sensor, back.rule, back.status, back.value, back.time_ms) == (
        "gas-1-1",
        "gateway-offline",
        "cleared",
        0.5,
        T0 + 3_500,
    )
    # gw-2's sensors: one default limit (3 × 60 s) after their reading at T0 + 1 s.
    assert _summary(liveness.sweep(T0 + 183_000, connected=True)) == {
        ("gas-2-1", "stale", "firing"),
        ("gas-2-2", "stale", "firing"),
        ("gas-2-3", "stale", "firing"),
    }
    # gw-1's silent sensors: their own limit counted from the gateway's return; the rule becomes "stale".
    assert _summary(liveness.sweep(T0 + 183_001, connected=True)) == {
        ("gas-1-2", "stale", "firing"),
        ("gas-1-3", "stale", "firing"),
    }


def test_a_half_open_gateway_is_offline_after_three_missed_heartbeats_and_a_retained_copy_is_no_heartbeat() -> None:
    liveness, _, metrics = _liveness()
    for k in range(4):
        liveness.heartbeat("gw-1", (T0 + 1_000 + 10_000 * k) / 1000, T0 + 1_000 + 10_000 * k)
    view = liveness.gateway_view("gw-1")
    assert view is not None and (view.heartbeat_interval_s, view.silent_after_s, view.status) == (10.0, 30.0, "online")
    assert liveness.sweep(T0 + 61_000, connected=True) == []
    events = liveness.sweep(T0 + 61_001, connected=True)
    gateway_event = events[0]
    assert (gateway_event.key, gateway_event.rule, gateway_event.value, gateway_event.threshold) == (
        "hongxing/gateway/gw-1/offline",
        "heartbeat-lost",
        30.001,
        30.0,
    )
    assert gateway_event.source == HEARTBEAT_SOURCE
    assert [(e.sensor, e.rule, e.value) for e in events[1:]] == [
        (f"gas-1-{s}", "gateway-offline", 61.001) for s in (1, 2, 3)
    ], "never-seen sensors: seconds since the hub connected"
    assert 'anju_gateways_offline{community="hongxing",reason="heartbeat-lost"} 1' in metrics.render()

    liveness.heartbeat("gw-1", (T0 + 31_000) / 1000, T0 + 62_000)  # the broker's retained copy, re-delivered
    assert liveness.sweep(T0 + 62_500, connected=True) == []
    liveness.heartbeat("gw-1", (T0 + 70_000) / 1000, T0 + 70_000)
    (cleared,) = liveness.sweep(T0 + 70_500, connected=True)
    assert (cleared.sensor, cleared.rule, cleared.status) == ("gw-1", "heartbeat-lost", "cleared")
    assert liveness.gateway_view("gw-1").status == "online"  # type: ignore[union-attr]


def test_nothing_is_declared_while_the_hub_is_disconnected_nor_within_one_limit_of_reconnecting() -> None:
    liveness, _, _ = _liveness()
    last = _every_10_s(liveness, "gas-1-1", T0 + 1_000, 4)
    assert liveness.sweep(T0 + 600_000, connected=False) == [], "the hub's outage is not the sensors' fault"
    _feed(liveness, ["gas-2-1"], T0 + 599_000)  # committed from the inbox while disconnected: not learned
    assert liveness.sweep(T0 + 600_000, connected=True, connection=1) == [], "reconnected: clocks restart"
    assert liveness.sweep(T0 + 630_000, connected=True, connection=1) == []
    (stale,) = liveness.sweep(T0 + 630_001, connected=True, connection=1)
    assert (stale.sensor, stale.value, stale.threshold) == ("gas-1-1", (T0 + 630_001 - last) / 1000, 30.0)
    _feed(liveness, ["gas-1-1"], T0 + 631_000)
    (back,) = liveness.sweep(T0 + 631_500, connected=True, connection=1)
    assert back.status == "cleared" and back.threshold == 30.0, "a gap across the hub's outage teaches nothing"

    # A reconnect between two sweeps (the connection count moved) restarts the clocks just the same.
    assert liveness.sweep(T0 + 700_000, connected=True, connection=2) == []
    assert _summary(liveness.sweep(T0 + 880_000, connected=True, connection=2)) == {("gas-1-1", "stale", "firing")}
    assert {e.sensor for e in liveness.sweep(T0 + 880_001, connected=True, connection=2)} == {
        "gas-1-2",
        "gas-1-3",
        "gas-2-1",
        "gas-2-2",
        "gas-2-3",
    }


def test_a_replayed_backlog_does_not_change_the_learned_interval() -> None:
    liveness, _, _ = _liveness()
    last = _every_10_s(liveness, "gas-1-1", T0 + 1_000, 4)
    assert _sensor(liveness, "gas-1-1", last).interval_s == 10.0
    # The gateway was away 10 minutes; its outbox replays 60 readings 10 s apart in three quick rounds.
    backlog = [last + 10_000 * k for k in range(1, 61)]
    arrival = last + 600_000
    for chunk in range(3):
        part = backlog[20 * chunk : 20 * (chunk + 1)]
        _feed(liveness, ["gas-1-1"] * 20, arrival + 50 * chunk, part)
    _feed(liveness, ["gas-1-1"], arrival + 10_100, [backlog[-1] + 10_000])
    _feed(liveness, ["gas-1-1"], arrival + 20_100, [backlog[-1] + 20_000])
    seen = _sensor(liveness, "gas-1-1", arrival + 20_100)
    assert (seen.interval_s, seen.interval_source) == (10.0, "learned")


def test_the_interval_estimate_is_seeded_by_a_median_and_falls_slowly_after_a_burst() -> None:
    intervals = ReportIntervals(1, policy=IntervalPolicy())
    row = np.zeros(1, np.intp)
    one = np.ones(1, np.intp)

    def arrive(at_ms: int, advance_ms: float) -> None:
        intervals.arrive(row, at_ms, np.array([advance_ms]), one, learn_after_ms=0)

    arrive(1_000_000, np.nan)
    arrive(1_030_000, 30_000)
    assert intervals.interval_ms[0] == 60_000, "while seeding: never below the default"
    arrive(1_630_000, 600_000)  # one long gap ended by one reading: the sensor may report that rarely
    assert intervals.interval_ms[0] == 600_000, "while seeding: the largest gap seen"
    arrive(1_660_000, 30_000)
    assert intervals.interval_ms[0] == 30_000, "median of (30, 600, 30) s: the outage among the seeds is ignored"
    at_ms = 1_660_000
    for _ in range(10):  # an alarm burst: readings every 5 s
        at_ms += 5_000
        arrive(at_ms, 5_000)
    assert intervals.interval_ms[0] == pytest.approx(30_000 - 25_000 * (1 - (15 / 16) ** 10))
    assert intervals.limit_ms()[0] > 30_000, "a 30 s cadence after the burst is not declared stale"


def test_report_interval_from_the_deployment_file_replaces_learning_and_is_validated(tmp_path: Path) -> None:
    liveness, _, _ = _liveness(_deployment(override={"gas-1-1": 120}))
    last = _every_10_s(liveness, "gas-1-1", T0 + 1_000, 5)
    seen = _sensor(liveness, "gas-1-1", last)
    assert (seen.interval_s, seen.interval_source, seen.stale_after_s) == (120.0, "override", 360.0)
    others = {(f"gas-{g}-{s}", "stale", "firing") for g in (1, 2) for s in (1, 2, 3)} - {("gas-1-1", "stale", "firing")}
    assert _summary(liveness.sweep(last + 360_000, connected=True)) == others, "unseen: 180 s after T0"
    (stale,) = liveness.sweep(last + 360_001, connected=True)
    assert (stale.sensor, stale.threshold) == ("gas-1-1", 360.0)

    bad = tmp_path / "deployment.yaml"
    bad.write_text(
        "community: {id: hongxing, name: 红星社区}\n"
        "grids: [{id: grid-1, name: 第一网格, managers: [wang-li]}]\n"
        "people: [{id: wang-li, name: 王丽}]\n"
        "gateways:\n"
        "  - id: gw-b1\n"
        "    sensors:\n"
        "      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1, report_interval_s: 0.5}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=r"gateways\[0\]\.sensors\[0\]\.report_interval_s = 0\.5"):
        load_deployment(bad, check_secrets=False)


def test_a_sweep_emits_at_most_max_events_sensor_changes_and_the_rest_in_the_next_sweeps() -> None:
    liveness, registry, _ = _liveness(_deployment(gateways=3, sensors=200), max_events=250)
    for gateway_id in registry.gateways:
        registry.set_state(gateway_id, online=False, session=1)
    sweeps = [liveness.sweep(T0 + 1_000 * k, connected=True) for k in range(1, 6)]
    assert [len(events) for events in sweeps] == [3 + 250, 250, 100, 0, 0]
    keys = [event.key for events in sweeps for event in events if event.kind == "gas"]
    assert len(keys) == len(set(keys)) == 600


@pytest.mark.parametrize("size", [12, 400], ids=["small round (sorted)", "large round (scattered)"])
def test_a_round_is_grouped_per_sensor_with_its_newest_time_and_count_of_newer_readings(size: int) -> None:
    liveness, _, _ = _liveness(_deployment(gateways=3, sensors=200))
    liveness.observe_rows(np.array([5, 7], np.intp), np.array([T0 + 100, T0 + 100], np.int64), T0 + 100)
    rng = np.random.default_rng(size)
    rows = rng.integers(0, 10, size).astype(np.intp)
    times = rng.integers(T0, T0 + 200, size).astype(np.int64)
    unique, newest, newer = liveness._per_sensor(rows, times)
    expected = sorted(set(rows.tolist()))
    before = {5: T0 + 100, 7: T0 + 100}
    assert unique.tolist() == expected
    assert newest.tolist() == [int(times[rows == r].max()) for r in expected]
    assert newer.tolist() == [int((times[rows == r] > before.get(r, -(2**63))).sum()) for r in expected]
    again = liveness._per_sensor(rows, times)  # the scratch arrays are left clean
    assert [a.tolist() for a in again] == [unique.tolist(), newest.tolist(), newer.tolist()]


def test_observe_ignores_unknown_sensors_and_restore_takes_open_conditions_from_before_a_restart() -> None:
    liveness, _, _ = _liveness(online=False)
    _feed(liveness, ["nobody", "gas-1-1"], T0 + 1_000)
    assert _sensor(liveness, "gas-1-1", T0 + 1_000).last_seen_ms == T0 + 1_000

    fresh, _, _ = _liveness()
    old = liveness.sweep(T0 + 200_000, connected=True)  # gateways never born: all offline after the grace
    assert len(old) == 2 + 6
    assert fresh.restore(old, T0 + 300_000) == 8
    assert fresh.sweep(T0 + 300_500, connected=True) == [], "open already: not declared again"
    _feed(fresh, ["gas-1-1"], T0 + 301_000)
    assert _summary(fresh.sweep(T0 + 301_500, connected=True)) == {
        ("gw-1", "gateway-offline", "cleared"),
        ("gas-1-1", "gateway-offline", "cleared"),
    }


# --- end to end: real Mosquitto, the real hub --------------------------------------------------------------

GW_B1_SENSORS = [
    *(f"gas-b1-{r}01" for r in (1, 2, 3)),
    *(f"smoke-b1-f{f}" for f in (1, 2, 3)),
    *(f"temp-b1-{r}01" for r in (1, 2, 3)),
    "water-b1-basement",
]
STATE = "anju/v1/hongxing/gw-b1/state"


def _mqtt_string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _remaining_length(size: int) -> bytes:
    encoded = bytearray()
    while True:
        size, digit = divmod(size, 128)
        encoded.append(digit | (0x80 if size else 0))
        if not size:
            return bytes(encoded)


async def _connect_with_will(port: int, client_id: str, topic: str, will: bytes) -> asyncio.StreamWriter:
    """A bare MQTT 3.1.1 connection whose Will (QoS 1, retained) the broker fires when it is cut without DISCONNECT."""
    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    body = _mqtt_string(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
    body += _mqtt_string(client_id.encode()) + _mqtt_string(topic.encode()) + _mqtt_string(will)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x10" + _remaining_length(len(body)) + body)
    await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(4), 10) == b"\x20\x02\x00\x00", "CONNACK accepted"
    return writer


async def _offline_alerts(hub: Hub) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = (await hub.api.get("/api/v1/alerts", params={"limit": 1000})).json()
    return [alert for alert in alerts if alert["key"].endswith("/offline")]


@pytest.mark.anyio
async def test_a_gateway_will_reaches_the_alert_service_as_offline_events(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as hub:
        will = encode_state(GatewayState("offline", 1, time.time()))
        link = await _connect_with_will(hub.mqtt_port, f"test-gw-b1-will-{time.monotonic_ns()}", STATE, will)
        async with gateway(hub.mqtt_port) as gw:
            await gw.raw(STATE, encode_state(GatewayState("online", 1, time.time())))
            now_ms = time.time_ns() // 1_000_000
            await gw.publish(1, Reading("gas-b1-101", now_ms, 1.0, "%LEL"))
            assert (await gw.ack()).seq == 1

            async def online() -> bool:
                body = (await hub.api.get("/api/v1/gateways/hongxing/gw-b1/health")).json()
                return bool(body["online"])

            await eventually(online)
            link.transport.abort()  # no DISCONNECT: the broker publishes the Will

            # One alert for the gateway: its detectors' "gateway offline" events follow from it and are inhibited.
            expected = {("hongxing/gateway/gw-b1/offline", "gateway-offline")}

            async def all_open() -> list[dict[str, Any]] | None:
                alerts = await _offline_alerts(hub)
                muted = await hub.metric("anju_alerts_muted_total")
                return alerts if alerts and muted == len(GW_B1_SENSORS) else None

            alerts = await eventually(all_open, 20)
            assert {(a["key"], a["rule"]) for a in alerts} == expected, "gw-b2 is not judged within its grace"
            assert {(a["grade"], a["grid"], a["unit"], a["state"]) for a in alerts} == {("IV", "grid-1", "s", "open")}
            by_key = {a["key"]: a for a in alerts}
            gateway_alert = by_key["hongxing/gateway/gw-b1/offline"]
            assert (gateway_alert["kind"], gateway_alert["location"], gateway_alert["threshold"]) == (
                "gateway",
                "红星社区 1栋一层弱电间 网关 gw-b1",
                None,
            )

            async def notified() -> list[dict[str, Any]] | None:
                received = [n for n in hub.sink.sink.received if n["alert_key"].endswith("/offline")]
                return received if len(received) >= len(expected) else None

            notes = await eventually(notified, 20)
            assert {n["alert_key"] for n in notes} == {key for key, _ in expected}
            note = next(n for n in notes if n["alert_key"] == "hongxing/gateway/gw-b1/offline")
            # equipment faults go to the property company (the demo's `property` department), not the grid manager
            assert (note["kind_zh"], note["rule_zh"], note["recipient"]["id"]) == ("网关", "网关离线", "li-property")
            assert note["message_zh"].startswith("【IV级 蓝色 一般】红星社区 1栋一层弱电间 网关 gw-b1 网关离线：")

            status = (await hub.api.get("/api/v1/sensors/status", params={"gateway": "gw-b1"})).json()
            assert status["total"] == 10
            assert {(s["status"], s["reason"]) for s in status["sensors"]} == {("stale", "gateway-offline")}
            unseen = (await hub.api.get("/api/v1/sensors/status", params={"status": "unseen"})).json()
            assert unseen["total"] == 10 and {s["gateway"] for s in unseen["sensors"]} == {"gw-b2"}
            missing = await hub.api.get("/api/v1/sensors/status", params={"gateway": "gw-b9"})
            assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
            assert (await hub.api.get("/api/v1/sensors/status", params={"status": "asleep"})).status_code == 422
            labels = '{community="hongxing",reason="gateway-offline"}'
            assert await hub.metric_line(f"anju_sensors_stale{labels} ") == 10
            assert await hub.metric_line(f"anju_gateways_offline{labels} ") == 1
            health = (await hub.api.get("/api/v1/gateways/hongxing/gw-b1/health")).json()
            assert health["liveness"] == "offline"

            gw.session = 2  # rebirth, and one detector reports again
            await gw.raw(STATE, encode_state(GatewayState("online", 2, time.time())))
            await gw.publish(1, Reading("gas-b1-101", time.time_ns() // 1_000_000, 1.0, "%LEL"))

            async def cleared() -> set[str] | None:
                keys = {a["key"] for a in await _offline_alerts(hub) if a["cleared_at"] is not None}
                return keys or None

            assert await eventually(cleared, 20) == {"hongxing/gateway/gw-b1/offline"}
            health = (await hub.api.get("/api/v1/gateways/hongxing/gw-b1/health")).json()
            assert health["liveness"] == "online"
