"""Per-gateway limits against a real Mosquitto (issue 8): a flooding gateway next to honest ones, the flooder's data
stored in full once it calms down, its flood alert fired and cleared, an oversize message refused and kept.

The hub is ``Ingest`` itself on the embedded store (tests/hub/test_ingest_flow.py's harness); honest gateways are an
``anju-sim load`` fleet (each replays what the hub did not ack, as an edge does), the flooder a process of its own
(tests/hub/flood_gateway.py). Assertions are on counts and order, never on how long anything took.
"""

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from alerts.model import RiskEvent
from firmware_sim.load import LoadOptions, LoadReport, run_load
from hub.ingest.budget import BYTES_PER_READING, Budget
from hub.ingest.limits import LimitsPolicy, flood_key
from hub.metrics import Metrics
from hub.store import ChunkStore
from protocol import Batch, Reading, encode_batch
from tests.hub.flood_gateway import READINGS_PER_BATCH
from tests.hub.harness import T0, eventually, gateway, running_hub
from tests.hub.test_ingest_flow import SlowStore, fleet_registry, metric, running_ingest

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def tight(readings_per_s: float, readings_burst: float) -> Budget:
    """A budget of ``readings_per_s`` in 100-reading batches (bytes and messages to match, none binding first)."""
    return Budget(
        readings_per_s=readings_per_s,
        readings_burst=readings_burst,
        bytes_per_s=readings_per_s * BYTES_PER_READING,
        bytes_burst=max(readings_burst * BYTES_PER_READING, 262_144),
        messages_per_s=readings_per_s / READINGS_PER_BATCH,
        messages_burst=readings_burst / READINGS_PER_BATCH,
    )


