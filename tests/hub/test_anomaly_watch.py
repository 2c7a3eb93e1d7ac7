"""Anomaly scores on the hub's ingest path: one grade IV condition per episode, state kept across restarts."""

from pathlib import Path

import numpy as np
import pytest

from alerts.model import Grade, RiskEvent
from hub.config import load_deployment
from hub.detection.anomaly_watch import ANOMALY_KINDS, CUMULATIVE_KINDS, AnomalyWatch, rows_of_kinds
from hub.detection.observations import Observations
from hub.ingest.registry import Registry, SensorInfo
from protocol import Reading
from protocol.kinds import KINDS
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub

MINUTE_MS = 60_000


@pytest.fixture
def info(demo_deployment: Path) -> SensorInfo:
    registry = Registry(load_deployment(demo_deployment))
    return next(i for i in registry.sensors.values() if i.id == "temp-b1-101")


def temperatures(start: int, count: int, seed: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    return [(T0 + (start + i) * MINUTE_MS, 22.0 + float(rng.normal(0.0, 0.2))) for i in range(count)]


def watch_round(watch: AnomalyWatch, info: SensorInfo, readings: list[tuple[int, float]]) -> list[RiskEvent]:
    rows = np.full(len(readings), info.index, np.intp)
    times = np.array([t for t, _ in readings], np.int64)
    values = np.array([v for _, v in readings])
    return watch.observe_columns(Observations(rows, times, values, [info] * len(readings)))


def test_a_spike_opens_one_grade_iv_condition_that_clears_after_a_quiet_hour(info: SensorInfo) -> None:
    watch = AnomalyWatch(community="hongxing", community_name="红星社区")
    assert watch_round(watch, info, temperatures(0, 40, seed=1)) == []
    [fired] = watch_round(watch, info, [(T0 + 40 * MINUTE_MS, 35.0), (T0 + 41 * MINUTE_MS, 36.0)])
    assert (
        fired.status == "firing" and fired.grade == Grade.IV and fired.key == "hongxing/temp-b1-101/temperature/anomaly"
    )
    assert fired.rule == "anomaly-spike" and fired.value == 35.0 and fired.location_zh.startswith("红星社区")
    assert watch_round(watch, info, temperatures(42, 57, seed=2)) == [], "open, and not yet an hour quiet"
    [cleared] = watch_round(watch, info, temperatures(99, 3, seed=3))
    assert cleared.status == "cleared" and cleared.key == fired.key


def test_the_saved_state_carries_on_exactly_and_without_a_burst(info: SensorInfo, tmp_path: Path) -> None:
    first, second = temperatures(0, 200, seed=4), temperatures(200, 200, seed=5)
    second[100] = (second[100][0], 30.0)
    whole = AnomalyWatch(community="hongxing")
    expected = watch_round(whole, info, first) + watch_round(whole, info, second)
    before = AnomalyWatch(community="hongxing", state_path=tmp_path / "anomaly.npz")
    got = watch_round(before, info, first)
    before.save()
    after = AnomalyWatch(community="hongxing", state_path=tmp_path / "anomaly.npz")
    got += watch_round(after, info, second)
    assert got == expected and [e.status for e in got][:1] == ["firing"], got


def test_an_unreadable_state_file_is_set_aside_and_learning_starts_afresh(info: SensorInfo, tmp_path: Path) -> None:
    path = tmp_path / "anomaly.npz"
    path.write_bytes(b"not a numpy archive")
    watch = AnomalyWatch(community="hongxing", state_path=path)
    assert not path.exists() and (tmp_path / "anomaly.npz.bad").read_bytes() == b"not a numpy archive"
    assert len(watch.detector.seen) == 0
    watch_round(watch, info, temperatures(0, 5, seed=6))
    watch.save()
    assert AnomalyWatch(community="hongxing", state_path=path).detector.seen[info.index] == 5


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="clear_at"):
        AnomalyWatch(community="c", fire_at=0.3, clear_at=0.5)


async def _firing(hub: Hub) -> float:
    return await hub.metric_line('anju_risk_events_total{grade="IV",status="firing"}') or 0.0


def _batch(readings: list[tuple[int, float]]) -> list[Reading]:
    return [Reading("temp-b1-101", t, round(v, 3), "Cel") for t, v in readings]


@pytest.mark.anyio
async def test_the_hub_keeps_what_it_learnt_across_a_restart(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    """Ten readings after a restart are far inside the warm-up of a detector that starts afresh: the spike after
    them is only seen if the hub came back with what it had learnt (and with no event for the usual readings)."""
    data = tmp_path / "data"
    B = -240  # minutes before T0: every reading in the past (a reading from the future is flagged, not judged)
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            await gw.publish(1, *_batch(temperatures(B, 40, seed=7)))
            await gw.publish(2, *_batch([(T0 + (B + 40) * MINUTE_MS, 35.0)]))
            await gw.publish(3, *_batch(temperatures(B + 41, 90, seed=8)))
            for _ in range(3):  # acks are cumulative: at most one per batch before seq 3 is acked
                if (await gw.ack()).seq == 3:
                    break
            else:
                raise AssertionError("batch 3 was never acked")
        assert await eventually(lambda: _firing(hub), 10) == 1.0
        cleared = await eventually(lambda: hub.metric_line('anju_risk_events_total{grade="IV",status="cleared"}'), 10)
        assert cleared == 1.0
    assert (data / "anomaly-state.npz").exists()
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=data) as hub:
        async with gateway(hub.mqtt_port) as gw:
            gw.session = 2
            await gw.publish(1, *_batch(temperatures(B + 131, 10, seed=9)))
            assert (await gw.ack()).seq == 1
            assert await _firing(hub) == 0.0, "no burst after the restart"
            await gw.publish(2, *_batch([(T0 + (B + 141) * MINUTE_MS, 35.0)]))
            assert (await gw.ack()).seq == 2
        assert await eventually(lambda: _firing(hub), 10) == 1.0


