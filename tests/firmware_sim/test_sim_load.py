"""``anju-sim load`` against a real Mosquitto and the real hub (tests/hub/harness.py): acks, stalls, replays."""

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from firmware_sim.cli import main
from firmware_sim.load import MAX_BATCH, LoadOptions, LoadReport, render_deployment, run_load
from hub.config import load_deployment
from hub.store.chunks import ChunkStore
from hub.store.open import embedded_path
from protocol import Ack, Batch, Reading, Rejection, decode_batch, encode_ack, encode_batch
from protocol.kinds import KINDS
from protocol.senml import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_BATCH
from protocol.topics import Channel, subscription, topic
from tests.hub.harness import running_hub

pytestmark = pytest.mark.anyio


async def test_every_reading_of_the_fleet_is_acked_and_stored_once(mosquitto: int, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    report_path = tmp_path / "report.json"
    argv = ["load", "--port", str(mosquitto), "--gateways", "3", "--sensors-per-gateway", "20", "--rate", "5"]
    argv += ["--duration", "5", "--deployment-out", str(fleet)]
    assert main([*argv, "--deployment-only"]) == 0
    assert len(list(load_deployment(fleet, check_secrets=False).sensors())) == 60
    data = tmp_path / "data"
    async with running_hub(mosquitto=mosquitto, deployment=fleet, data_dir=data) as hub:
        assert await asyncio.to_thread(main, [*argv, "--report", str(report_path)]) == 0
        report = json.loads(report_path.read_text(encoding="utf-8"))
        assert report["published_readings"] == 3 * 20 * 5 * 5
        assert report["acked_readings"] == report["published_readings"], report
        assert report["unacked_readings"] == 0
        assert await hub.metric("anju_readings_stored_total") == report["published_readings"]
        assert await hub.metric("anju_payloads_rejected_total") == 0
        assert await hub.metric("anju_risk_events_total") == 0, "values must stay on the safe side"
        settings = hub.settings
    store = ChunkStore(path=embedded_path(settings.data_dir), read_only=True)
    try:
        assert store.count_readings() == report["published_readings"]
    finally:
        store.close()
    assert report["published_messages"] == 3 * 5  # 500 readings per gateway in full batches of 100, none replayed
    assert report["rebirths"] == 0 and report["stalls"] == 0
    latency = report["latency_ms"]
    assert latency["samples"] == 15 and 0 < latency["p50"] <= latency["p99"] < 5000
    assert report["achieved_readings_per_s"] > 0


async def test_without_a_hub_gateways_stall_and_replay_then_a_late_hub_gets_everything(
    mosquitto: int, tmp_path: Path
) -> None:
    options = LoadOptions(
        port=mosquitto,
        gateways=2,
        sensors_per_gateway=10,
        rate_hz=10,
        batch=20,
        max_unacked=100,
        ack_timeout_s=0.3,
        duration_s=5.0,
        drain_s=12.0,
    )
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(render_deployment(options), encoding="utf-8")
    seen: list[LoadReport] = []
    run = asyncio.create_task(run_load(options, on_tick=seen.append))
    deadline = time.monotonic() + 10
    while not (seen and seen[-1].stalls >= 2 and seen[-1].republished_batches >= 10):
        assert time.monotonic() < deadline and not run.done(), seen[-1:]
        await asyncio.sleep(0.05)
    assert all(s.acked_readings == 0 for s in seen), "no hub, so nothing may count as acked"
    assert max(s.unacked_readings for s in seen) <= 2 * options.max_unacked
    assert max(s.max_held_readings for s in seen) <= options.max_unacked
    async with running_hub(mosquitto=mosquitto, deployment=fleet, data_dir=tmp_path / "data") as hub:
        report = await asyncio.wait_for(run, 30)
        assert await hub.metric("anju_readings_stored_total") == report.published_readings
    assert report.published_readings > 0 and report.acked_readings == report.published_readings
    assert report.unacked_readings == 0 and report.skipped_readings > 0
    assert report.max_held_readings <= options.max_unacked
    assert report.republished_batches >= 10


async def test_cmd_rebirth_moves_unacked_batches_to_a_new_session_from_seq_1(mosquitto: int) -> None:
    """The hub's side played by hand: ack the first batch, ask for a rebirth, see the rest under a new session."""
    options = LoadOptions(
        port=mosquitto, sensors_per_gateway=4, rate_hz=10, batch=8, duration_s=1.0, ack_timeout_s=30, drain_s=3
    )
    gateway = options.gateway_ids()[0]
    received: list[Batch] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto, identifier="test-load-hub") as hub:
        await hub.subscribe(subscription(Channel.DATA), qos=1)
        run = asyncio.create_task(run_load(options))
        async with asyncio.timeout(15):
            async for message in hub.messages:
                assert isinstance(message.payload, bytes)
                batch = decode_batch(message.payload, community="load", gateway=gateway)
                assert not isinstance(batch, Rejection), batch
                for reading in batch.readings:
                    kind = KINDS[("gas", "smoke", "temperature", "water-depth")[int(reading.sensor[-4:]) - 1]]
                    assert reading.unit == kind.unit and not any(p.crossed(reading.value) for p in kind.set_points)
                received.append(batch)
                if len(received) == 3:
                    first = received[0]
                    ack = encode_ack(Ack(first.session, 1))
                    await hub.publish(topic("load", gateway, Channel.ACK), ack, qos=1)
                    await asyncio.sleep(0.2)
                    await hub.publish(topic("load", gateway, Channel.CMD, "rebirth"), b"{}", qos=1)
                if len({b.session for b in received}) == 2 and received[-1].seq == 1:
                    break
        report = await run
    old, new = received[0].session, received[-1].session
    assert new > old and received[0].seq == 1
    reborn = [b for b in received if b.session == new]
    assert reborn[0].readings == received[1].readings, "the first unacked batch leads the new session"
    assert report.rebirths == 1 and report.acked_readings == 8
    times: dict[str, int] = {}
    for batch in received[:3]:
        for reading in batch.readings:
            assert reading.time_ms > times.get(reading.sensor, 0), "device times strictly increase per sensor"
            times[reading.sensor] = reading.time_ms


def test_a_full_batch_fits_the_protocol_payload_limit() -> None:
    options = LoadOptions(gateways=9999, sensors_per_gateway=247, kinds=("pressure",), batch=MAX_BATCH)
    assert MAX_BATCH <= MAX_READINGS_PER_BATCH
    readings = [
        Reading(f"load-gw-9999-s{i % 247 + 1:04d}", 1_764_400_000_000 + i * 29, 2_412_345.0, "Pa")
        for i in range(MAX_BATCH)
    ]
    assert len(encode_batch(Batch("load", "load-gw-9999", 2**40, 2**40, tuple(readings)))) <= MAX_PAYLOAD_BYTES
    assert options.batch == MAX_BATCH


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--gateways", "0"], "--gateways"),
        (["--rate", "-5"], "--rate"),
        (["--rate", "nan"], "--rate"),
        (["--batch", str(MAX_READINGS_PER_BATCH + 1)], "--batch"),
        (["--sensors-per-gateway", "300"], "--sensors-per-gateway"),
        (["--duration", "0"], "--duration"),
        (["--kinds", "gas,plutonium"], "--kinds"),
        (["--max-unacked", "10"], "--max-unacked"),
        (["--deployment-only"], "--deployment-only"),
    ],
)
def test_bad_options_are_argparse_errors_naming_the_option(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["load", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: anju-sim load" in err and f"error: {option}" in err, err
