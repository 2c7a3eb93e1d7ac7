"""In-process detectors for load tests: the ``sim`` driver answers register reads without any bus.

It exists to load the rest of the edge (outbox, publishing, hub-acks) with thousands of detectors on one
machine, where a Modbus simulator process would be the bottleneck. The physics-level simulator with faults
and incidents is ``firmware_sim`` (a separate deployable the edge never imports); this one only has to be
cheap and honest about the register map:

- each configured unit samples at ``sample_hz`` from the moment the transport is made, its counter and device
  times derived from the clock (``time.time``), so readings are never duplicated and none are skipped;
- values sit on the safe side of every set point of the kind (a quiet building), with a small deterministic
  wobble so consecutive readings differ; a water meter counts up;
- rings and headers follow ``protocol.registers`` exactly, so the ring reader treats them like a real device.
"""

import math
import struct
import time
from collections.abc import Callable, Sequence

from edge.config import SensorConfig
from edge.drivers.transport import NoAnswer
from protocol.kinds import KINDS
from protocol.registers import (
    ENTRY_WORDS,
    HEADER_ADDRESS,
    HEADER_COUNT,
    KIND_CODES,
    RING_ADDRESS,
    RING_CAPACITY,
    RING_COUNT,
    Header,
    Sample,
    Status,
    encode_header,
    encode_sample,
    to_raw,
)

__all__ = ["SimTransport", "quiet_value"]


def quiet_value(kind: str, seq: int) -> float:
    """A plausible value of ``kind`` for sample ``seq`` in a building where nothing is wrong."""
    spec = KINDS[kind]
    span = spec.maximum - spec.minimum
    if spec.unit == "/":
        return 0.0  # two-state kinds (door closed, button not pressed, cover in place)
    if not spec.set_points:
        return spec.minimum + min(span, 0.001 * seq)  # cumulative (water meter): one litre per sample
    above = [p.clear for p in spec.set_points if p.above]
    below = [p.clear for p in spec.set_points if not p.above]
    low = max(below, default=max(spec.minimum, 0.0))
    high = min(above, default=spec.maximum)
    middle = low + 0.3 * (high - low) if above else low + 0.1 * (high - low)
    wobble = 0.02 * (high - low) * math.sin(seq * 0.7)
    return min(max(middle + wobble, low), high)


class SimTransport:
    """Serves the header and ring of every configured unit, sampling at ``sample_hz`` on ``clock``."""

    def __init__(
        self, *, sensors: Sequence[SensorConfig], sample_hz: float, clock: Callable[[], float] = time.time
    ) -> None:
        if not 0 < sample_hz <= 100:
            raise ValueError(f"sample_hz {sample_hz} outside (0, 100]")
        self._kinds = {s.unit_id: s.kind for s in sensors}
        self._exponents = {s.unit_id: s.exponent for s in sensors}
        self._period_ms = 1000.0 / sample_hz
        self._clock = clock
        self._start_ms = int(clock() * 1000)
        self.requests = 0

    def read_input_registers(self, unit_id: int, address: int, count: int) -> bytes:
        self.requests += 1
        if unit_id not in self._kinds:
            raise NoAnswer(unit_id, "exception 0x0b (gateway target device failed to respond)")
        counter = int((self._clock() * 1000 - self._start_ms) // self._period_ms)
        words = self._header(unit_id, counter) + self._ring(unit_id, counter)
        end = address + count
        if address < HEADER_ADDRESS or end > RING_ADDRESS + RING_COUNT:
            raise NoAnswer(unit_id, "exception 0x02 (illegal data address)")
        return struct.pack(f">{count}H", *words[address:end])

    def close(self) -> None:
        """Nothing to release: no connection, no port."""

    def _header(self, unit_id: int, counter: int) -> list[int]:
        kind = self._kinds[unit_id]
        header = Header(
            kind_code=KIND_CODES[kind],
            status=Status.NORMAL,
            battery_pct=100,
            signal_dbm=-60,
            exponent=self._exponents[unit_id],
            capacity=RING_CAPACITY,
            counter=counter,
        )
        words = encode_header(header)
        assert len(words) == HEADER_COUNT
        return words

    def _ring(self, unit_id: int, counter: int) -> list[int]:
        kind, exponent = self._kinds[unit_id], self._exponents[unit_id]
        words = [0] * RING_COUNT
        for seq in range(max(1, counter - RING_CAPACITY + 1), counter + 1):
            time_ms = self._start_ms + int(seq * self._period_ms)
            slot = ((seq - 1) % RING_CAPACITY) * ENTRY_WORDS
            sample = Sample(seq, time_ms, to_raw(quiet_value(kind, seq), exponent))
            words[slot : slot + ENTRY_WORDS] = encode_sample(sample)
        return words
