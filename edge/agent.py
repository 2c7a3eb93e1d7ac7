"""The gateway agent: poll -> outbox -> local alarm check -> publish, and hub-acks back into the outbox.

Five named tasks under one TaskGroup, all on one event loop (the outbox is used from that loop only):

- ``edge-poll`` on the per-detector schedule (``edge.schedule``; ``poll_interval_s`` per detector or for the
  gateway): read the detectors that are due, store readings and cursors in one transaction,
  trip local alarms (log line and ``alarm_command``; independent of the broker), publish alarm readings at once;
- ``edge-publish`` every ``publish_interval_s``: publish unsent readings in batches of <= ``max_batch`` on
  ``data``; republish every unacknowledged batch when no ack came for ``ack_timeout_s``;
- ``edge-events``: broker connected (republish everything unacknowledged in seq order, then go on), broker lost
  (buffer), hub-acks (delete from the outbox), the hub's retained state, commands (``edge.commands``);
- ``edge-health`` every ``health_interval_s``: one INFO ``health:`` line, the same numbers saved in the outbox and,
  while the broker is connected, published on ``health`` (retained) with the detectors not answering and those
  whose own status (fault, tamper, low battery) or garbage samples are worth a look; skipped and counted
  (``health_skipped``) while it is not. A change in which detectors are worth a look (or how) is reported at once,
  at most every ``DEVICE_REPORT_SPACING_S``: GB/T 45839-2025 wants a device fault shown within 100 s;
- ``edge-mqtt-supervisor`` (``MqttSession.supervise``): rebuilds the paho client when its network thread died or
  stalled, counted in the health's ``client_rebuilds``.

``cmd/ping`` and ``cmd/time`` are answered on ``reply/{name}`` (the ping's id, the measured clock skew); a command
refused on this gateway's own topic is answered with ``ok: false`` and the reason.

While the hub's retained state says offline, routine batches stay in the outbox (no publish, no republish timer);
alarms still go out. When it says online again, everything unacknowledged is republished. No hub state at all
(a broker without the hub yet, or an ACL that refuses it) counts as online: waiting for it could wait forever.

``cmd/rebirth`` rolls the outbox over to a new session (every unacknowledged reading back to unsent, seq from
1) and reconnects with the new session number in the Will and birth, so a hub that lost its store resyncs.

``cmd/config`` is handed to the ``on_config_push`` hook (``edge.reconfigure``): a refusal is answered here at once;
a push that is taken stops this agent, and the one started on the new config (or, rolled back, on the old one)
answers it.

Readings are handed out as batches only while the broker is connected, so that during an outage they stay
unsent in the outbox (where the byte bound may thin them) rather than pile up in paho's queue.
"""

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence

from edge.alarms import AlarmHook, AlarmLevel, alarm_level
from edge.commands import (
    CLOCK_SKEW_WARN_S,
    Command,
    CommandRejected,
    ConfigPush,
    Ping,
    Rebirth,
    TimeCheck,
    parse_command,
)
from edge.config import EdgeConfig, SensorConfig
from edge.drivers.modbus import ModbusDriver, Take
from edge.health import Health, disk_free_bytes, health_line, health_report, oldest_age_s, process_usage
from edge.outbox import Cursor, Entry, Outbox, OutboxBatch, Route
from edge.relay import AlarmRelay, open_relay
from edge.schedule import PollSchedule
from edge.session import Connected, Disconnected, Message, MqttSession, SessionError
from protocol.rejection import Rejection
from protocol.senml import encode_batch
from protocol.session import decode_ack, decode_state
from protocol.telemetry import DeviceStatus, Reply, encode_health, encode_reply
from protocol.topics import HUB_STATE_TOPIC, Channel, ParsedTopic, parse_topic, topic

__all__ = ["PROGRESS_EVERY_S", "Agent", "AlarmLevel", "alarm_level", "serve"]

_log = logging.getLogger("edge.agent")
DEVICE_REPORT_SPACING_S = 5.0
"""Least time between health reports sent early for a change in the detectors' own status: a flapping detector
cannot flood the broker, and a fault still reaches the hub well within GB/T 45839-2025's 100 s."""
_DeviceKey = tuple[tuple[str, int, int, int, bool], ...]


