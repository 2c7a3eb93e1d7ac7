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

Each detector's header (FC 04, ``HEADER_ADDRESS``, ``HEADER_COUNT``: its GB/T 45839 status, battery and fault
flags) is read about once every ``status_interval_s``, after the rings of a round, and the latest one is kept:
``device_statuses`` hands the detectors worth a look to the health report. The header reads are spread over
time, not bunched into one round: a round may read as many headers as a budget allows that refills at
``detectors / status_interval_s`` per second and holds at most ``HEADER_READS_PER_ROUND``. Each round reads the
headers that are due (of detectors that answered at their last poll, whether or not this round reads their ring),
never-read ones first, then the longest overdue. So a few detectors all get their first header in their first
answered round; 247 detectors with the default 60 s get theirs at ~4 a second, every one within a minute, and
then ~4 a second steadily instead of 247 at once. A header read that gets no answer, or finds the bus down, counts
like a ring read that did (``unanswered``, silent); a header that is not plausible (status outside 1..4,
battery above 100 %) is counted in ``bad_headers``, logged on a change, and not reported.
"""

import asyncio
import logging
import math
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edge.config import ModbusConfig, SensorConfig
from edge.drivers.bus import open_transport
from edge.drivers.transport import BusDown, NoAnswer, Transport
from edge.outbox import Cursor
from protocol.kinds import KINDS
from protocol.registers import (
    FAULT_LOW_BATTERY,
    FAULT_TAMPER,
    HEADER_ADDRESS,
    HEADER_COUNT,
    RING_ADDRESS,
    RING_COUNT,
    Header,
    Sample,
    Status,
    decode_header,
    decode_ring_bytes,
    from_raw,
)
from protocol.senml import Reading
from protocol.telemetry import DeviceStatus

__all__ = ["HEADER_READS_PER_ROUND", "LOW_BATTERY_REPORT_PCT", "ModbusDriver", "Selection", "Take", "select_new"]

_log = logging.getLogger(__name__)
HEADER_READS_PER_ROUND = 8
"""At most this many header reads in one round, after its ring reads: bounds how much longer a round gets (eight
reads of 16 registers: 8 × (8 + 37 bytes) × 10 bits / 9600 baud ≈ 0.38 s on the wire, computed, plus each unit's
turnaround) while a small bus still gets every first header at once."""
LOW_BATTERY_REPORT_PCT = 30
"""Detectors at or below this battery percentage are reported. The hub decides its own threshold; the edge only
trims the report to detectors worth a look."""
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

    Counters since start: ``requests`` ring reads and ``header_requests`` header reads (bus requests, answered or
    not), per sensor ``unanswered``, ``missed``, ``invalid``, ``restarts``, ``garbage`` and ``bad_headers``.
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
        self.bad_headers: dict[str, int] = {s.id: 0 for s in self._sensors}
        self.requests = 0
        self.header_requests = 0
        self._garbage_state: dict[str, str] = {}
        self._status_interval_s = config.status_interval_s
        self._header_rate = len(self._sensors) / config.status_interval_s  # header reads per second, on average
        self._header_budget = float(HEADER_READS_PER_ROUND)
        self._header_clock: float | None = None  # time.monotonic() of the last refill
        self._header_due: dict[str, float] = {}  # monotonic time the next header read is due; absent: never read
        self._headers: dict[str, Header] = {}
        self._header_state: dict[str, str] = {}

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

    def device_statuses(self) -> list[DeviceStatus]:
        """The detectors worth a look, sorted by sensor id: those whose last header shows status fault or shielded,
        fault flags set, or a battery at or below ``LOW_BATTERY_REPORT_PCT``, or that sent garbage samples. The
        list is a full snapshot, like ``silent``: a detector left out is healthy (or its header was never read)."""
        statuses: list[DeviceStatus] = []
        for sensor in self._sensors:  # not iterating the dicts the bus thread writes to
            header = self._headers.get(sensor.id)
            garbage = self.garbage[sensor.id]
            if header is not None and (_header_concern(header) or garbage > 0):
                statuses.append(DeviceStatus(sensor.id, header.status, header.battery_pct, header.faults, garbage))
        return sorted(statuses, key=lambda status: status.sensor)

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
                return takes
            if self._answering.get(sensor.id) is False:
                _log.info("sensor %s (unit %d) answering again", sensor.id, sensor.unit_id)
            self._answering[sensor.id] = True
            take = self._take(sensor, decode_ring_bytes(data), cursors.get(sensor.id))
            if take is not None:
                takes.append(take)
        self._read_headers()
        return takes

    def _read_headers(self) -> None:
        """Read the due headers of the detectors answering, never-read first, then the longest overdue, as many as
        the budget holds (see the module docstring)."""
        now = time.monotonic()
        if self._header_clock is not None:
            refill = self._header_rate * (now - self._header_clock)
            self._header_budget = min(float(HEADER_READS_PER_ROUND), self._header_budget + refill)
        self._header_clock = now
        due = [s for s in self._sensors if self._answering.get(s.id) and self._header_due.get(s.id, -math.inf) <= now]
        due.sort(key=lambda s: self._header_due.get(s.id, -math.inf))  # stable: configuration order among equals
        chosen = due[: int(self._header_budget)]
        for index, sensor in enumerate(chosen):
            if self._closing.is_set():
                return
            self._header_budget -= 1
            self.header_requests += 1
            try:
                data = self._transport.read_input_registers(sensor.unit_id, HEADER_ADDRESS, HEADER_COUNT)
            except NoAnswer as exc:
                self._not_answering(sensor, exc.reason)  # still due: read when it answers again
                continue
            except BusDown as exc:
                for rest in chosen[index:]:
                    self._not_answering(rest, exc.reason)
                return
            self._header_due[sensor.id] = now + self._status_interval_s
            self._keep_header(sensor, data)

    def _keep_header(self, sensor: SensorConfig, data: bytes) -> None:
        """Keep a plausible header as the detector's latest; log when what it says is worth a look changes."""
        words = list(struct.unpack_from(f">{len(data) // 2}H", data))
        header = decode_header(words) if len(words) >= HEADER_COUNT else None
        if header is None or not Status.NORMAL <= header.status <= Status.SHIELDED or header.battery_pct > 100:
            self.bad_headers[sensor.id] += 1
            self._headers.pop(sensor.id, None)
            if self._header_state.get(sensor.id) != "bad":
                _log.warning(
                    "sensor %s (unit %d) header not plausible (%s): not reported (logged again only on a change)",
                    sensor.id,
                    sensor.unit_id,
                    f"{len(words)} registers" if header is None else f"status {header.status}, {header.battery_pct} %",
                )
            self._header_state[sensor.id] = "bad"
            return
        self._headers[sensor.id] = header
        state = _header_concern(header)
        previous = self._header_state.get(sensor.id, "")
        if state and state != previous:
            _log.warning(
                "sensor %s (unit %d) reports %s: status %d, battery %d %%, fault flags %#06x",
                sensor.id,
                sensor.unit_id,
                state,
                header.status,
                header.battery_pct,
                header.faults,
            )
        elif previous and not state:
            _log.info("sensor %s (unit %d) reports healthy again", sensor.id, sensor.unit_id)
        self._header_state[sensor.id] = state

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


def _header_concern(header: Header) -> str:
    """What in a header is worth a look, in words ("" for nothing): the state a log line is written on a change of."""
    concerns = []
    if header.status == Status.FAULT:
        concerns.append("fault")
    elif header.status == Status.SHIELDED:
        concerns.append("shielded")
    if header.faults & FAULT_LOW_BATTERY or header.battery_pct <= LOW_BATTERY_REPORT_PCT:
        concerns.append("low battery")
    if header.faults & FAULT_TAMPER:
        concerns.append("tamper")
    if header.faults & ~(FAULT_LOW_BATTERY | FAULT_TAMPER):
        concerns.append("other fault flags")
    return ", ".join(concerns)
