"""Ring reader for Anju-compatible detectors (register map: ``protocol.registers``) over any bus transport.

Each poll reads the history ring of each detector it is given (FC 04, ``RING_ADDRESS``, ``RING_COUNT``: one
request per detector) and takes the samples newer than the last one taken. The caller stores the readings and
the new ``Cursor`` in one outbox transaction, so a restarted gateway neither loses nor duplicates samples that
are still in a detector's ring. Which detectors are due when is the caller's poll schedule (``edge.schedule``).

- A ring whose newest sample is older than the cursor (or whose sample at the cursor's seq has another device
  time) means the detector restarted: the cursor starts over from zero.
- A first new sample more than one past the cursor means samples fell out of the ring before they were read:
  they are counted (``missed``) and logged.
- A detector that does not answer is counted and logged once per change of state; the others are still read.
  A bus that is down (``BusDown``) ends the round: the remaining detectors count as not answering.
- A garbage sample (a value outside the kind's physical range ``KINDS[kind].minimum..maximum``, e.g. a raw
  -2**31 from a broken ADC, or a device time outside 2000-2100) is not taken as a reading, so it never reaches
  the local alarm check or the hub (which would dead-letter it): counted per sensor in ``garbage`` and logged
  once per change of the sensor's state (plausible / bad time / bad value), not once per sample.
"""

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edge.config import ModbusConfig, SensorConfig
from edge.drivers.bus import open_transport
from edge.drivers.transport import BusDown, NoAnswer, Transport
from edge.outbox import Cursor
from protocol.kinds import KINDS
from protocol.registers import RING_ADDRESS, RING_COUNT, Sample, decode_ring_bytes, from_raw
from protocol.senml import Reading

__all__ = ["ModbusDriver", "Selection", "Take", "select_new"]

_log = logging.getLogger(__name__)
_EARLIEST_MS = 946_684_800_000  # 2000-01-01: the SenML decoder refuses earlier times (clock never set)
_LATEST_MS = 4_102_444_800_000  # 2100-01-01


@dataclass(frozen=True, slots=True)
class Selection:
    """What a poll of one ring yields relative to the cursor."""

    samples: tuple[Sample, ...]
    cursor: Cursor | None
    missed: int
    restarted: bool


def select_new(samples: Sequence[Sample], cursor: Cursor | None) -> Selection:
    """The samples of a ring (oldest first) newer than ``cursor``, the cursor after them, and what was missed.

    With no cursor (a detector never read before) every sample in the ring is new and nothing counts as missed.
    """
    newest = samples[-1] if samples else None
    restarted = False
    if cursor is not None and cursor.seq > 0:
        if newest is None or newest.seq < cursor.seq:
            restarted = True
        else:
            same = next((s for s in samples if s.seq == cursor.seq), None)
            restarted = same is not None and same.time_ms != cursor.time_ms
    last = 0 if cursor is None or restarted else cursor.seq
    new = tuple(s for s in samples if s.seq > last)
    missed = 0
    if new and (cursor is not None or restarted) and new[0].seq > last + 1:
        missed = new[0].seq - last - 1
    if new:
        after: Cursor | None = Cursor(new[-1].seq, new[-1].time_ms)
    elif restarted:
        after = Cursor(0, 0)
    else:
        after = cursor
    return Selection(new, after, missed, restarted)


@dataclass(frozen=True, slots=True)
class Take:
    """New readings of one sensor from one poll, and the cursor to store with them."""

    sensor: SensorConfig
    readings: tuple[Reading, ...]
    cursor: Cursor
    missed: int
    restarted: bool