@contextlib.asynccontextmanager
async def flooding(port: int, gateway: str, messages: int, *options: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """The flooder running (it said ``flooding``); killed on the way out if it has not ended."""
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.hub.flood_gateway", str(port), gateway, str(messages), *options],
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.decode().strip() == "flooding", line
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def said(process: asyncio.subprocess.Process, timeout_s: float = 60.0) -> str:
    assert process.stdout is not None
    return (await asyncio.wait_for(process.stdout.readline(), timeout_s)).decode().strip()


@dataclass
class Outcome:
    report: LoadReport
    flood_going: bool
    """True when every honest reading had been acked while the flooder was still publishing."""
    metrics: Metrics
    stored: int = 0
    paged: list[RiskEvent] = field(default_factory=list)


async def flood_next_to_honest(port: int, directory: Path, *, limited: bool, channel: str = "data") -> Outcome:
    """Three honest gateways (100 sensors at 5 Hz each, 4 s, the edge's 10 s ack timeout) and a flooder (4,800
    batches of 100 readings at 800 a second: 80,000 readings/s, for 6 s) into a hub whose store commits at most ~40
    messages each 0.25 s (~150 a second): the flood alone is five times what it can commit. ``limited``: the
    flooder's budget is 5,000 readings/s (50 of its batches a second); else no limits at all. With limits on, an
    alarm of the flooder's own goes out while its data is deferred, and the run goes on until all is read.
    ``channel="alarm"``: the flood goes to the alarm topic, which the hub serves before all data, against an alarm
    budget of 2 messages a second (what this slow store can spare beside the data)."""
    registry = fleet_registry(LoadOptions(port=port, gateways=4, sensors_per_gateway=100, kinds=("gas",)), directory)
    *honest_ids, flooder = sorted(registry.gateways)
    honest = LoadOptions(
        port=port,
        gateways=3,
        sensors_per_gateway=100,
        kinds=("gas",),
        rate_hz=5,
        batch=100,
        duration_s=4.0,
        ack_timeout_s=10.0,
        drain_s=90.0,
    )
    assert honest.gateway_ids() == honest_ids
    # Alarms at 2 a second (burst 4): each urgent round is committed at once, and this store takes 0.25 s a commit.
    budget = dataclasses.replace(tight(5_000, 10_000), alarm_messages_per_s=2, alarm_messages_burst=4)
    policy = LimitsPolicy(overrides={flooder: budget}, enabled=limited)
    store = ChunkStore(path=directory / "readings.anju")
    paged = asyncio.Event()
    pages: list[RiskEvent] = []

    async def on_risks(events: Sequence[RiskEvent]) -> None:
        pages.extend(events)
        paged.set()

    try:
        async with (
            running_ingest(
                port=port,
                registry=registry,
                store=SlowStore(store, 0.25),
                on_risks=on_risks,
                limits=policy,
                inbox_capacity=50,
                batch_messages=40,
            ) as ingest,
            flooding(port, flooder, FLOOD_MESSAGES, "--rate", "800", "--channel", channel) as flood,
        ):
            report = await run_load(honest)
            outcome = Outcome(report, flood.returncode is None, ingest.metrics, paged=pages)
            if not limited:
                return outcome
            if channel == "data":
                # An alarm of the flooder itself, while its data is being deferred: no data budget holds it back.
                alarm = Reading(f"{flooder}-s0001", now_ms(), 30.0, "%LEL")
                async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-alarm-{flooder}") as client:
                    body = encode_batch(Batch("load", flooder, 1, FLOOD_MESSAGES + 1, (alarm,)))
                    await client.publish(f"anju/v1/load/{flooder}/alarm", body, qos=1)
                    await asyncio.wait_for(paged.wait(), 30)
            assert await said(flood) == f"published {FLOOD_MESSAGES}"

            async def all_read() -> bool:
                received = ingest.metrics.messages_received.get(channel="data")
                if channel == "alarm":
                    received += ingest.metrics.messages_received.get(channel="alarm")
                return received >= report.published_messages + FLOOD_MESSAGES and len(ingest.inbox) == 0

            await eventually(all_read, timeout_s=60)
            deferred = ingest.metrics.gateway_throttled_readings.get(gateway=flooder)
            offered = report.published_readings + FLOOD_MESSAGES * READINGS_PER_BATCH + (channel == "data")

            async def all_stored_or_deferred() -> bool:  # the rounds taken from the inbox are committed too
                return await asyncio.to_thread(store.count_readings) + deferred == offered

            await eventually(all_stored_or_deferred, timeout_s=30)
        outcome.stored = await asyncio.to_thread(store.count_readings)
        return outcome
    finally:
        store.close()


FLOOD_MESSAGES = 4_800


async def test_a_flooding_gateway_is_held_to_its_budget_while_the_others_readings_and_its_own_alarm_flow(
    mosquitto: int, tmp_path: Path
) -> None:
    outcome = await flood_next_to_honest(mosquitto, tmp_path, limited=True)
    report, metrics = outcome.report, outcome.metrics
    flooder = "load-gw-0004"
    assert report.acked_readings == report.published_readings == 3 * 100 * 5 * 4 and report.unacked_readings == 0
    assert report.republished_batches == 0, "an honest batch waited a whole ack timeout (10 s) for its hub-ack"
    assert [metrics.gateway_throttled_messages.get(gateway=f"load-gw-000{i}") for i in (1, 2, 3)] == [0, 0, 0]
    assert outcome.flood_going, "every honest reading was acked while the flood was still going"
    admitted = outcome.stored - report.published_readings - 1  # the alarm's reading
    deferred = metrics.gateway_throttled_readings.get(gateway=flooder)
    assert admitted + deferred == FLOOD_MESSAGES * READINGS_PER_BATCH, "each flooded reading: stored or deferred"
    assert outcome.stored == metrics.readings_stored.get(), "and none stored twice"
    assert 0 < admitted < deferred / 4, "the flooder got its budget's worth, far from all it sent"
    assert metrics.seq_gaps.get() > 0, "what was deferred left holes below the flooder's acks: it was never acked"
    alarm = [(event.sensor, event.value) for event in outcome.paged if event.sensor == f"{flooder}-s0001"]
    assert alarm[:1] == [(f"{flooder}-s0001", 30.0)]


async def test_without_limits_the_same_flood_holds_the_others_back_until_it_is_through(
    mosquitto: int, tmp_path: Path
) -> None:
    """The test above can fail: with no budget the honest batches queue behind the flood in the broker's queue
    for the hub, and are acked only after the flood has ended."""
    outcome = await flood_next_to_honest(mosquitto, tmp_path, limited=False)
    assert outcome.report.acked_readings == outcome.report.published_readings, "acked in the end (drain 90 s)"
    assert not outcome.flood_going, "the honest gateways waited for the flood"
    assert outcome.metrics.gateway_throttled_messages.get(gateway="load-gw-0004") == 0


async def test_a_gateway_flooding_the_alarm_topic_is_held_to_its_alarm_budget_while_the_others_data_flows(
    mosquitto: int, tmp_path: Path
) -> None:
    """Alarms jump every queue in the hub; without their own budget this flood would hold everyone's data back as
    the data flood does without limits (the test above)."""
    outcome = await flood_next_to_honest(mosquitto, tmp_path, limited=True, channel="alarm")
    report, metrics = outcome.report, outcome.metrics
    flooder = "load-gw-0004"
    assert report.acked_readings == report.published_readings and report.unacked_readings == 0
    assert report.republished_batches == 0, "an honest batch waited a whole ack timeout (10 s) for its hub-ack"
    assert outcome.flood_going, "every honest reading was acked while the alarm flood was still going"
    admitted = outcome.stored - report.published_readings
    deferred = metrics.gateway_throttled_readings.get(gateway=flooder)
    assert admitted + deferred == FLOOD_MESSAGES * READINGS_PER_BATCH, "each flooded reading: stored or deferred"
    assert 0 < admitted < deferred / 4, "the flooder's alarms got their budget's worth, far from all it sent"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_a_flooder_that_calms_down_has_everything_stored_once_and_its_alert_fires_and_clears(
    mosquitto: int, tmp_path: Path
) -> None:
    registry = fleet_registry(
        LoadOptions(port=mosquitto, gateways=1, sensors_per_gateway=100, kinds=("gas",)), tmp_path
    )
    [flooder] = registry.gateways
    messages = 800  # 80,000 readings at once against 10,000 readings/s with a burst of 20,000
    policy = LimitsPolicy(default=tight(10_000, 20_000), alert_after_s=1.0, calm_s=2.0)
    store = ChunkStore(path=tmp_path / "readings.anju")
    events: list[RiskEvent] = []

    async def on_risks(batch: Sequence[RiskEvent]) -> None:
        events.extend(batch)

    try:
        async with running_ingest(port=mosquitto, registry=registry, store=store, limits=policy) as ingest:
            sweeping = asyncio.create_task(ingest.limits.run(on_risks=on_risks, period_s=0.1))
            try:
                async with flooding(mosquitto, flooder, messages, "--replay", "1.0", "--deadline", "90") as flood:
                    assert await said(flood) == f"published {messages}"
                    assert await said(flood, 100) == f"acked {messages}"

                async def cleared() -> bool:
                    return any(event.status == "cleared" for event in events)

                await eventually(cleared, timeout_s=30)
            finally:
                sweeping.cancel()
            metrics = ingest.metrics
            deferred = metrics.gateway_throttled_messages.get(gateway=flooder)
            counted = metrics.readings_stored.get()
            flagged = metric(metrics, f'anju_gateway_over_budget{{gateway="{flooder}"}}')
        stored = await asyncio.to_thread(store.count_readings)
        marks = await asyncio.to_thread(store.session_marks)
    finally:
        store.close()
    assert deferred > 0, "the flood went over the budget, or this test shows nothing"
    assert stored == counted == messages * READINGS_PER_BATCH, "every reading stored, each once"
    assert [(mark.gateway, mark.session, mark.acked_seq) for mark in marks] == [(flooder, 1, messages)]
    key = flood_key("load", flooder)
    assert [(event.key, event.status) for event in events] == [(key, "firing"), (key, "cleared")], "no flapping"
    assert events[0].rule == "rate-limit" and events[0].kind == "gateway" and events[0].grade.name == "IV"
    assert flagged == 0.0


async def test_a_message_over_its_gateways_size_limit_is_refused_counted_and_kept_as_a_dead_letter(
    mosquitto: int, tmp_path: Path
) -> None:
    registry = fleet_registry(
        LoadOptions(port=mosquitto, gateways=1, sensors_per_gateway=100, kinds=("gas",)), tmp_path
    )
    [gateway] = registry.gateways
    policy = LimitsPolicy(overrides={gateway: Budget(max_message_bytes=16_384)})
    store = ChunkStore(path=tmp_path / "readings.anju")
    sensors = [f"{gateway}-s{s:04d}" for s in range(1, 101)]
    base_ms = now_ms() - 60_000

    def body(seq: int, count: int) -> bytes:
        readings = tuple(Reading(sensors[i % 100], base_ms + seq * 1000 + i, 1.0, "%LEL") for i in range(count))
        return encode_batch(Batch("load", gateway, 1, seq, readings))

    big = body(2, 400)
    assert len(big) > 16_384
    try:
        async with (
            running_ingest(port=mosquitto, registry=registry, store=store, limits=policy) as ingest,
            aiomqtt.Client("127.0.0.1", mosquitto, identifier=f"test-{gateway}") as client,
        ):
            await client.subscribe(f"anju/v1/load/{gateway}/ack", qos=1)
            for payload in (body(1, 100), big, body(3, 100)):
                await client.publish(f"anju/v1/load/{gateway}/data", payload, qos=1)

            async def dead_letters() -> list[object]:
                return await asyncio.to_thread(store.dead_letters, 10)

            [letter] = await eventually(dead_letters, timeout_s=15)

            async def both_stored() -> bool:
                return await asyncio.to_thread(store.count_readings) == 200

            await eventually(both_stored, timeout_s=15)
            metrics = ingest.metrics
            refused = metrics.payloads_rejected.get(reason="oversized")
            oversize = metrics.gateway_oversize.get(gateway=gateway)
        stored = await asyncio.to_thread(store.count_readings)
        marks = await asyncio.to_thread(store.session_marks)
    finally:
        store.close()
    assert (letter.reason, letter.topic) == ("oversized", f"anju/v1/load/{gateway}/data")  # type: ignore[attr-defined]
    assert f"gateway {gateway}: {len(big)} bytes > its max_message_bytes 16384" in letter.detail  # type: ignore[attr-defined]
    assert letter.payload == big[:16_384]  # type: ignore[attr-defined]
    assert refused == oversize == 1
    assert stored == 200, "the batches around it were stored"
    assert [mark.acked_seq for mark in marks] == [1], "never acked past the refused batch: the gateway keeps it"


def with_own_limits(source: Path, target: Path, gateway_id: str, limits: str) -> Path:
    text = source.read_text(encoding="utf-8")
    marker = f"  - id: {gateway_id}\n"
    assert marker in text
    target.write_text(text.replace(marker, marker + f"    limits: {limits}\n"), encoding="utf-8")
    return target


async def test_the_hub_takes_a_gateways_limits_from_the_deployment_file(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    """The whole hub (``anju-hub serve``'s app): ``limits`` under a gateway in the deployment file applies to it."""
    source = with_own_limits(demo_deployment, tmp_path / "source.yaml", "gw-b1", "{max_message_bytes: 4096}")
    async with (
        running_hub(mosquitto=mosquitto, deployment=source, data_dir=tmp_path / "data") as hub,
        gateway(hub.mqtt_port) as gw,
    ):
        await gw.publish(1, Reading("gas-b1-101", T0, 1.0, "%LEL"))
        assert (await gw.ack()).seq == 1
        readings = tuple(Reading("gas-b1-101", T0 + i, 1.0, "%LEL") for i in range(1, 101))
        await gw.publish(2, *readings)  # ~5 KB
        await gw.publish(3, Reading("gas-b1-101", T0 + 1_000, 1.0, "%LEL"))
        assert (await gw.ack()).seq == 1, "not past the refused batch"

        async def letters() -> list[dict[str, str]]:
            return [x for x in (await hub.api.get("/api/v1/dead-letters")).json() if x["reason"] == "oversized"]

        [letter] = await eventually(letters)
        assert "gateway gw-b1:" in letter["detail"] and "> its max_message_bytes 4096" in letter["detail"]
        assert await hub.metric_line('anju_gateway_oversize_total{gateway="gw-b1"}') == 1
        assert await hub.metric_line('anju_gateway_over_budget{gateway="gw-b1"}') == 0