def test_only_the_chosen_kinds_are_scored(demo_deployment: Path) -> None:
    registry = Registry(load_deployment(demo_deployment))
    infos = list(registry.sensors.values())
    mask = rows_of_kinds(infos)
    assert {i.kind.name for i in infos if mask[i.index]} == {i.kind.name for i in infos} & ANOMALY_KINDS
    gas = next(i for i in infos if i.kind.name == "gas")
    temperature = next(i for i in infos if i.id == "temp-b1-101")
    watch = AnomalyWatch(community="hongxing", scored_rows=mask)
    normal = temperatures(0, 40, seed=10)
    for sensor in (gas, temperature):
        watch_round(watch, sensor, normal)
    assert watch_round(watch, gas, [(T0 + 40 * MINUTE_MS, 35.0)]) == [], "gas is judged by its set points only"
    [event] = watch_round(watch, temperature, [(T0 + 40 * MINUTE_MS, 35.0)])
    assert event.sensor == "temp-b1-101" and watch.detector.seen[gas.index] == 0


def meter_series(days: int, seed: int, start_total: float = 842.317) -> list[tuple[int, float]]:
    """A flat's water meter read every minute: ~100 L a day in bursts, mostly mornings and evenings (UTC+8)."""
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * 24 * 60)
    local_hour = (minutes // 60 + 8) % 24
    busy = ((local_hour >= 7) & (local_hour < 9)) | ((local_hour >= 18) & (local_hour < 21))
    use = np.where(busy & (rng.random(len(minutes)) < 0.3), rng.gamma(2.0, 0.0025, len(minutes)), 0.0)
    totals = start_total + np.cumsum(use)
    return [(T0 + int(m) * MINUTE_MS, round(float(v), 3)) for m, v in zip(minutes, totals, strict=True)]


def meter(deployment: Path) -> tuple[SensorInfo, AnomalyWatch]:
    registry = Registry(load_deployment(deployment))
    infos = list(registry.sensors.values())
    water = SensorInfo("meter-1", "gw-b1", KINDS["water-meter"], "2栋502", "grid-1", None, len(infos))
    watch = AnomalyWatch(
        community="hongxing",
        scored_rows=rows_of_kinds([*infos, water]),
        cumulative_rows=rows_of_kinds([*infos, water], CUMULATIVE_KINDS),
    )
    return water, watch


def test_a_water_meter_is_scored_on_its_use_so_quiet_nights_and_busy_mornings_are_usual(demo_deployment: Path) -> None:
    """Scored on its register, a meter's every quiet night looked flat and every morning a level shift (bench
    detection: ~100 false grade IV a meter a month). Scored on its quarter-hourly use, two weeks are usual."""
    water, watch = meter(demo_deployment)
    series = meter_series(14, seed=12)
    events: list[RiskEvent] = []
    for day in range(14):
        events += watch_round(watch, water, series[day * 1440 : (day + 1) * 1440])
    assert events == []
    assert watch.detector.seen[water.index] == 14 * 24 * 4 - 1, "one use a quarter hour; the first reading starts it"


def test_a_water_meter_replaced_with_a_lower_register_starts_again_without_an_event(demo_deployment: Path) -> None:
    water, watch = meter(demo_deployment)
    series = meter_series(4, seed=13)
    watch_round(watch, water, series[: 3 * 1440])
    replaced = [(t, round(v - 800.0, 3)) for t, v in series[3 * 1440 :]]
    assert watch_round(watch, water, replaced) == []
    assert watch.total[water.index] < 100.0


def test_a_spike_too_small_to_matter_opens_nothing_however_rare_it_is(demo_deployment: Path) -> None:
    """A dry basement reads 0-2 mm; 7 mm once is rare for it, and not worth a visit (MEANINGFUL: 2 cm)."""
    registry = Registry(load_deployment(demo_deployment))
    basement = next(i for i in registry.sensors.values() if i.kind.name == "water-depth")
    rng = np.random.default_rng(16)
    dry = [(T0 + i * MINUTE_MS, float(max(0.0, round(rng.normal(0.0, 0.001), 3)))) for i in range(600)]
    watch = AnomalyWatch(community="hongxing")
    assert watch_round(watch, basement, dry) == []
    assert watch_round(watch, basement, [(T0 + 600 * MINUTE_MS, 0.007)]) == []
    [flooded] = watch_round(watch, basement, [(T0 + 601 * MINUTE_MS, 0.06)])
    assert flooded.status == "firing" and flooded.rule == "anomaly-spike"
