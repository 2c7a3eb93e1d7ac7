"""``anju-sim load``: a fleet of simulated gateways publishing batched SenML straight to the broker.

For benchmarks and soak tests of the hub (issue 4, "Load generator"). Each gateway behaves like an edge:
retained birth on ``state`` with its own session (Unix time at start + index) and an offline Will; batches
numbered seq 1, 2, 3 … per session; every batch kept in memory until the hub acks a seq at or above it;
all unacked batches republished in seq order after ``ack_timeout_s`` without an advancing ack (and on every
reconnect); on ``cmd/rebirth`` a new session whose first seq is 1 again carries the unacked batches.
Memory is bounded: a gateway holding ``max_unacked`` readings stops producing (a *stall*, counted) and the
sample rounds it misses are skipped (counted), not caught up later in a burst.

One paho client per gateway, each with its own network thread: the Will and the birth belong to a
connection, so only this way does the broker announce each simulated gateway's death like a real one's, and
the hub sees per-gateway connections as in the field. A few hundred gateways (threads) are fine; beyond that
run several processes. paho's callbacks only hand topic and payload to the asyncio loop, which owns all state.

Values stay on the safe side of every set point of ``protocol.kinds`` so detection stays quiet; device times
are ``t0 + floor(round * 1000 / rate)`` ms, strictly increasing per sensor (rate ≤ 1000 Hz).
"""

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.load_plan import (
    DEFAULT_KINDS,
    MAX_BATCH,
    MAX_RATE_HZ,
    MAX_SENSORS_PER_GATEWAY,
    LoadError,
    LoadOptions,
    LoadReport,
    render_deployment,
    write_report,
)
from protocol import Ack, Batch, GatewayState, Reading, Reply, decode_ack, encode_batch, encode_reply, encode_state
from protocol.ids import is_valid_id
from protocol.kinds import KINDS
from protocol.topics import Channel, subscription, topic
from protocol.transport import send_at_once

__all__ = [
    "DEFAULT_KINDS",
    "MAX_BATCH",
    "MAX_RATE_HZ",
    "MAX_SENSORS_PER_GATEWAY",
    "LoadError",
    "LoadOptions",
    "LoadReport",
    "render_deployment",
    "run_load",
    "write_report",
]

log = logging.getLogger("firmware_sim.load")

_MAX_BATCH_DELAY_S = 1.0
"""A partial batch goes out when its oldest reading is this old (slow fleets still flow)."""
_TICK_S = 0.02
_CONNECT_TIMEOUT_S = 10.0
_LATENCY_SAMPLES = 200_000

# kind -> (typical value, half-spread, decimals): plausible quiet readings, all below the first set point.
_QUIET: dict[str, tuple[float, float, int]] = {
    "gas": (1.0, 0.8, 2),
    "smoke": (0.02, 0.015, 3),
    "temperature": (24.0, 3.0, 2),
    "water-depth": (0.005, 0.005, 3),
    "co": (3.0, 2.0, 1),
    "residual-current": (0.05, 0.03, 3),
    "cable-temperature": (30.0, 4.0, 2),
    "pressure": (300_000.0, 20_000.0, 0),
    "manhole-tilt": (1.0, 0.8, 2),
    "structural-tilt": (0.0005, 0.0002, 6),
    "water-meter": (120.0, 0.5, 3),
}


@dataclass(slots=True)
class _Held:
    readings: tuple[Reading, ...]
    first_sent: float | None = None
    """Monotonic time of the first publish (kept across rebirths): latency is publish -> hub-ack."""
    payload: bytes | None = None


@dataclass(slots=True)
class _Counters:
    published_readings: int = 0
    published_messages: int = 0
    acked_readings: int = 0
    republished_batches: int = 0
    rebirths: int = 0
    stalls: int = 0
    skipped_readings: int = 0
    max_held: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    latency_seen: int = 0


