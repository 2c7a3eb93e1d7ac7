"""The hub's MQTT ingest: receive, commit in batches, detect, hand risks to alerts, hub-ack.

Two broker connections (``_session``): an urgent one for ``alarm`` and ``state``, a routine one for the rest, both
subscribed to this hub's community only (``anju/v1/{community}/+/…``): one hub process per community shares a broker.
Named tasks under one TaskGroup: a receiver per connection puts messages into the bounded ``Inbox`` (urgent
lane, or the routine lane taken round-robin per gateway) and PUBACKs each only once the inbox holds it, so a
full inbox stops the broker rather than growing a queue in the client (``hub.ingest.intake``); the committer
takes a round — urgent messages alone, or routine ones up to ``batch_messages`` and ``round_bytes`` — validates
and dedups it, writes readings + dead letters + session marks in one store transaction, and only
then runs detection and publishes each touched gateway session's highest contiguous seq on its ``ack`` topic.
Messages still in the inbox when a broker connection drops are committed and acknowledged after the reconnect.

Before a routine message takes room in the inbox, its gateway's budget judges it (``hub.ingest.limits``): over
budget it is deferred — PUBACKed but neither stored nor acked, so the gateway replays it — and oversize it is
refused; a flooding gateway cannot hold the others up behind it. Alarms are judged against an alarm budget of their
own (no data holds them back), births never.

The gateways' own ``health`` and their ``reply/{name}`` answers go the same way (routine lane, judged in the
round, bad ones counted and dead-lettered, the latest health stored with the round): ``hub.ingest.telemetry``.

Another named task checks the gateways' clocks: ``cmd/time`` on each birth and every ``time_check_interval_s``
after it, the skew taken from the matching ``reply/time`` (``hub.ingest.timecheck``).
"""

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import aiomqtt
import numpy as np
import numpy.typing as npt

from alerts.model import RiskEvent
from hub.detection.health import SensorHealth
from hub.detection.observations import Observations
from hub.ingest.inbox import Inbox, Received
from hub.ingest.intake import Intake, publish_nowait
from hub.ingest.latest import LatestValues
from hub.ingest.ledger import SessionLedger
from hub.ingest.limits import GatewayLimits, LimitsPolicy, Verdict
from hub.ingest.liveness import Liveness
from hub.ingest.registry import Registry, SensorInfo
from hub.ingest.telemetry import GatewayTelemetry, judge_health, judge_reply
from hub.ingest.timecheck import CLOCK_SKEW_WARN_S, TimeChecks
from hub.ingest.validate import Accepted, check_origin, inspect_message
from hub.metrics import Metrics
from hub.store.base import DeadLetter, HealthRecord, ReadingColumns, ReadingFlag, ReadingStore
from protocol import Ack, GatewayState, Rejection, decode_state, encode_ack, encode_state, parse_topic
from protocol.topics import HUB_STATE_TOPIC, Channel, subscription, topic

__all__ = ["Ingest", "MqttEndpoint"]

log = logging.getLogger("anju.hub.ingest")


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """The broker and how the hub logs in to it.

    The hub has two sessions, ``{client_id}`` and ``{client_id}-urgent``; two hubs on one broker need distinct
    client ids, or each connect takes the other's session over (``HubSettings.client_id`` derives one per
    community). With a ``username`` the urgent one logs in as ``{username}-urgent``: a broker that takes each
    client's id from its user name (``use_username_as_clientid``, deploy/mosquitto/secure.conf, so no client can take
    over another's session) needs a user per session; ``anju-hub provision init`` creates both with one password.
    There the user names are the client ids, so two hubs need two pairs of users (not provisioned yet).
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    client_id: str = "anju-hub"
    keepalive_s: int = 30
    tls: ssl.SSLContext | None = None
    """TLS to the broker (its certificate checked against the CA, and the host name), or plain TCP when None."""

    def session_user(self, identifier: str) -> str | None:
        """The user name of the session whose client id is ``identifier``."""
        if self.username is None or identifier == self.client_id:
            return self.username
        return f"{self.username}{identifier.removeprefix(self.client_id)}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


FUTURE_SKEW_MS = 5 * 60_000
"""A device time this far ahead of the hub's clock is a wrong clock, not transit or jitter (ms)."""
PAST_SKEW_MS = 30 * 86_400_000
"""Older than the default raw retention (ms): a week-long outage replays a week (edge/outbox.py keeps what fits its
byte bound), a month is far more likely a clock that jumped back; stored, flagged and reported, not judged."""

