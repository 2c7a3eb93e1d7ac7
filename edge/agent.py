"""The gateway agent: poll -> outbox -> local alarm check -> publish, and hub-acks back into the outbox.

Three named tasks under one TaskGroup, all on one event loop (the outbox is used from that loop only):

- ``edge-poll`` every ``poll_interval_s``: read the detectors, store readings and cursors in one transaction,
  trip local alarms (log line and ``alarm_command``; independent of the broker), publish alarm readings at once;
- ``edge-publish`` every ``publish_interval_s``: publish unsent readings in batches of <= ``max_batch`` on
  ``data``; republish every unacknowledged batch when no ack came for ``ack_timeout_s``;
- ``edge-events``: broker connected (republish everything unacknowledged in seq order, then go on), broker lost
  (buffer), hub-acks (delete from the outbox), commands.

Readings are handed out as batches only while the broker is connected, so that during an outage they stay
unsent in the outbox (where the byte bound may thin them) rather than pile up in paho's queue.
"""

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from edge.config import EdgeConfig, SensorConfig
from edge.drivers.modbus import ModbusDriver, Take
from edge.outbox import Cursor, Entry, Outbox, OutboxBatch, Route
from edge.session import Connected, Disconnected, Message, MqttSession, SessionError
from protocol.kinds import KINDS
from protocol.rejection import Rejection
from protocol.senml import encode_batch
from protocol.session import decode_ack
from protocol.topics import Channel, parse_topic, topic

__all__ = ["Agent", "AlarmLevel", "alarm_level", "serve"]

_log = logging.getLogger("edge.agent")
MAX_BATCHES_PER_TICK = 20
"""Publishing a backlog is spread over ticks so that paho's in-memory queue stays small."""
ALARM_COMMAND_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class AlarmLevel:
    """A sensor's local alarm: tripped at ``value`` (>= when ``above``), cleared back past ``clear``."""

    value: float
    clear: float
    above: bool

    def crossed(self, reading: float) -> bool:
        return reading >= self.value if self.above else reading <= self.value

    def cleared(self, reading: float) -> bool:
        return reading < self.clear if self.above else reading > self.clear


def alarm_level(sensor: SensorConfig) -> AlarmLevel | None:
    """The sensor's override ``alarm_above`` or its kind's local alarm set point (same hysteresis gap)."""
    point = KINDS[sensor.kind].local_alarm
    if sensor.alarm_above is not None:
        gap = abs(point.value - point.clear) if point is not None else 0.0
        return AlarmLevel(sensor.alarm_above, sensor.alarm_above - gap, True)
    if point is None:
        return None
    return AlarmLevel(point.value, point.clear, point.above)


class Agent:
    """Runs one gateway until ``stop`` is set. The caller owns (opens and closes) outbox, driver and session."""

    def __init__(self, *, config: EdgeConfig, outbox: Outbox, driver: ModbusDriver, session: MqttSession) -> None:
        self._config = config
        self._outbox = outbox
        self._driver = driver
        self._session = session
        self._levels = {s.id: alarm_level(s) for s in config.sensors}
        self._tripped: dict[str, bool] = {}
        self._cursors: dict[str, Cursor] = outbox.cursors()
        self._online = False
        self._ack_clock = time.monotonic()
        self._ack_topic = topic(config.community, config.gateway, Channel.ACK)
        self._alarm_processes: set[asyncio.Task[None]] = set()
        self.bad_acks = 0
        self.foreign_messages = 0
        self.stale_acks = 0

    async def run(self, stop: asyncio.Event) -> None:
        self._session.start()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._poll_loop(), name="edge-poll"),
                    group.create_task(self._publish_loop(), name="edge-publish"),
                    group.create_task(self._event_loop(), name="edge-events"),
                ]
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            await asyncio.to_thread(self._session.stop)
            for task in list(self._alarm_processes):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
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

    # -- poll -> outbox -> local alarm -> alarm publish ---------------------------------------------------

    async def _poll_loop(self) -> None:
        interval = self._config.poll_interval_s
        while True:
            started = time.monotonic()
            takes = await self._driver.poll(self._cursors)
            if takes:
                self._take(takes)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

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
        if any(entry.alarm for entry in entries) and self._online:
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
                self._run_alarm_command(sensor, reading.value, reading.unit, level.value)
            elif self._tripped.get(sensor.id, False) and level.cleared(reading.value):
                self._tripped[sensor.id] = False
                _log.info("local alarm cleared %s %s %s", sensor.id, reading.value, reading.unit)

    def _run_alarm_command(self, sensor: SensorConfig, value: float, unit: str, set_point: float) -> None:
        if not self._config.alarm_command:
            return
        env = {
            **os.environ,
            "ANJU_SENSOR": sensor.id,
            "ANJU_KIND": sensor.kind,
            "ANJU_VALUE": str(value),
            "ANJU_UNIT": unit,
            "ANJU_SET_POINT": str(set_point),
        }
        task = asyncio.create_task(self._alarm_process(env), name=f"edge-alarm-{sensor.id}")
        self._alarm_processes.add(task)
        task.add_done_callback(self._alarm_processes.discard)

    async def _alarm_process(self, env: dict[str, str]) -> None:
        argv = self._config.alarm_command
        try:
            process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, env=env)
        except OSError as exc:
            _log.error("alarm command %s could not start: %s", argv[0], exc)
            return
        try:
            code = await asyncio.wait_for(process.wait(), ALARM_COMMAND_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            _log.error("alarm command %s killed after %.0f s", argv[0], ALARM_COMMAND_TIMEOUT_S)
            return
        if code != 0:
            _log.error("alarm command %s exited with %d", argv[0], code)

    # -- publish ------------------------------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.publish_interval_s)
            if not self._online:
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
            item = self._outbox.next_batch(route, limit=self._config.max_batch)
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
                self._online = True
                self._republish()
                if self._online:
                    self._drain(Route.ALARM)
            elif isinstance(event, Disconnected):
                self._online = False
                _log.warning("broker connection lost (%s): buffering in the outbox", event.reason)
            elif isinstance(event, Message):
                self._on_message(event)

    def _on_message(self, message: Message) -> None:
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
            self._outbox.accept(ack)
            self._ack_clock = time.monotonic()
            _log.info("hub-ack seq=%d", ack.seq)
            return
        parsed = parse_topic(message.topic)
        if (
            isinstance(parsed, Rejection)
            or parsed.channel is not Channel.CMD
            or (parsed.community, parsed.gateway) != (self._config.community, self._config.gateway)
        ):
            self.foreign_messages += 1
            _log.warning("message on %s ignored: not this gateway's ack or cmd topic", message.topic)
            return
        command = parsed.command
        if command == "rebirth":
            self._session.publish_birth()
            _log.info("command rebirth: birth published")
        else:
            _log.info("command %s ignored: not supported by this edge", command)


async def serve(config: EdgeConfig, outbox: Outbox, stop: asyncio.Event) -> None:
    """Assemble driver, session and agent for ``config`` and run until ``stop`` is set."""
    session = MqttSession(
        community=config.community,
        gateway=config.gateway,
        session=outbox.session,
        host=config.mqtt.host,
        port=config.mqtt.port,
        keepalive_s=config.mqtt.keepalive_s,
        username=config.mqtt.username,
        password_file=config.mqtt.password_file,
    )
    async with ModbusDriver(config=config.modbus, sensors=config.sensors) as driver:
        await Agent(config=config, outbox=outbox, driver=driver, session=session).run(stop)