class ModbusDriver:
    """Reads the configured detectors over one bus (``edge.drivers.bus``). Use as ``async with``.

    Each ``poll`` is one round in the driver's own worker thread (blocking reads, one bus, one thread), so the
    event loop that publishes and answers the hub never waits on the bus. ``close`` makes a round in progress
    stop after its current request, which bounds a shutdown to one request timeout.
    """

    def __init__(self, *, config: ModbusConfig, sensors: Sequence[SensorConfig]) -> None:
        self._config = config
        self._sensors = tuple(sensors)
        self._transport: Transport = open_transport(config, self._sensors)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-bus")
        self._closing = threading.Event()
        self._answering: dict[str, bool] = {}
        self.unanswered: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.missed: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.invalid: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.restarts: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.garbage: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.requests = 0
        self._garbage_state: dict[str, str] = {}

    async def __aenter__(self) -> "ModbusDriver":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._worker.shutdown(wait=True, cancel_futures=True)
        self._transport.close()

    @property
    def sensors(self) -> tuple[SensorConfig, ...]:
        return self._sensors

    def silent(self) -> list[str]:
        """Ids of the detectors whose last poll got no answer."""
        return [sensor_id for sensor_id, answering in self._answering.items() if not answering]

    def answering(self) -> bool:
        """Whether some detector answered at its last poll: the proof that the bus settings work, which a pushed
        config's trial waits for (``edge.reconfigure``)."""
        return any(self._answering.values())

    async def poll(self, cursors: Mapping[str, Cursor], sensors: Sequence[SensorConfig] | None = None) -> list[Take]:
        """Read the rings of ``sensors`` (default: all) once; returns those with new samples or a restart."""
        chosen = self._sensors if sensors is None else tuple(sensors)
        snapshot = dict(cursors)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._round, chosen, snapshot)

    def _round(self, sensors: Sequence[SensorConfig], cursors: Mapping[str, Cursor]) -> list[Take]:
        takes: list[Take] = []
        for index, sensor in enumerate(sensors):
            if self._closing.is_set():
                break
            self.requests += 1
            try:
                data = self._transport.read_input_registers(sensor.unit_id, RING_ADDRESS, RING_COUNT)
            except NoAnswer as exc:
                self._not_answering(sensor, exc.reason)
                continue
            except BusDown as exc:
                for rest in sensors[index:]:
                    self._not_answering(rest, exc.reason)
                break
            if self._answering.get(sensor.id) is False:
                _log.info("sensor %s (unit %d) answering again", sensor.id, sensor.unit_id)
            self._answering[sensor.id] = True
            take = self._take(sensor, decode_ring_bytes(data), cursors.get(sensor.id))
            if take is not None:
                takes.append(take)
        return takes

    def _take(self, sensor: SensorConfig, samples: list[Sample], cursor: Cursor | None) -> Take | None:
        selection = select_new(samples, cursor)
        if selection.restarted:
            self.restarts[sensor.id] += 1
            _log.warning(
                "sensor %s (unit %d) restarted: counter went back from %d, reading its ring from the start",
                sensor.id,
                sensor.unit_id,
                cursor.seq if cursor else 0,
            )
        if selection.missed:
            self.missed[sensor.id] += selection.missed
            _log.warning(
                "sensor %s (unit %d) missed %d samples (ring overran), %d missed in total",
                sensor.id,
                sensor.unit_id,
                selection.missed,
                self.missed[sensor.id],
            )
        if selection.cursor is None or selection.cursor == cursor:
            return None
        readings: list[Reading] = []
        for sample in selection.samples:
            reading = self._plausible(sensor, sample)
            if reading is not None:
                readings.append(reading)
        return Take(sensor, tuple(readings), selection.cursor, selection.missed, selection.restarted)

    def _plausible(self, sensor: SensorConfig, sample: Sample) -> Reading | None:
        """The sample as a reading, or None (counted, logged on a change of state) when it is garbage."""
        kind = KINDS[sensor.kind]
        value = from_raw(sample.raw, sensor.exponent)
        if not _EARLIEST_MS <= sample.time_ms <= _LATEST_MS:
            self.invalid[sensor.id] += 1
            state = "time"
        elif not kind.minimum <= value <= kind.maximum:
            state = "value"
        else:
            if self._garbage_state.get(sensor.id, "ok") != "ok":
                _log.info(
                    "sensor %s (unit %d) samples plausible again (%d garbage samples in total)",
                    sensor.id,
                    sensor.unit_id,
                    self.garbage[sensor.id],
                )
            self._garbage_state[sensor.id] = "ok"
            return Reading(sensor.id, sample.time_ms, value, sensor.unit)
        self.garbage[sensor.id] += 1
        if self._garbage_state.get(sensor.id, "ok") != state:
            if state == "time":
                _log.warning(
                    "sensor %s sample %d has device time %d ms: skipped", sensor.id, sample.seq, sample.time_ms
                )
            else:
                _log.warning(
                    "sensor %s (unit %d) garbage sample %d: value %s %s outside the %s range %s..%s, not taken "
                    "(logged again only when the sensor's state changes)",
                    sensor.id,
                    sensor.unit_id,
                    sample.seq,
                    value,
                    sensor.unit,
                    kind.name,
                    kind.minimum,
                    kind.maximum,
                )
        self._garbage_state[sensor.id] = state
        return None

    def _not_answering(self, sensor: SensorConfig, reason: str) -> None:
        self.unanswered[sensor.id] += 1
        if self._answering.get(sensor.id) is not False:
            _log.warning("sensor %s (unit %d) not answering: %s", sensor.id, sensor.unit_id, reason)
        self._answering[sensor.id] = False
