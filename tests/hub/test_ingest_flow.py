"""Flow control of the hub's ingest against a real Mosquitto (issue 4, Ingest): back-pressure with bounded queues,
an alarm that overtakes another gateway's backlog, and a burst larger than the broker's queue.

The hub here is ``Ingest`` itself, on the embedded store, fed by ``anju-sim load`` fleets or by a flood publisher in
its own process (tests/hub/flood.py); a store made slow is the same store behind a commit that sleeps first.
"""

import asyncio
import contextlib
import queue
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from alerts.model import RiskEvent
from firmware_sim.load import LoadOptions, render_deployment, run_load
from hub.config import load_deployment
from hub.demo.broker import find_mosquitto, mosquitto_config
from hub.demo.processes import Child, Line, free_port
from hub.detection.rules import RuleEngine, default_rules
from hub.ingest.intake import WINDOW
from hub.ingest.limits import LimitsPolicy
from hub.ingest.registry import Registry
from hub.ingest.service import Ingest, MqttEndpoint
from hub.metrics import Metrics
from hub.store import ChunkStore
from hub.store.influx import InfluxStore
from hub.store.influx_http import InfluxTarget
from protocol import Batch, GatewayState, Reading, decode_state, encode_batch
from protocol.topics import HUB_STATE_TOPIC
from tests.conftest import listening, require_service

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