def _device_key(devices: Sequence[DeviceStatus]) -> _DeviceKey:
    """What the hub judges of the detectors worth a look (not the garbage count itself, which only grows)."""
    return tuple((d.sensor, d.status, d.faults, d.battery_pct, d.garbage > 0) for d in devices)


PROGRESS_EVERY_S = 5.0
"""Longest sleep of the poll loop between two passes (the next poll may be due in up to an hour): each pass is a
sign of life for systemd's watchdog (``last_progress_s``), so an idle loop is told apart from a stuck one."""
HUB_STATE_WAIT_S = 10.0
"""Seconds after a connect to wait for the hub's retained state before readings go out without it (a broker whose
hub never published one). The retained state normally arrives with the SUBACK, well under a second."""
MAX_BATCHES_PER_TICK = 20
STOP_ACK_WAIT_S = 2.0
"""Seconds a stopping agent waits, still connected, for the hub-acks of batches already published. A planned stop
(a config push, a service restart) then leaves nothing for the next session to send again; the hub would store a
resent reading once anyway, but it costs a second trip. Bounded so that a hub that is down never delays a stop."""
"""Publishing a backlog is spread over ticks so that paho's in-memory queue stays small."""
ConfigPushHook = Callable[[ConfigPush], Awaitable[str | None]]
"""Takes a ``cmd/config`` push (``edge.reconfigure``): returns the refusal's reason, or None when the push was
taken, in which case this agent is about to be stopped and the one started on the new config answers it."""