class _Gateway:
    """One simulated gateway: its paho client, its session, and the batches it still holds."""

    def __init__(self, options: LoadOptions, index: int, gateway: str, counters: _Counters, t0_ms: int) -> None:
        self.options, self.index, self.id, self.counters, self.t0_ms = options, index, gateway, counters, t0_ms
        self.session = int(time.time()) + index
        self.next_seq = 1
        self.held: dict[int, _Held] = {}  # seq -> batch, in seq order
        self.held_readings = 0
        self.buffer: list[Reading] = []
        self.buffer_since = 0.0
        self.rounds = 0
        self.stalled = False
        self.connected = False
        self.deadline: float | None = None
        self.rng = random.Random(options.seed * 100_003 + index)
        self.models: list[tuple[str, str, float, float, int]] = []  # sensor, unit, typical, half-spread, decimals
        for sensor, kind in options.sensors(gateway):
            unit = KINDS[kind].unit
            typical, spread, decimals = _QUIET.get(kind, (0.0, 0.0, 0))  # 0: flags idle, no fallback needed
            self.models.append((sensor, unit, typical + self.rng.uniform(-spread, spread) / 2, spread / 2, decimals))
        self.data_topic = topic(options.community, gateway, Channel.DATA)
        self.state_topic = topic(options.community, gateway, Channel.STATE)
        self.loop = asyncio.get_running_loop()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"anju-load-{gateway}-{time.monotonic_ns() % 10**9}",
            clean_session=True,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.will_set(self.state_topic, self._state("offline"), qos=1, retain=True)
        if options.username:
            self.client.username_pw_set(options.username, options.password)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho's thread: hand over to the loop ----------------------------------------------------------------

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            log.warning("broker refused gateway %s: %s", self.id, reason)
            return
        send_at_once(client.socket())
        client.publish(self.state_topic, self._state("online"), qos=1, retain=True)
        community = self.options.community
        commands = subscription(Channel.CMD, community=community, gateway=self.id)
        client.subscribe([(topic(community, self.id, Channel.ACK), 1), (commands, 1)])
        self.loop.call_soon_threadsafe(self._connected)

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        self.loop.call_soon_threadsafe(self._disconnected)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        self.loop.call_soon_threadsafe(self._message, message.topic, bytes(message.payload))

    # -- the loop's side ---------------------------------------------------------------------------------------

    def _state(self, status: str) -> bytes:
        return encode_state(GatewayState(status, self.session, time.time()))  # type: ignore[arg-type]

    def _disconnected(self) -> None:
        self.connected = False

    def _connected(self) -> None:
        self.connected = True
        self.replay(time.monotonic())  # the broker may have lost what was in flight: replay, as an edge does

    def _message(self, name: str, payload: bytes) -> None:
        if name.endswith("/ack"):
            ack = decode_ack(payload)
            if isinstance(ack, Ack) and ack.session == self.session:
                self.acked(ack.seq, time.monotonic())
            return
        command = name.rsplit("/", 1)[-1]
        if not is_valid_id(command):
            return
        if command == "rebirth":
            self.rebirth()
            return
        try:
            body = json.loads(payload) if payload.strip() else {}
        except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
            body = {}
        body = body if isinstance(body, dict) else {}
        now = time.time()
        if command == "time" and isinstance(body.get("hub_time"), int | float):
            reply = Reply("time", True, now, "load generator clock", skew_s=now - float(body["hub_time"]))
        elif command == "ping":
            ping_id = body.get("id")
            reply = Reply("ping", True, now, "pong", id=ping_id if isinstance(ping_id, str) else None)
        else:
            reply = Reply(command, False, now, "not supported by the load generator")
        community = self.options.community
        self.client.publish(topic(community, self.id, Channel.REPLY, command), encode_reply(reply), qos=1)

    def acked(self, seq: int, now: float) -> None:
        advanced = False
        for held_seq in list(self.held):
            if held_seq > seq:
                break
            batch = self.held.pop(held_seq)
            advanced = True
            self.held_readings -= len(batch.readings)
            self.counters.acked_readings += len(batch.readings)
            if batch.first_sent is not None:
                self._latency((now - batch.first_sent) * 1000.0)
        if advanced:
            self.deadline = now + self.options.ack_timeout_s if self.held else None

    def _latency(self, value_ms: float) -> None:
        """Reservoir sampling: a soak test of hours keeps a fixed-size, unbiased sample."""
        counters = self.counters
        counters.latency_seen += 1
        if len(counters.latencies_ms) < _LATENCY_SAMPLES:
            counters.latencies_ms.append(value_ms)
        else:
            slot = self.rng.randrange(counters.latency_seen)
            if slot < _LATENCY_SAMPLES:
                counters.latencies_ms[slot] = value_ms

    def rebirth(self) -> None:
        """A new session from seq 1 carrying every unacked batch, in order (the hub asked: it lost the start)."""
        self.counters.rebirths += 1
        self.session = max(self.session + 1, int(time.time()) + self.index)
        batches = list(self.held.values())
        self.held = {}
        for seq, batch in enumerate(batches, start=1):
            batch.payload = None
            self.held[seq] = batch
        self.next_seq = len(batches) + 1
        log.info("gateway %s: rebirth as session %d with %d unacked batches", self.id, self.session, len(batches))
        if self.connected:
            self.client.publish(self.state_topic, self._state("online"), qos=1, retain=True)
        self.replay(time.monotonic())

    def produce(self, now: float, elapsed_s: float, total_rounds: int) -> None:
        """Take every sample round due by ``elapsed_s``; skip (and count) rounds while holding too much."""
        due = min(total_rounds, math.floor(elapsed_s * self.options.rate_hz) + 1)
        size = len(self.models)
        limit = self.options.max_unacked
        rng = self.rng.random
        while self.rounds < due:
            index = self.rounds
            self.rounds += 1
            if self.held_readings + size > limit:
                self.counters.skipped_readings += size
                if not self.stalled:
                    self.stalled = True
                    self.counters.stalls += 1
                continue
            self.stalled = False
            time_ms = self.t0_ms + math.floor(index * 1000 / self.options.rate_hz)
            if not self.buffer:
                self.buffer_since = now
            self.buffer.extend(
                Reading(sensor, time_ms, round(typical + spread * (2 * rng() - 1), decimals), unit)
                for sensor, unit, typical, spread, decimals in self.models
            )
            self.held_readings += size
            self.counters.max_held = max(self.counters.max_held, self.held_readings)

    def cut(self, now: float, *, force: bool) -> None:
        """Turn buffered readings into batches and publish them: full ones, or a partial one that waited."""
        size = self.options.batch
        while len(self.buffer) >= size or (self.buffer and (force or now - self.buffer_since >= _MAX_BATCH_DELAY_S)):
            readings, self.buffer = tuple(self.buffer[:size]), self.buffer[size:]
            self.buffer_since = now
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            self.held[seq] = _Held(readings)
            self._publish(seq, self.held[seq], now)
            if self.deadline is None:
                self.deadline = now + self.options.ack_timeout_s

    def replay(self, now: float) -> None:
        """Republish every held batch in seq order (only while connected; a reconnect replays anyway)."""
        if not self.connected:
            return
        for seq, batch in self.held.items():
            if batch.first_sent is not None:
                self.counters.republished_batches += 1
            self._publish(seq, batch, now)
        self.deadline = now + self.options.ack_timeout_s if self.held else None

    def check_replay(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline:
            self.replay(now)

    def _publish(self, seq: int, batch: _Held, now: float) -> None:
        if not self.connected:
            return
        if batch.payload is None:
            batch.payload = encode_batch(Batch(self.options.community, self.id, self.session, seq, batch.readings))
        info = self.client.publish(self.data_topic, batch.payload, qos=self.options.qos)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        self.counters.published_messages += 1
        if batch.first_sent is None:
            batch.first_sent = now
            self.counters.published_readings += len(batch.readings)

    def start(self) -> None:
        self.client.connect_async(self.options.host, self.options.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        """Blocking: say offline (retained, as a clean shutdown), disconnect, end paho's thread."""
        if self.connected:
            info = self.client.publish(self.state_topic, self._state("offline"), qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                time.sleep(0.01)
        self.client.disconnect()
        self.client.loop_stop()


async def run_load(
    options: LoadOptions, *, stop: asyncio.Event | None = None, on_tick: Callable[[LoadReport], None] | None = None
) -> LoadReport:
    """Run the fleet for ``duration_s``, then drain for up to ``drain_s``; returns the counters.

    ``stop`` ends production early (SIGINT); ``on_tick`` sees a snapshot about every 20 ms (tests watch
    the bound hold while no hub acks). Raises LoadError when the broker does not accept the connections.
    """
    counters = _Counters()
    t0_ms = time.time_ns() // 1_000_000
    fleet = [_Gateway(options, i, g, counters, t0_ms) for i, g in enumerate(options.gateway_ids())]
    stop = stop or asyncio.Event()
    for gateway in fleet:
        gateway.start()
    try:
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while not all(g.connected for g in fleet):
            if time.monotonic() > deadline:
                missing = sum(not g.connected for g in fleet)
                raise LoadError(
                    f"{missing} of {len(fleet)} gateways could not connect to {options.host}:{options.port}"
                )
            await asyncio.sleep(0.05)
        log.info("%d gateways connected; publishing for %g s", len(fleet), options.duration_s)
        total_rounds = math.ceil(options.duration_s * options.rate_hz)
        start = time.monotonic()

        def snapshot() -> LoadReport:
            elapsed_s = min(time.monotonic() - start, options.duration_s)
            return _report(counters, fleet, options, elapsed_s, latencies=False)

        while not stop.is_set() and (now := time.monotonic()) - start < options.duration_s:
            for gateway in fleet:
                gateway.produce(now, now - start, total_rounds)
                gateway.cut(now, force=False)
                gateway.check_replay(now)
            if on_tick is not None:
                on_tick(snapshot())
            await asyncio.sleep(_TICK_S)
        now = time.monotonic()
        for gateway in fleet:
            if not stop.is_set():
                gateway.produce(now, options.duration_s, total_rounds)
            gateway.cut(now, force=True)
        production_s = time.monotonic() - start  # to the last first publish: a generator behind shows it here
        drain_until = now + options.drain_s
        while any(g.held for g in fleet) and (now := time.monotonic()) < drain_until:
            for gateway in fleet:
                gateway.check_replay(now)
            if on_tick is not None:
                on_tick(snapshot())
            await asyncio.sleep(_TICK_S)
        return _report(counters, fleet, options, production_s)
    finally:
        await asyncio.gather(*(asyncio.to_thread(g.stop) for g in fleet))


def _report(
    counters: _Counters, fleet: Sequence[_Gateway], options: LoadOptions, production_s: float, *, latencies: bool = True
) -> LoadReport:
    return LoadReport(
        published_readings=counters.published_readings,
        published_messages=counters.published_messages,
        acked_readings=counters.acked_readings,
        republished_batches=counters.republished_batches,
        rebirths=counters.rebirths,
        stalls=counters.stalls,
        skipped_readings=counters.skipped_readings,
        unacked_readings=sum(g.held_readings for g in fleet),
        max_held_readings=counters.max_held,
        held_limit=options.max_unacked,
        production_s=round(production_s, 3),
        latencies_ms=list(counters.latencies_ms) if latencies else [],
    )