class SlowStore:
    """The embedded store behind commits that take ``delay_s`` longer: a hub whose storage falls behind. With
    ``stall_s``, the first commit takes that much longer again: the hub takes nothing for a while, whatever the
    pace at which a loaded machine lets the load generator publish."""

    def __init__(self, inner: ChunkStore, delay_s: float, stall_s: float = 0.0) -> None:
        self.inner = inner
        self.delay_s = delay_s
        self._stall_s = stall_s

    def commit(self, *args: Any, **kwargs: Any) -> int:
        stall, self._stall_s = self._stall_s, 0.0
        time.sleep(self.delay_s + stall)
        return self.inner.commit(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def fleet_registry(options: LoadOptions, directory: Path) -> Registry:
    path = directory / "fleet.yaml"
    path.write_text(render_deployment(options), encoding="utf-8")
    return Registry(load_deployment(path, check_secrets=False))


async def _ignore(events: Sequence[RiskEvent]) -> None:
    return None


@contextlib.asynccontextmanager
async def running_ingest(
    *,
    port: int,
    registry: Registry,
    store: object,
    on_risks: Callable[[Sequence[RiskEvent]], Awaitable[object]] = _ignore,
    client_id: str | None = None,
    **settings: object,
) -> AsyncIterator[Ingest]:
    """``settings``: more ``Ingest`` arguments. Per-gateway limits are off unless given (``limits``), as the load
    fleet's deployment file has them (``firmware_sim.load_plan.render_deployment``): these fleets are no edges.
    ``client_id``: the hub's MQTT client id (default: a new one, so a fresh persistent session)."""
    settings.setdefault("limits", LimitsPolicy(enabled=False))
    ingest = Ingest(
        endpoint=MqttEndpoint(host="127.0.0.1", port=port, client_id=client_id or f"test-hub-{time.monotonic_ns()}"),
        store=store,  # type: ignore[arg-type]
        registry=registry,
        detector=RuleEngine(
            community=registry.community, ruleset=default_rules(), sensors=list(registry.sensors.values())
        ),
        on_risks=on_risks,
        metrics=Metrics(),
        **settings,  # type: ignore[arg-type]
    )
    task = asyncio.create_task(ingest.run(), name="test-hub-ingest")
    try:
        async with asyncio.timeout(10):
            while not ingest.connected:
                assert not task.done(), task
                await asyncio.sleep(0.02)
        yield ingest
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def metric(metrics: Metrics, line_start: str) -> float:
    """The value of the exposition line starting with ``line_start`` (name and labels), 0 when absent."""
    for line in metrics.render().splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def small_queue_broker(tmp_path: Path) -> Iterator[int]:
    """Mosquitto keeping at most 20 queued QoS 1 messages per client: a burst overflows it, as the stock 1,000
    does at district scale (issue 4 measured 63 % lost)."""
    binary = find_mosquitto()
    require_service("mosquitto", binary)
    assert binary is not None
    port = free_port()
    config = mosquitto_config(port=port, directory=tmp_path / "mosquitto", max_queued_messages=20)
    with listening(Child("mosquitto", [binary, "-c", str(config)], queue.Queue[Line]()), port):
        yield port


async def test_a_hub_behind_its_store_holds_a_bounded_backlog_and_stores_every_acked_reading(
    mosquitto: int, tmp_path: Path
) -> None:
    # 200 messages/s offered for 5 s; the hub commits at most 20 messages per 0.2 s: the backlog must wait in
    # the broker, not in the hub (before issue 4, aiomqtt's queue took it all: +98 MiB in 4 s in a flood).
    options = LoadOptions(
        port=mosquitto,
        gateways=4,
        sensors_per_gateway=100,
        rate_hz=50,
        batch=100,
        duration_s=5.0,
        ack_timeout_s=60.0,
        drain_s=25.0,
    )
    registry = fleet_registry(options, tmp_path)
    store = ChunkStore(path=tmp_path / "readings.anju")
    peaks = {"client": 0.0, "inbox": 0.0, "inbox_bytes": 0.0, "paused": 0.0}
    try:
        async with running_ingest(
            port=mosquitto, registry=registry, store=SlowStore(store, 0.2), inbox_capacity=50, batch_messages=20
        ) as ingest:

            async def watch() -> None:
                while True:
                    metrics = ingest.metrics
                    samples = {
                        "client": metric(metrics, 'anju_mqtt_client_queue_messages{connection="routine"}'),
                        "inbox": metric(metrics, "anju_ingest_inbox_messages"),
                        "inbox_bytes": metric(metrics, "anju_ingest_inbox_bytes"),
                        "paused": metric(metrics, 'anju_mqtt_reading_paused{connection="routine"}'),
                    }
                    for name, value in samples.items():
                        peaks[name] = max(peaks[name], value)
                    await asyncio.sleep(0.02)

            watcher = asyncio.create_task(watch())
            try:
                report = await run_load(options)
            finally:
                watcher.cancel()
            waited_s = ingest.metrics.backpressure_seconds.get(lane="routine")
            stored_metric = ingest.metrics.readings_stored.get()
        stored = await asyncio.to_thread(store.count_readings)
    finally:
        store.close()
    assert report.published_readings == 4 * 100 * 50 * 5
    assert waited_s > 1.0, "the store must have held the hub back, or this test shows nothing"
    assert peaks["client"] <= 2 * WINDOW, peaks  # WINDOW, and what one read brings beyond it
    assert peaks["paused"] == 1.0, "the hub stopped reading the socket while its client queue was full"
    assert peaks["inbox"] <= 50 and peaks["inbox_bytes"] <= 50 * 10_000, peaks
    assert report.acked_readings == report.published_readings and report.unacked_readings == 0, report
    assert report.republished_batches == 0, "nothing was replayed: every reading went through the back-pressure"
    assert stored == stored_metric == report.published_readings


async def test_a_replaying_gateway_does_not_delay_another_gateways_alarm(mosquitto: int, tmp_path: Path) -> None:
    options = LoadOptions(port=mosquitto, gateways=2, sensors_per_gateway=100, kinds=("gas",))
    registry = fleet_registry(options, tmp_path)
    replaying, alarming = options.gateway_ids()
    backlog = 6_000
    store = ChunkStore(path=tmp_path / "readings.anju")
    risks: list[tuple[float, RiskEvent]] = []
    paged = asyncio.Event()

    async def on_risks(events: Sequence[RiskEvent]) -> None:
        risks.extend((time.monotonic(), event) for event in events)
        paged.set()

    try:
        async with running_ingest(port=mosquitto, registry=registry, store=store, on_risks=on_risks) as ingest:
            flood = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "tests.hub.flood", str(mosquitto), replaying, str(backlog)],
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                assert flood.stdout is not None
                line = await asyncio.wait_for(flood.stdout.readline(), 30)
                assert line.decode().strip() == f"published {backlog}", line
            finally:
                with contextlib.suppress(ProcessLookupError):
                    flood.kill()
                await flood.wait()
            received = ingest.metrics.messages_received
            assert received.get(channel="data") < backlog * 0.75, "the backlog must still be ahead of the alarm"
            alarm = Reading(f"{alarming}-s0001", time.time_ns() // 1_000_000, 30.0, "%LEL")
            async with aiomqtt.Client("127.0.0.1", mosquitto, identifier=f"test-{alarming}") as gateway:
                sent = time.monotonic()
                body = encode_batch(Batch("load", alarming, 1, 1, (alarm,)))
                await gateway.publish(f"anju/v1/load/{alarming}/alarm", body, qos=1)
                await asyncio.wait_for(paged.wait(), 15)
            data_when_paged = received.get(channel="data")
    finally:
        store.close()
    paged_at, event = risks[0]
    assert event.sensor == alarm.sensor and event.value == 30.0
    assert paged_at - sent <= 1.0, f"alarm took {paged_at - sent:.2f} s from publish to the alert path"
    assert data_when_paged < backlog, "the alarm overtook the backlog (else it only waited its turn)"


def burst(port: int) -> LoadOptions:
    """4 gateways × 100 sensors at 50 Hz for 3 s (150 batches a gateway), all of it allowed out unacked at once:
    publishing never waits, so a broker queue of 20 messages drops most of it and the gateways replay."""
    return LoadOptions(
        port=port,
        gateways=4,
        sensors_per_gateway=100,
        rate_hz=50,
        batch=100,
        duration_s=3.0,
        ack_timeout_s=1.0,
        max_unacked=50_000,
        drain_s=25.0,
    )


async def test_a_burst_larger_than_the_brokers_queue_still_ends_with_every_reading_stored(
    small_queue_broker: int, tmp_path: Path
) -> None:
    options = burst(small_queue_broker)
    registry = fleet_registry(options, tmp_path)
    store = ChunkStore(path=tmp_path / "readings.anju")
    try:
        async with running_ingest(
            port=small_queue_broker,
            registry=registry,
            store=SlowStore(store, 0.3, stall_s=2.0),
            inbox_capacity=50,
            batch_messages=20,
        ) as ingest:
            report = await run_load(options)
            gaps = ingest.metrics.seq_gaps.get()
        stored = await asyncio.to_thread(store.count_readings)
    finally:
        store.close()
    assert gaps > 0, "the broker must have dropped messages of the burst, or this test shows nothing"
    assert report.republished_batches > 0, "the gateways replayed what the hub did not ack"
    assert report.acked_readings == report.published_readings and report.unacked_readings == 0, report
    assert stored == report.published_readings


async def test_a_burst_into_influxdb_with_staged_rounds_stores_and_counts_every_reading_once(
    small_queue_broker: int, influxdb: str, tmp_path: Path
) -> None:
    """The InfluxDB store behind MQTT, rounds staged while the round before commits (slowly): what the broker
    dropped is replayed, and every reading ends up stored, acked and counted exactly once."""
    options = burst(small_queue_broker)
    registry = fleet_registry(options, tmp_path)
    target = InfluxTarget.v1(url=influxdb, database="burst")
    store = InfluxStore(target=target, community=registry.community, meta_path=tmp_path / "meta.sqlite3")
    try:
        async with running_ingest(
            port=small_queue_broker,
            registry=registry,
            store=SlowStore(store, 0.2, stall_s=2.0),
            inbox_capacity=50,
            batch_messages=20,
        ) as ingest:
            report = await run_load(options)
            gaps = ingest.metrics.seq_gaps.get()
            counted = ingest.metrics.readings_stored.get()
        stored = await asyncio.to_thread(store.count_readings)
        marks = await asyncio.to_thread(store.session_marks)
    finally:
        store.close()
    assert gaps > 0, "the broker must have dropped messages of the burst, or this test shows nothing"
    assert report.republished_batches > 0, "the gateways replayed what the hub did not ack"
    assert report.acked_readings == report.published_readings and report.unacked_readings == 0, report
    assert stored == counted == report.published_readings
    assert len(marks) == options.gateways


class Proxy:
    """A TCP relay in front of the broker that can cut one connection the way a network fault does (RST)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.port = 0

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator["Proxy"]:
        server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            for client, broker in self.links:
                client.transport.abort()
                broker.transport.abort()

    def cut(self, index: int) -> None:
        client, broker = self.links[index]
        client.transport.abort()
        broker.transport.abort()

    async def _link(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        broker_in, broker_out = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.links.append((client_out, broker_out))
        await asyncio.gather(self._pipe(client_in, broker_out), self._pipe(broker_in, client_out))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()
        sink.transport.abort()


async def test_the_hub_state_says_offline_when_either_connection_dies_and_when_the_hub_stops(
    mosquitto: int, tmp_path: Path
) -> None:
    registry = fleet_registry(LoadOptions(port=mosquitto, gateways=1, sensors_per_gateway=1), tmp_path)
    store = ChunkStore(path=tmp_path / "readings.anju")
    seen: list[str] = []

    async def changes_to(status: str) -> None:
        """Read the hub's state until it changes (the Will and the hub's own word may repeat a status)."""
        async with asyncio.timeout(15):
            async for message in watcher.messages:
                assert isinstance(message.payload, bytes)
                state = decode_state(message.payload)
                assert isinstance(state, GatewayState), state
                if not seen or seen[-1] != state.status:
                    seen.append(state.status)
                    assert state.status == status, seen
                    return

    try:
        async with (
            aiomqtt.Client("127.0.0.1", mosquitto, identifier="test-hub-state-watcher") as watcher,
            Proxy(mosquitto).serving() as proxy,
        ):
            await watcher.subscribe(HUB_STATE_TOPIC, qos=1)
            async with running_ingest(port=proxy.port, registry=registry, store=store) as ingest:
                await changes_to("online")
                assert len(proxy.links) == 2, "the urgent connection, then the routine one"
                proxy.cut(0)  # the urgent one dies: its Will says offline although the routine one is up
                await changes_to("offline")
                await changes_to("online")  # the hub reconnected both
                assert ingest.connected and len(proxy.links) == 4
                proxy.cut(3)  # now the routine one: the same
                await changes_to("offline")
                await changes_to("online")
            await changes_to("offline")  # a clean stop fires no Will: the hub said it itself
    finally:
        store.close()
    assert seen == ["online", "offline", "online", "offline", "online", "offline"]