_CHANNELS = frozenset({"data", "alarm", "state", "health", "reply"})
_URGENT_CHANNELS = (Channel.ALARM, Channel.STATE)
_ROUTINE_CHANNELS = (Channel.DATA, Channel.HEALTH, Channel.REPLY)
_LANES = ("urgent", "routine")


def _channel(name: str) -> str:
    """The channel level of ``anju/v1/{community}/{gateway}/{channel}[/…]``, or ``other``."""
    parts = name.split("/", 5)
    return parts[4] if len(parts) > 4 and parts[4] in _CHANNELS else "other"


PREPARE_SLICE = 32
"""Messages (~3,200 readings, ~8 ms of decoding) between two yields of a round's preparation to the event loop."""
ROUND_GRACE_S = 30.0
"""How long a dropped connection or a stopping hub waits for the rounds already taken to be committed."""


@dataclass(frozen=True, slots=True)
class _Flight:
    """A round under way: set ``detected`` once its risks went to alerts; ``done`` once committed and acked."""

    detected: asyncio.Event
    done: asyncio.Future[None]


class RoundDetector(Protocol):
    """What judges an ingest round's readings (``hub.detection.layers.DetectionLayers``; a rules engine alone)."""

    def observe_round(self, seen: Observations) -> list[RiskEvent]: ...


@dataclass(frozen=True, slots=True)
class _Round:
    """One round taken from the inbox, decoded and validated, waiting for its commit."""

    rows: ReadingColumns
    sensor_rows: npt.NDArray[np.intp]
    """Registry row of each reading in ``rows`` (liveness)."""
    judged: Observations
    batches: list[tuple[str, int, int, Channel]]
    """(gateway, session, seq, channel) of each new batch, in arrival order."""
    dead: list[DeadLetter]
    touched: set[tuple[str, int]]
    health: list[HealthRecord]
    risks: list[RiskEvent]
    """Sensor-health events found while preparing (detectors' own reports, out-of-range values): they go to
    alerts with the round's detection, in round order."""