class Agent:
    """Runs one gateway until ``stop`` is set. The caller owns (opens and closes) outbox, driver and session."""

    def __init__(
        self,
        *,
        config: EdgeConfig,
        outbox: Outbox,
        driver: ModbusDriver,
        session: MqttSession,
        relay: AlarmRelay | None = None,
        on_config_push: ConfigPushHook | None = None,
    ) -> None:
        self._config = config
        self._on_config_push = on_config_push
        self._outbox = outbox
        self._driver = driver
        self._session = session
        self._levels = {s.id: alarm_level(s) for s in config.sensors}
        self._tripped: dict[str, bool] = {}
        self._cursors: dict[str, Cursor] = outbox.cursors()
        self._online = False
        self._ack_clock = time.monotonic()
        self._ack_topic = topic(config.community, config.gateway, Channel.ACK)
        self._health_topic = topic(config.community, config.gateway, Channel.HEALTH)
        self._alarm_hook = AlarmHook(config.alarm_command)
        self._relay = relay
        self._hub_online: bool | None = None  # None: no retained hub state seen (counts as online)
        self._state_seen = False  # a hub state (or the wait for one) since the last connect: readings may go
        self._connected_at = time.monotonic()
        self._acked_or_gone = asyncio.Event()  # set on each applied hub-ack and on a lost connection
        self.bad_acks = 0
        self.storage_errors = 0
        self.foreign_messages = 0
        self.stale_acks = 0
        self.bad_hub_states = 0
        self.connects = 0
        self.commands_done: dict[str, int] = {}
        self.commands_rejected = 0
        self.clock_skew_s = math.nan
        self.last_ping_id = ""
        self.health_published = 0
        self.health_skipped = 0
        self.replies_unsent = 0
        self._devices_changed = asyncio.Event()
        self._devices_reported: _DeviceKey = ()
        self._progress_at = time.monotonic()
        self._bus_requests_seen = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._session.start()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._poll_loop(), name="edge-poll"),
                    group.create_task(self._publish_loop(), name="edge-publish"),
                    group.create_task(self._event_loop(), name="edge-events"),
                    group.create_task(self._health_loop(), name="edge-health"),
                    group.create_task(self._session.supervise(), name="edge-mqtt-supervisor"),
                ]
                await stop.wait()
                poll, publish, *rest = tasks
                poll.cancel()
                publish.cancel()  # nothing new goes out; acks for what is out still come in on the event loop
                await self._await_acks(STOP_ACK_WAIT_S)
                for task in rest:
                    task.cancel()
        finally:
            await asyncio.to_thread(self._session.stop)
            await self._alarm_hook.wait()
            self._report_health()
            c = self._outbox.counters()
            _log.info(
                "stopped: session=%d taken=%d published=%d acked=%d dropped=%d republished=%d unsent=%d "
                "unacked_batches=%d",
                c.session,
                c.taken,
                c.published,
                c.acked,
                c.dropped,
                c.republished,
                c.unsent,
                c.unacked_batches,
            )

    async def _await_acks(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` seconds for the hub-acks of this session's published batches, while connected."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self._online and self._outbox.unacked_count():
                    self._acked_or_gone.clear()
                    await self._acked_or_gone.wait()

    # -- poll -> outbox -> local alarm -> alarm publish ---------------------------------------------------

    async def _poll_loop(self) -> None:
        schedule = PollSchedule(self._config, now=time.monotonic())
        while True:
            self._progress_at = time.monotonic()
            due = schedule.due(self._progress_at)
            if due:
                takes = await self._driver.poll(self._cursors, due)
                schedule.done(due, time.monotonic())
                if _device_key(self._driver.device_statuses()) != self._devices_reported:
                    self._devices_changed.set()
                if takes:
                    self._take(takes)
            await asyncio.sleep(min(PROGRESS_EVERY_S, max(0.0, schedule.next_due() - time.monotonic())))

    def last_progress_s(self) -> float:
        """``time.monotonic()`` of the poll loop's last sign of life: a pass through it, or a bus request started by
        its round in the bus thread (a round over many silent detectors lasts many request timeouts, yet moves on).
        What systemd's watchdog is fed by (``anju-edge run``): a poll loop stuck on its bus stops the pings."""
        requests = self._driver.requests + self._driver.header_requests
        if requests != self._bus_requests_seen:
            self._bus_requests_seen = requests
            self._progress_at = max(self._progress_at, time.monotonic())
        return self._progress_at

    def _take(self, takes: Sequence[Take]) -> None:
        entries: list[Entry] = []
        for take in takes:
            level = self._levels[take.sensor.id]
            for reading in take.readings:
                entries.append(Entry(reading, level is not None and level.crossed(reading.value)))
        cursors = {take.sensor.id: take.cursor for take in takes}
        try:
            dropped = self._outbox.add(entries, cursors)
        except sqlite3.Error as exc:  # disk full or failing card: the alarm below must still trip
            _log.error("outbox write failed, %d readings not taken (read again next poll): %s", len(entries), exc)
        else:
            self._cursors.update(cursors)
            if dropped:
                _log.warning(
                    "outbox full: dropped %d oldest routine readings (%d in total)",
                    dropped,
                    self._outbox.counters().dropped,
                )
        for take in takes:
            self._check_local_alarm(take.sensor, take)
        if any(entry.alarm for entry in entries) and self._online and self._state_seen:
            self._drain(Route.ALARM)

    def _check_local_alarm(self, sensor: SensorConfig, take: Take) -> None:
        level = self._levels[sensor.id]
        if level is None:
            return
        for reading in take.readings:
            if level.crossed(reading.value) and not self._tripped.get(sensor.id, False):
                self._tripped[sensor.id] = True
                sign = ">=" if level.above else "<="
                _log.warning("LOCAL ALARM %s %s %s %s %s", sensor.id, reading.value, reading.unit, sign, level.value)
                self._alarm_hook.trip(sensor, reading.value, reading.unit, level.value)
                if self._relay is not None:
                    self._relay.set(sensor.id, True)
            elif self._tripped.get(sensor.id, False) and level.cleared(reading.value):
                self._tripped[sensor.id] = False
                _log.info("local alarm cleared %s %s %s", sensor.id, reading.value, reading.unit)
                if self._relay is not None:
                    self._relay.set(sensor.id, False)

    # -- publish ------------------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.publish_interval_s)
            if not self._online:
                continue
            if not self._state_seen:
                if time.monotonic() - self._connected_at < HUB_STATE_WAIT_S:
                    continue
                _log.warning("no hub state within %.0f s of connecting: publishing without it", HUB_STATE_WAIT_S)
                self._state_seen = True
                self._start_sending()
                continue
            if self._hub_online is False:  # the hub says offline: routine readings wait, alarms still go
                self._ack_clock = time.monotonic()
                self._drain(Route.ALARM)
                continue
            if self._outbox.unacked_count() and time.monotonic() - self._ack_clock >= self._config.ack_timeout_s:
                _log.warning("no hub-ack for %.1f s: republishing", self._config.ack_timeout_s)
                self._republish()
            self._drain(Route.ALARM)
            self._drain(Route.DATA)

    def _drain(self, route: Route) -> None:
        for _ in range(MAX_BATCHES_PER_TICK):
            if not self._outbox.unacked_count():
                self._ack_clock = time.monotonic()  # the ack timeout runs from the first unacked batch
            try:
                item = self._outbox.next_batch(route, limit=self._config.max_batch)
            except sqlite3.Error as exc:  # disk full or failing card: keep going, batch again next tick
                self.storage_errors += 1
                _log.error("outbox could not hand out a batch (%d storage errors so far): %s", self.storage_errors, exc)
                return
            if item is None:
                return
            if not self._send(item):
                return
            label = "published alarm" if route is Route.ALARM else "published"
            _log.info(
                "%s seq=%d readings=%d unacked=%d",
                label,
                item.batch.seq,
                len(item.batch.readings),
                self._outbox.unacked_count(),
            )

    def _send(self, item: OutboxBatch) -> bool:
        """Publish one batch; on failure it stays unacknowledged and goes out again after the reconnect."""
        name = topic(self._config.community, self._config.gateway, Channel(item.route.value))
        try:
            self._session.publish(name, encode_batch(item.batch))
        except SessionError as exc:
            _log.info("publish of seq=%d deferred: %s", item.batch.seq, exc)
            self._online = False
            return False
        return True

    def _republish(self) -> None:
        first = last = None
        count = 0
        for item in self._outbox.unacked():
            if not self._send(item):
                break
            first = item.batch.seq if first is None else first
            last = item.batch.seq
            count += 1
        self._ack_clock = time.monotonic()
        if count:
            _log.info("republished %d batches seq=%d..%d", count, first, last)

    # -- broker events ----------------------------------------------------------------------------------

    async def _event_loop(self) -> None:
        while True:
            event = await self._session.next_event(1.0)
            if isinstance(event, Connected):
                _log.info("connected to broker %s:%d session=%d", event.host, event.port, self._outbox.session)
                self.connects += 1
                self._online = True
                self._state_seen = False  # readings wait for the hub's retained state, which comes with the SUBACK
                self._connected_at = time.monotonic()
            elif isinstance(event, Disconnected):
                self._online = False
                self._acked_or_gone.set()
                _log.warning("broker connection lost (%s): buffering in the outbox", event.reason)
            elif isinstance(event, Message):
                await self._on_message(event)

    async def _on_message(self, message: Message) -> None:
        if message.topic == self._ack_topic:
            ack = decode_ack(message.payload)
            if isinstance(ack, Rejection):
                self.bad_acks += 1
                _log.warning("bad hub-ack ignored (%d so far): %s", self.bad_acks, ack)
                return
            if ack.session != self._outbox.session:
                self.stale_acks += 1
                _log.info("hub-ack for session %d ignored (this is session %d)", ack.session, self._outbox.session)
                return
            if ack.seq > self._outbox.last_published_seq:
                self.stale_acks += 1
                _log.warning(
                    "hub-ack seq=%d is ahead of the last seq published in this session (%d): ignored",
                    ack.seq,
                    self._outbox.last_published_seq,
                )
                return
            try:
                released = self._outbox.accept(ack)
            except sqlite3.Error as exc:  # the rows stay; the next ack (cumulative) deletes them
                self.storage_errors += 1
                _log.error(
                    "hub-ack seq=%d not applied (%d storage errors so far): %s", ack.seq, self.storage_errors, exc
                )
                return
            if released:
                # Only progress restarts the republish clock: a hub repeating the ack below a gap it never
                # received must see the gap republished after ack_timeout_s.
                self._ack_clock = time.monotonic()
            _log.info("hub-ack seq=%d", ack.seq)
            self._acked_or_gone.set()
            return
        if message.topic == HUB_STATE_TOPIC:
            self._on_hub_state(message.payload)
            return
        parsed = parse_topic(message.topic)
        if isinstance(parsed, ParsedTopic) and parsed.channel is Channel.CMD:
            await self._on_command(message)
            return
        self.foreign_messages += 1
        _log.warning("message on %s ignored: not this gateway's ack or cmd topic", message.topic)

    def _on_hub_state(self, payload: bytes) -> None:
        first = self._online and not self._state_seen
        self._state_seen = True
        self._update_hub_state(payload, first=first)
        if first:
            self._start_sending()

    def _update_hub_state(self, payload: bytes, *, first: bool) -> None:
        if not payload:  # the retained state was cleared: unknown again, which counts as online
            self._hub_online = None
            _log.info("hub state cleared: publishing as usual")
            return
        state = decode_state(payload)
        if isinstance(state, Rejection):
            self.bad_hub_states += 1
            _log.warning("bad hub state ignored (%d so far): %s", self.bad_hub_states, state)
            return
        online = state.status == "online"
        previous, self._hub_online = self._hub_online, online
        if online == previous:
            return
        if not online:
            _log.warning("hub is offline: routine readings wait in the outbox, alarms still go out")
        elif previous is False:
            _log.info("hub is online again: republishing everything unacknowledged")
            if self._online and not first:
                self._republish()
                self._drain(Route.ALARM)

    def _start_sending(self) -> None:
        """After a connect, once the hub's state is known: what waited goes out, alarms ahead of the backlog.

        Waiting for the retained state matters after a broker lost its sessions (restarted with its persistence
        wiped): until the hub has subscribed again, and it publishes its state only after subscribing, anything
        published is dropped, and the alarms would reach the hub only with the ack-timeout republish, after
        routine readings. A hub state, online or offline, means the hub's persistent session exists on this broker.
        """
        if self._hub_online is not False:
            self._republish()
        self._drain(Route.ALARM)

    async def _on_command(self, message: Message) -> None:
        command = parse_command(
            message.topic, message.payload, community=self._config.community, gateway=self._config.gateway
        )
        if isinstance(command, CommandRejected):
            self.commands_rejected += 1
            if command.reason == "unknown command":
                _log.info("command %s ignored: not supported by this edge", command.command)
            _log.warning("command %s rejected (%d so far): %s", command.command, self.commands_rejected, command)
            parsed = parse_topic(message.topic)
            if (
                isinstance(parsed, ParsedTopic)
                and (parsed.community, parsed.gateway) == (self._config.community, self._config.gateway)
                and parsed.command is not None
            ):  # only on this gateway's own topic: never answer in another gateway's name
                self._reply(Reply(parsed.command, False, time.time(), command.reason))
            return
        if isinstance(command, ConfigPush):
            await self._config_push(command)
            return
        await self._execute(command)
        name = type(command).__name__.lower()
        self.commands_done[name] = self.commands_done.get(name, 0) + 1

    async def _execute(self, command: Command) -> None:
        if isinstance(command, Rebirth):
            old = self._outbox.session
            self._online = False  # nothing goes out under the new session before its birth
            returned = self._outbox.new_session()
            self._ack_clock = time.monotonic()
            await asyncio.to_thread(self._session.rebirth, self._outbox.session)
            _log.info(
                "command rebirth: birth published with new session=%d (was %d), %d unacked readings back to "
                "unsent, re-batched from seq 1",
                self._outbox.session,
                old,
                returned,
            )
        elif isinstance(command, Ping):
            self.last_ping_id = command.id
            _log.info("command ping id=%s: pong (answered on reply/ping)", command.id)
            self._reply(Reply("ping", True, time.time(), "pong", id=command.id))
        elif isinstance(command, TimeCheck):
            now_s = time.time()
            self.clock_skew_s = command.skew_s(now_s)
            detail = f"clock skew {self.clock_skew_s:+.3f} s (gateway minus hub)"
            self._reply(Reply("time", True, now_s, detail, skew_s=self.clock_skew_s))
            if abs(self.clock_skew_s) > CLOCK_SKEW_WARN_S:
                _log.warning(
                    "command time: gateway clock is %+.3f s off the hub's (more than %.0f s): device times skewed",
                    self.clock_skew_s,
                    CLOCK_SKEW_WARN_S,
                )
            else:
                _log.info("command time: clock skew %+.3f s", self.clock_skew_s)

    async def _config_push(self, push: ConfigPush) -> None:
        if self._on_config_push is None:
            refusal: str | None = "config push needs the agent started by anju-edge run"
        else:
            refusal = await self._on_config_push(push)
        if refusal is None:
            self.commands_done["config"] = self.commands_done.get("config", 0) + 1
            return
        self.commands_rejected += 1
        _log.warning("command config id=%s refused (%d so far): %s", push.id, self.commands_rejected, refusal)
        self._reply(Reply("config", False, time.time(), refusal, id=push.id))

    def answer(self, reply: Reply) -> None:
        """Publish ``reply`` on ``reply/{command}`` for a command an earlier agent took (a config push's result)."""
        self._reply(reply)

    @property
    def detectors_answering(self) -> bool:
        """Some detector answered at its last poll (so the bus settings work)."""
        return self._driver.answering()

    def _reply(self, reply: Reply) -> None:
        """Answer on ``reply/{name}`` (QoS 1, not retained). Best effort: an answer that cannot go out now is
        counted and dropped, since the hub asks again if it still wants to know."""
        name = topic(self._config.community, self._config.gateway, Channel.REPLY, reply.command)
        try:
            self._session.publish(name, encode_reply(reply))
        except SessionError as exc:
            self.replies_unsent += 1
            _log.info("reply to %s not sent (%d so far): %s", reply.command, self.replies_unsent, exc)

    # -- health -------------------------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._devices_changed.wait(), self._config.health_interval_s)
            self._devices_changed.clear()
            health = self._report_health()
            if health is not None:
                self._publish_health(health)
            await asyncio.sleep(min(DEVICE_REPORT_SPACING_S, self._config.health_interval_s))

    def health(self) -> Health:
        c = self._outbox.counters()
        cpu_s, rss_bytes = process_usage()
        return Health(
            time_s=time.time(),
            outbox_readings=c.stored_readings,
            outbox_bytes=c.stored_bytes,
            unsent_readings=c.unsent,
            unacked_batches=c.unacked_batches,
            oldest_unacked_s=oldest_age_s(self._outbox.oldest_time_ms()),
            dropped_readings=c.dropped,
            reconnects=max(0, self.connects - 1),
            hub_online=self._hub_online is not False,
            bad_acks=self.bad_acks,
            garbage_samples=sum(self._driver.garbage.values()),
            unanswered_polls=sum(self._driver.unanswered.values()),
            commands_rejected=self.commands_rejected,
            clock_skew_s=self.clock_skew_s,
            cpu_s=cpu_s,
            rss_bytes=rss_bytes,
            disk_free_bytes=disk_free_bytes(self._config.outbox.parent),
            client_rebuilds=self._session.client_rebuilds,
        )

    def _report_health(self) -> Health | None:
        """Log one snapshot and save it in the outbox; returns it (None when the outbox could not be read)."""
        try:
            health = self.health()
        except sqlite3.Error as exc:  # a failing card must not stop the agent; the poll loop reports it too
            _log.error("health snapshot not taken: %s", exc)
            return None
        _log.info("%s", health_line(health))
        try:
            self._outbox.save_health(health.values())
        except sqlite3.Error as exc:  # a full disk is when the hub most needs the snapshot: it is still published
            _log.error("health snapshot not saved: %s", exc)
        return health

    def _publish_health(self, health: Health) -> None:
        """Publish the snapshot on ``health`` (QoS 1, retained) while connected; otherwise skip it, counted in
        ``health_skipped`` (and reported in the next one that goes out). Never queued: a newer one supersedes it."""
        if not self._online:
            self.health_skipped += 1
            return
        devices = self._driver.device_statuses()
        report = health_report(health, silent=self._driver.silent(), skipped=self.health_skipped, devices=devices)
        try:
            self._session.publish(self._health_topic, encode_health(report), retain=True)
        except SessionError as exc:
            self.health_skipped += 1
            _log.info("health snapshot not published (%d skipped so far): %s", self.health_skipped, exc)
            return
        self.health_published += 1
        self._devices_reported = _device_key(devices)


async def serve(
    config: EdgeConfig,
    outbox: Outbox,
    stop: asyncio.Event,
    *,
    on_config_push: ConfigPushHook | None = None,
    on_agent: Callable[[Agent], None] | None = None,
) -> None:
    """Assemble driver, session and agent for ``config`` and run until ``stop`` is set.

    ``on_agent`` is called with the agent before it runs, so that ``edge.reconfigure`` can watch a pushed config's
    start and answer the push through it."""
    session = MqttSession.from_config(config, session=outbox.session)
    async with ModbusDriver(config=config.modbus, sensors=config.sensors) as driver:
        relay = open_relay(config.alarm_gpio_pin) if config.alarm_gpio_pin is not None else None
        try:
            agent = Agent(
                config=config, outbox=outbox, driver=driver, session=session, relay=relay, on_config_push=on_config_push
            )
            if on_agent is not None:
                on_agent(agent)
            await agent.run(stop)
        finally:
            if relay is not None:
                relay.close()