class Ingest:
    def __init__(
        self,
        *,
        endpoint: MqttEndpoint,
        store: ReadingStore,
        registry: Registry,
        detector: RoundDetector,
        on_risks: Callable[[Sequence[RiskEvent]], Awaitable[object]],
        health: SensorHealth | None = None,
        metrics: Metrics,
        inbox_capacity: int = 10_000,
        inbox_bytes: int = 64 * 1024 * 1024,
        batch_messages: int = 500,
        round_bytes: int = 2 * 1024 * 1024,
        time_check_interval_s: float = 600.0,
        limits: LimitsPolicy | None = None,
    ) -> None:
        """``inbox_capacity`` messages and ``inbox_bytes`` payload bytes per inbox lane bound the hub's memory.

        A round takes at most ``batch_messages`` messages and ``round_bytes`` payload bytes (at least one
        message). An alarm that arrives during a round waits for it, so the byte bound is the hub's share of the
        alarm latency (DESIGN.md: threshold crossing to notification p99 <= 1 s): 2 MiB is ~45,000 readings in
        100-reading batches, a round of ~0.3 s with the embedded store on the 2-core reference machine (measured:
        50,000 readings 0.32-0.36 s, a one-message round 8-14 ms, so the fixed cost is a few percent).

        ``limits``: each gateway's budget on the routine lane (``hub.ingest.limits``; None: the defaults).
        """
        if round_bytes < 1:
            raise ValueError(f"round_bytes must be >= 1, got {round_bytes}")
        self.endpoint = endpoint
        self.store = store
        self.registry = registry
        self.detector = detector
        self.health = health
        """Takes the gateways' device reports and refused out-of-range values as rounds are prepared (its readings'
        part is in ``detector``)."""
        self.on_risks = on_risks
        """Takes a round's risk events together (``AlertService.submit_many``): one transaction for an incident's
        many sensors, not one each before the last of them is paged."""
        self.metrics = metrics
        self.batch_messages = batch_messages
        self.round_bytes = round_bytes
        self.inbox = Inbox(capacity=inbox_capacity, capacity_bytes=inbox_bytes)
        self._intakes: dict[str, Intake] = {}
        self.ledger = SessionLedger(store.session_marks())
        self.telemetry = GatewayTelemetry(registry=registry, metrics=metrics, saved=store.latest_health())
        self.time_checks = TimeChecks(registry=registry, metrics=metrics, interval_s=time_check_interval_s)
        self.liveness = Liveness(registry=registry, metrics=metrics)
        self.limits = GatewayLimits(registry=registry, metrics=metrics, policy=limits)
        self.latest = LatestValues(len(registry.sensors))
        """Each sensor's newest committed reading (the live stream, ``hub.live``)."""
        self.connected = False
        self._rebirths: set[str] = set()
        self._in_flight: set[tuple[str, int, int]] = set()
        """(gateway, session, seq) of batches taken into a round that is not committed yet (not in the ledger)."""
        self._rebirth_asked: set[tuple[str, int]] = set()
        self._stager = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-ingest-stage")
        metrics.gauge("anju_ingest_inbox_messages", "Messages received and not yet committed.", lambda: len(self.inbox))
        metrics.gauge("anju_gateways_online", "Gateways whose last state is online.", registry.online_count)
        metrics.gauge(
            "anju_mqtt_connected",
            "1 while both hub connections (routine and urgent) are up.",
            lambda: float(self.connected),
        )
        metrics.gauge(
            "anju_ingest_inbox_bytes", "Payload bytes received and not yet committed.", lambda: self.inbox.bytes
        )
        metrics.gauge(
            "anju_ingest_inbox_gateways", "Gateways with routine messages in the inbox.", lambda: self.inbox.gateways
        )
        metrics.gauge_family(
            "anju_ingest_inbox_full",
            "1 while that inbox lane is full and its receiver withholds PUBACKs (back-pressure), by lane.",
            lambda: [({"lane": lane}, float(self.inbox.waiting(urgent=lane == "urgent"))) for lane in _LANES],
        )
        metrics.gauge_family(
            "anju_mqtt_client_queue_messages",
            "Messages read from the broker and not yet in the inbox (not PUBACKed yet), by connection.",
            lambda: [({"connection": name}, float(intake.waiting)) for name, intake in self._intakes.items()],
        )
        metrics.gauge_family(
            "anju_mqtt_reading_paused",
            "1 while the hub does not read that connection's socket (its client queue is full), by connection.",
            lambda: [({"connection": name}, float(intake.paused)) for name, intake in self._intakes.items()],
        )

    async def run(self) -> None:
        """Stay connected until cancelled: jittered, capped exponential backoff between attempts.

        The backoff starts over after a session that got connected: a new outage is not the old one going on.
        """
        delay_s = 0.5
        while True:
            connects = self.metrics.mqtt_connects.get()
            try:
                await self._session()
            except* aiomqtt.MqttError as group:
                self.connected = False
                if self.metrics.mqtt_connects.get() > connects:
                    delay_s = 0.5
                log.warning("broker connection lost or refused (%s); retrying in %.1f s", group.exceptions[0], delay_s)
            await asyncio.sleep(delay_s * random.uniform(0.8, 1.2))
            delay_s = min(delay_s * 2, 15.0)

    async def _session(self) -> None:
        """Two broker connections, each with a persistent session and the retained ``offline`` as its Will.

        ``{client_id}-urgent`` carries ``alarm`` and ``state`` and feeds the urgent lane; ``{client_id}`` carries
        ``data``, ``health`` and ``reply`` and feeds the routine lane, and sends hub-acks and commands; both subscribe
        to the hub's own community's topics only (``_subscription``). A routine backlog, held back by back-pressure
        in the broker's queue for the routine session, is never in front of an alarm. Either connection's death
        publishes ``offline`` (its Will, and the other one is closed with it); ``online`` goes out once both are
        subscribed, so gateways see the hub online only while it can take both alarms and readings. A clean stop
        fires no Will, so the hub then says ``offline`` itself.
        """
        endpoint = self.endpoint
        offline = encode_state(GatewayState("offline", 0, time.time()))
        urgent = self._client(f"{endpoint.client_id}-urgent", offline)
        routine = self._client(endpoint.client_id, offline)
        intakes = {"urgent": Intake(urgent), "routine": Intake(routine)}
        async with urgent, routine:
            self._intakes = intakes
            try:
                async with asyncio.TaskGroup() as group:
                    # Receivers and committer first: a persistent session's backlog arrives right after CONNACK,
                    # and each SUBACK is read only after the messages in front of it on the same socket.
                    for name, client in (("urgent", urgent), ("routine", routine)):
                        intakes[name].attach()
                        group.create_task(self._receive(client, intakes[name]), name=f"hub-ingest-receive-{name}")
                    group.create_task(self._commit_forever(routine), name="hub-ingest-commit")
                    await urgent.subscribe([(self._subscription(channel), 1) for channel in _URGENT_CHANNELS])
                    await routine.subscribe([(self._subscription(channel), 1) for channel in _ROUTINE_CHANNELS])
                    # A persistent session keeps the filters it ever took: hubs before the shard by community took
                    # every community's (anju/v1/+/+/…), which would still deliver the others' traffic here.
                    await urgent.unsubscribe([subscription(channel) for channel in _URGENT_CHANNELS])
                    await routine.unsubscribe([subscription(channel) for channel in _ROUTINE_CHANNELS])
                    online = encode_state(GatewayState("online", 0, time.time()))
                    publish_nowait(urgent, HUB_STATE_TOPIC, online, retain=True)
                    self.connected = True
                    self.metrics.mqtt_connects.inc()
                    log.info("connected to broker %s:%d (routine and urgent connections)", endpoint.host, endpoint.port)
                    group.create_task(self.time_checks.run(urgent), name="hub-ingest-time-check")
            finally:
                self.connected = False
                self._intakes = {}
                goodbye = encode_state(GatewayState("offline", 0, time.time()))
                with contextlib.suppress(aiomqtt.MqttError):  # the connection is gone: its Will says it
                    publish_nowait(urgent, HUB_STATE_TOPIC, goodbye, retain=True)

    def _subscription(self, channel: Channel) -> str:
        """``anju/v1/{community}/+/{channel}``: this hub's own community only, so hubs of other communities on the same
        broker (one hub process per community, README "Production") each receive only their own traffic. What still
        comes from another community (a broker that delivers beyond the filter) is dead-lettered as
        ``community_mismatch`` (``check_origin``)."""
        return subscription(channel, community=self.registry.community)

    def _client(self, identifier: str, will: bytes) -> aiomqtt.Client:
        endpoint = self.endpoint
        return aiomqtt.Client(
            endpoint.host,
            endpoint.port,
            username=endpoint.session_user(identifier),
            password=endpoint.password,
            identifier=identifier,
            tls_context=endpoint.tls,
            clean_session=False,
            keepalive=endpoint.keepalive_s,
            will=aiomqtt.Will(HUB_STATE_TOPIC, will, qos=1, retain=True),
            max_inflight_messages=0,  # the hub's own publishes go out at once, never queued in paho (0: no limit)
        )

    async def _receive(self, client: aiomqtt.Client, intake: Intake) -> None:
        """Move messages into the inbox, each PUBACKed only once the inbox holds it (``hub.ingest.intake``)."""
        async for message in client.messages:
            name = message.topic.value
            payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
            channel = _channel(name)
            self.metrics.messages_received.inc(channel=channel)
            # Alarms and births/deaths jump the queue; health and replies wait in the bounded routine lane.
            urgent = channel in ("alarm", "state")
            item = Received(name, payload, _now_ms())
            if channel != "state":  # each gateway's budget (hub.ingest.limits); alarms against their own
                judged = self.limits.judge_alarm(name, payload) if urgent else self.limits.judge(name, channel, payload)
                if judged.verdict is Verdict.DEFER:
                    intake.taken(message)  # off the broker's shared queue, never acked: the gateway replays it
                    continue
                if judged.verdict is Verdict.REFUSE:
                    item = Received(name, judged.kept, item.received_ms, judged.rejection)
            if not self.inbox.has_room(item, urgent=urgent):
                intake.flush()  # what the inbox holds is PUBACKed before the wait: the broker sees where the hub is
            waited_s = await self.inbox.put(item, urgent=urgent)
            if waited_s:
                self.metrics.backpressure_seconds.inc(waited_s, lane="urgent" if urgent else "routine")
            intake.taken(message)

    async def _commit_forever(self, client: aiomqtt.Client) -> None:
        """Take rounds from the inbox and see each through, two at a time: while one is being committed (the store
        works in a thread: SQLite's fsync, InfluxDB's HTTP round trip), the next is decoded, validated and judged.
        Detection, commits, ledger updates and hub-acks each stay in round order."""
        previous: _Flight | None = None
        current: _Flight | None = None
        preparing: asyncio.Future[_Round] | None = None
        try:
            while True:
                began = time.perf_counter()
                items = await self.inbox.take(limit=self.batch_messages, limit_bytes=self.round_bytes)
                taken = time.perf_counter()
                self.metrics.ingest_waits.inc(taken - began, waiting_for="messages")
                preparing = asyncio.ensure_future(self._prepare(items))
                prepared = await asyncio.shield(preparing)
                preparing = None
                detected = asyncio.Event()
                current = _Flight(detected, asyncio.ensure_future(self._run(prepared, previous, detected, client)))
                if previous is not None:
                    began = time.perf_counter()
                    await asyncio.shield(previous.done)
                    self.metrics.ingest_waits.inc(time.perf_counter() - began, waiting_for="commit")
                previous, current = current, None
        except asyncio.CancelledError:
            # A round taken from the inbox runs to its end even when the connection drops meanwhile: cancelling
            # it between detection and alerts would drop a page. Past ROUND_GRACE_S (a store that stays down
            # while the hub stops) it is abandoned, unacked and out of the ledger: the gateway sends it again.
            if preparing is not None:
                detected = asyncio.Event()
                last = await preparing
                current = _Flight(detected, asyncio.ensure_future(self._run(last, previous, detected, client)))
            flights = [flight.done for flight in (previous, current) if flight is not None]
            if flights:
                _, late = await asyncio.wait(flights, timeout=ROUND_GRACE_S)
                for flight in late:
                    flight.cancel()
                await asyncio.gather(*flights, return_exceptions=True)
            raise

    async def commit(self, items: Sequence[Received]) -> dict[tuple[str, int], int]:
        """One round start to end without the broker (tests, tools): validate, dedup, detect, store; the acks."""
        prepared = await self._prepare(items)
        await self._detect(prepared)
        return await self._store_round(prepared)

    async def _run(
        self, prepared: "_Round", previous: "_Flight | None", detected: asyncio.Event, client: aiomqtt.Client
    ) -> None:
        """Detect after the round before has (paging never waits for any store commit), stage the readings (a
        store that writes to a server sends them while the round before finishes), commit after the round before
        has committed, then publish this round's rebirth requests and hub-acks."""
        try:
            try:
                if previous is not None:
                    await previous.detected.wait()
                await self._detect(prepared)
            finally:
                detected.set()
            # Submitted before the next round can get here, to a one-thread executor: staged in round order.
            staging = asyncio.get_running_loop().run_in_executor(self._stager, self._stage, prepared.rows)
            if previous is not None:
                await asyncio.gather(asyncio.shield(previous.done), return_exceptions=True)
            await asyncio.shield(staging)
        except BaseException:
            for gateway, session, seq, _ in prepared.batches:  # not taken after all: a replay is new again
                self._in_flight.discard((gateway, session, seq))
            raise
        acks = await self._store_round(prepared)
        try:
            for gateway in sorted(self._rebirths):
                publish_nowait(client, topic(self.registry.community, gateway, Channel.CMD, "rebirth"), b"{}")
                self.metrics.rebirths.inc()
                self.metrics.commands_sent.inc(command="rebirth")
            self._rebirths.clear()
            for (gateway, session), seq in acks.items():
                ack = encode_ack(Ack(session, seq))
                publish_nowait(client, topic(self.registry.community, gateway, Channel.ACK), ack)
                self.metrics.acks_published.inc()
        except aiomqtt.MqttError as exc:
            # The connection went while the round was committed: acks are cumulative, so the next round of each
            # gateway carries them, or the hub answers the gateway's replay.
            log.info("hub-acks of a committed round not sent (%s); they follow after the reconnect", exc)

    def _stage(self, rows: ReadingColumns) -> None:
        """Give the store a head start on the round's commit (``ReadingStore.stage``). A failure here is the
        commit's to report: it does the writes itself and retries as ever."""
        if not len(rows):
            return
        try:
            self.store.stage(rows)
        except Exception as exc:
            log.info("staging a round's readings failed (%s: %s); its commit writes them", type(exc).__name__, exc)

    async def _prepare(self, items: Sequence[Received]) -> "_Round":
        """Everything of a round that needs no store: decode, validate, dedup against the ledger and the rounds
        still being committed, telemetry, and the store's columns.

        It yields to the event loop every ``PREPARE_SLICE`` messages: a 500-message round is ~0.1 s of Python, and
        an event loop held that long reads nothing and PUBACKs nothing, so the broker's in-flight window fills
        and delivery stalls behind it (the InfluxDB drain ran at 0.70 cores for this)."""
        kept: list[tuple[Accepted, int]] = []
        batches: list[tuple[str, int, int, Channel]] = []
        dead: list[DeadLetter] = []
        touched: set[tuple[str, int]] = set()
        health: list[HealthRecord] = []
        risks: list[RiskEvent] = []
        for index, item in enumerate(items):
            if index % PREPARE_SLICE == PREPARE_SLICE - 1:
                await asyncio.sleep(0)
            if item.refused is not None:
                self._reject(item, item.refused, item.payload, dead)
                continue
            channel = _channel(item.topic)
            if channel == "state":
                self._state(item, dead)
                continue
            if channel == "health":
                self._health(item, dead, health, risks)
                continue
            if channel == "reply":
                self._reply(item, dead)
                continue
            inspection = inspect_message(item.topic, item.payload, self.registry)
            for rejection, raw in inspection.rejections:
                self._reject(item, rejection, raw, dead)
            if inspection.implausible and self.health is not None:
                risks += self.health.observe_out_of_range(inspection.implausible)
            accepted = inspection.accepted
            if accepted is None:
                continue
            batch = accepted.batch
            key = (batch.gateway, batch.session, batch.seq)
            touched.add((batch.gateway, batch.session))
            if self.ledger.is_duplicate(*key) or key in self._in_flight:
                self.metrics.duplicates.inc(len(batch))
                continue
            self._in_flight.add(key)
            batches.append((*key, accepted.channel))
            self.registry.gateways[batch.gateway].last_message_s = time.time()
            kept.append((accepted, item.received_ms))
        rows, sensor_rows, judged = self._columns(kept)
        return _Round(rows, sensor_rows, judged, batches, dead, touched, health, risks)

    async def _detect(self, prepared: "_Round") -> None:
        """Judge a round and hand its risks to alerts — before its commit: paging never waits for the store."""
        events = prepared.risks + self.detector.observe_round(prepared.judged)
        if not events:
            return
        for event in events:
            self.metrics.risk_events.inc(grade=event.grade.name, status=event.status)
            log.warning(
                "RISK %s %s %s %s %g %s (%s, %s)",
                event.status,
                event.grade.title_zh,
                event.sensor,
                event.location_zh,
                event.value,
                event.unit,
                event.rule,
                event.source,
            )
        await self.on_risks(events)

    async def _store_round(self, prepared: "_Round") -> dict[tuple[str, int], int]:
        """Record the round in the ledger, commit it with its marks — retrying until the store takes it — and
        return the hub-acks. A round is never dropped: while the store refuses, this round waits, the next ones
        wait behind it, the inbox fills and back-pressure holds the gateways (readings wait in their outboxes)."""
        saved = self.ledger.snapshot(prepared.touched)
        for gateway, session, seq, channel in prepared.batches:
            self._in_flight.discard((gateway, session, seq))
            if not self.ledger.knows(gateway, session) and seq > 1 and (gateway, session) not in self._rebirth_asked:
                # A session we never saw starts above 1: the hub lost its store, or the broker lost the
                # start. Acks could never pass the hole, so ask the gateway to start a new session, which
                # re-sends everything it still holds from seq 1 (the store's idempotent writes absorb repeats).
                self._rebirth_asked.add((gateway, session))
                self._rebirths.add(gateway)
                log.warning(
                    "gateway %s session %d starts at seq %d, unknown here: asking for a rebirth", gateway, session, seq
                )
            # Alarm batches share the seq space and jump the queue on purpose, so only a routine batch that
            # finds an earlier seq missing is a real gap (lost in the broker, or out of order).
            if channel is Channel.DATA and self.ledger.gap_before(gateway, session, seq):
                self.metrics.seq_gaps.inc()
                if not self.limits.over(gateway):  # deferred by its budget: a hole of the hub's making, said there
                    log.info(
                        "gateway %s session %d: seq %d arrived before an earlier one (gap); acks wait for it",
                        gateway,
                        session,
                        seq,
                    )
            self.ledger.record(gateway, session, seq)
        marks = [self.ledger.mark(gateway, session) for gateway, session in prepared.touched]
        rows = prepared.rows
        delay_s = 0.5
        while True:
            try:
                stored = await asyncio.to_thread(self.store.commit, rows, prepared.dead, marks, prepared.health)
                break
            except asyncio.CancelledError:
                # Abandoned (the hub stops while the store refuses): out of the ledger again, so the gateway's
                # replay is taken as new, never acked unstored. A commit still running in its thread may yet
                # land: the replay then finds its readings stored (idempotent) and its marks never move back.
                self.ledger.restore(saved)
                raise
            except Exception as exc:  # any store failure: keep the round, say so, try again
                self.metrics.store_failures.inc()
                log.error(
                    "store commit failed (%s: %s); the round is kept and retried in %.1f s",
                    type(exc).__name__,
                    exc,
                    delay_s,
                )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)
        self.liveness.observe_rows(prepared.sensor_rows, rows.time_ms, _now_ms())
        self.latest.observe(prepared.sensor_rows, rows.time_ms, rows.value, rows.flags)
        self.metrics.commits.inc()
        self.metrics.readings_stored.inc(stored)
        if len(rows) > stored:
            self.metrics.duplicates.inc(len(rows) - stored)
        return {(gateway, session): self.ledger.acked(gateway, session) for gateway, session in prepared.touched}

    def _columns(
        self, kept: Sequence[tuple[Accepted, int]]
    ) -> tuple[ReadingColumns, npt.NDArray[np.intp], Observations]:
        """The round's readings as store columns, flagged for clock skew, each one's registry row, and the readings
        to judge.

        A device time more than ``FUTURE_SKEW_MS`` ahead of the hub's clock when received, or from a gateway whose
        last clock check measured more than ``CLOCK_SKEW_WARN_S`` off, is stored as it came with the CLOCK_SKEW
        flag and judged at its arrival time (a gas alarm from a gateway with a wrong clock still pages). One older
        than ``PAST_SKEW_MS`` is stored flagged and not judged: it is history, whatever its value says.
        """
        names: list[str] = []
        gateways: list[str] = []
        time_list: list[int] = []
        value_list: list[float] = []
        infos: list[SensorInfo] = []
        counts: list[int] = []
        for accepted, _ in kept:
            names += accepted.names
            gateways += [accepted.batch.gateway] * len(accepted.names)
            time_list += accepted.times_ms
            value_list += accepted.values
            infos += accepted.infos
            counts.append(len(accepted.names))
        if not names:
            return ReadingColumns.empty(), np.empty(0, np.intp), Observations.empty()
        rows = np.fromiter((info.index for info in infos), np.intp, len(infos))
        times = np.array(time_list, np.int64)
        values = np.array(value_list, np.float64)
        received = np.repeat(np.array([ms for _, ms in kept], np.int64), counts)
        off_clock = {
            accepted.batch.gateway
            for accepted, _ in kept
            if (seen := self.time_checks.skew.get(accepted.batch.gateway)) and abs(seen.skew_s) > CLOCK_SKEW_WARN_S
        }
        future = times > received + FUTURE_SKEW_MS
        past = times < received - PAST_SKEW_MS
        skewed = future | past
        if off_clock:
            skewed |= np.fromiter((g in off_clock for g in gateways), bool, len(gateways))
        flags = (skewed * int(ReadingFlag.CLOCK_SKEW)).astype(np.uint8)
        columns = ReadingColumns(names, gateways, times, values, flags)
        if not skewed.any():
            return columns, rows, Observations(rows, times, values, infos)
        for index in np.flatnonzero(skewed).tolist():
            reason = "past" if past[index] else "future" if future[index] else "gateway_clock"
            self.metrics.clock_skewed.inc(gateway=gateways[index], reason=reason)
        log.warning(
            "%d readings stored with the clock-skew flag (device time off the hub's clock): %s",
            int(skewed.sum()),
            ", ".join(sorted({gateways[i] for i in np.flatnonzero(skewed).tolist()})),
        )
        keep = np.flatnonzero(~past)
        judged_times = np.where(skewed, received, times)
        judged = Observations(rows[keep], judged_times[keep], values[keep], [infos[i] for i in keep.tolist()])
        return columns, rows, judged

    def _reject(self, item: Received, rejection: Rejection, raw: bytes, dead: list[DeadLetter]) -> None:
        self.metrics.payloads_rejected.inc(reason=rejection.reason.value)
        log.warning("rejected from %s: %s", item.topic, rejection)
        dead.append(DeadLetter(item.received_ms, item.topic, rejection.reason.value, rejection.detail, raw))

    def _state(self, item: Received, dead: list[DeadLetter]) -> None:
        parsed = parse_topic(item.topic)
        if isinstance(parsed, Rejection):
            self._reject(item, parsed, item.payload, dead)
            return
        problem = check_origin(parsed, self.registry)
        state = problem or decode_state(item.payload)
        if isinstance(state, Rejection):
            self._reject(item, state, item.payload, dead)
            return
        online = state.status == "online"
        if self.registry.set_state(parsed.gateway, online=online, session=state.session):
            log.info("gateway %s %s (session %d)", parsed.gateway, state.status, state.session)
            if online:
                self.time_checks.born(parsed.gateway)

    def _health(
        self, item: Received, dead: list[DeadLetter], health: list[HealthRecord], risks: list[RiskEvent]
    ) -> None:
        judged = judge_health(item.topic, item.payload, self.registry)
        if isinstance(judged, Rejection):
            self._reject(item, judged, item.payload, dead)
            return
        gateway, report = judged
        if self.health is not None:
            unknown = self.health.unknown(gateway, report.devices)
            if unknown:
                self.metrics.unknown_devices.inc(len(unknown), gateway=gateway)
                log.warning("health of %s lists detectors not registered on it: %s", gateway, ", ".join(unknown[:5]))
            risks += self.health.observe_devices(gateway, item.received_ms, report.devices)
        self.telemetry.record_health(gateway, report, item.received_ms)
        self.liveness.heartbeat(gateway, report.time_s, item.received_ms)
        health.append(HealthRecord(gateway, item.received_ms, item.payload))

    def _reply(self, item: Received, dead: list[DeadLetter]) -> None:
        judged = judge_reply(item.topic, item.payload, self.registry)
        if isinstance(judged, Rejection):
            self._reject(item, judged, item.payload, dead)
            return
        gateway, reply = judged
        self.telemetry.record_reply(gateway, reply, item.received_ms)
        if reply.command == "time":
            self.time_checks.record_reply(gateway, reply, item.received_ms)
