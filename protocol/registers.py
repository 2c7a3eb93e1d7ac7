"""Modbus register map of an Anju-compatible detector (one Modbus unit id per detector on a gateway's bus).

Everything is in input registers (function code 04), 16-bit words, multi-word numbers big-endian (high
word first), as on most RS-485 gas and water-level transmitters. The full map with examples is in
``firmware_sim/README.md``.

Header, addresses 0-15::

    0   kind code            u16   KIND_CODES: 1 gas, 2 smoke, 3 temperature, 4 water-depth, 5 co, … 16
    1   status               u16   GB/T 45839: 1 normal, 2 alarm, 3 fault, 4 shielded
    2   battery              u16   percent
    3   signal strength      i16   dBm
    4   scale exponent       i16   value = raw * 10**exponent
    5   ring capacity        u16   number of history entries (15)
    6-7 sample counter       u32   samples produced since power-on; also the seq of the newest entry
    8   fault flags          u16   bit 0 low battery, bit 1 tamper (enclosure opened / detector removed)
    9-15 reserved            0

History ring, addresses 16-135: ``RING_CAPACITY`` entries of 8 registers. The sample with counter ``s``
(s >= 1) sits in entry ``(s - 1) % RING_CAPACITY``::

    +0-1  seq      u32   sample counter of this entry, 0 = empty
    +2-5  time     u64   device clock, Unix epoch milliseconds
    +6-7  raw      i32   value * 10**-exponent

A gateway that reads the ring (one request of 120 registers) at least once per ``RING_CAPACITY`` samples
never misses a reading, and can tell exactly how many it missed when it falls behind (gap in seq).
"""

import struct
from dataclasses import dataclass

__all__ = [
    "FAULT_LOW_BATTERY",
    "FAULT_TAMPER",
    "HEADER_ADDRESS",
    "HEADER_COUNT",
    "KIND_CODES",
    "KIND_EXPONENTS",
    "RING_ADDRESS",
    "RING_CAPACITY",
    "RING_COUNT",
    "Header",
    "Sample",
    "Status",
    "decode_header",
    "decode_ring",
    "decode_ring_bytes",
    "encode_header",
    "encode_sample",
    "from_raw",
    "ring_slot",
    "to_raw",
]

HEADER_ADDRESS = 0
HEADER_COUNT = 16
RING_ADDRESS = 16
RING_CAPACITY = 15
ENTRY_WORDS = 8
RING_COUNT = RING_CAPACITY * ENTRY_WORDS

KIND_CODES: dict[str, int] = {
    "gas": 1,
    "smoke": 2,
    "temperature": 3,
    "water-depth": 4,
    "co": 5,
    "residual-current": 6,
    "cable-temperature": 7,
    "pressure": 8,
    "manhole-tilt": 9,
    "manhole-open": 10,
    "structural-tilt": 11,
    "lift-entrapment": 12,
    "lift-ebike": 13,
    "water-meter": 14,
    "help-button": 15,
    "door-contact": 16,
}
KIND_EXPONENTS: dict[str, int] = {
    "gas": -1,
    "smoke": -3,
    "temperature": -1,
    "water-depth": -3,
    "co": 0,
    "residual-current": -3,
    "cable-temperature": -1,
    "pressure": 3,
    "manhole-tilt": -1,
    "manhole-open": 0,
    "structural-tilt": -5,
    "lift-entrapment": 0,
    "lift-ebike": 0,
    "water-meter": -3,
    "help-button": 0,
    "door-contact": 0,
}
"""Resolution per kind: 0.1 %LEL, 0.001 dB/m, 0.1 °C, 1 mm, 1 ppm, 1 mA, 0.1 °C, 1 kPa, 0.1°, state,
0.00001 (Δ/H), state, state, 1 L, state, state. Two-state kinds read 0 or 1."""


class Status:
    """GB/T 45839-2025 device status codes."""

    NORMAL = 1
    ALARM = 2
    FAULT = 3
    SHIELDED = 4


FAULT_LOW_BATTERY = 0x0001
FAULT_TAMPER = 0x0002
"""Bits of header register 8 (fault flags)."""


@dataclass(frozen=True, slots=True)
class Header:
    kind_code: int
    status: int
    battery_pct: int
    signal_dbm: int
    exponent: int
    capacity: int
    counter: int
    faults: int = 0
    """Fault flags (register 8): bit 0 low battery, bit 1 tamper."""


@dataclass(frozen=True, slots=True)
class Sample:
    seq: int
    time_ms: int
    raw: int


def to_raw(value: float, exponent: int) -> int:
    """Quantise a physical value to the device's integer register value."""
    return round(value * 10.0 ** (-exponent))


def from_raw(raw: int, exponent: int) -> float:
    """The physical value a raw register value stands for (division keeps 25.3 exact as 253 / 10)."""
    return raw / 10 ** (-exponent) if exponent < 0 else float(raw * 10**exponent)


def _u16(value: int) -> int:
    return value & 0xFFFF


def _signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def _words(value: int, count: int) -> list[int]:
    return [(value >> (16 * (count - 1 - i))) & 0xFFFF for i in range(count)]


def _join(words: list[int]) -> int:
    result = 0
    for word in words:
        result = (result << 16) | (word & 0xFFFF)
    return result


def encode_header(header: Header) -> list[int]:
    words = [
        header.kind_code,
        header.status,
        header.battery_pct,
        _u16(header.signal_dbm),
        _u16(header.exponent),
        header.capacity,
        *_words(header.counter, 2),
        header.faults,
    ]
    return words + [0] * (HEADER_COUNT - len(words))


def decode_header(words: list[int]) -> Header:
    """Decode registers 0-15. Raises ValueError on a short read (a driver error, not device data)."""
    if len(words) < 8:
        raise ValueError(f"header needs 8 registers, got {len(words)}")
    return Header(
        kind_code=words[0],
        status=words[1],
        battery_pct=words[2],
        signal_dbm=_signed16(words[3]),
        exponent=_signed16(words[4]),
        capacity=words[5],
        counter=_join(words[6:8]),
        faults=words[8] if len(words) > 8 else 0,
    )


def ring_slot(seq: int) -> int:
    """Register address of the ring entry that holds sample ``seq`` (seq >= 1)."""
    return RING_ADDRESS + ((seq - 1) % RING_CAPACITY) * ENTRY_WORDS


def encode_sample(sample: Sample) -> list[int]:
    raw = sample.raw & 0xFFFFFFFF
    return [*_words(sample.seq, 2), *_words(sample.time_ms, 4), *_words(raw, 2)]


def decode_ring(words: list[int]) -> list[Sample]:
    """Decode the ring block (registers 16-135) into its non-empty samples, oldest first."""
    return decode_ring_bytes(struct.pack(f">{len(words)}H", *(w & 0xFFFF for w in words)))


_RING_STRUCT = struct.Struct(">" + "IQi" * RING_CAPACITY)
"""One entry is seq u32, time u64, raw i32, high word first: the big-endian byte order of the wire."""


def decode_ring_bytes(data: bytes) -> list[Sample]:
    """Decode the ring block as it travels (``2 * RING_COUNT`` bytes, big-endian) into its non-empty samples,
    oldest first. One C-level unpack for the whole ring: the edge does this hundreds of times a second.
    A shorter block (a partial ring) is decoded entry by entry; a trailing partial entry is ignored."""
    if len(data) == _RING_STRUCT.size:
        fields = _RING_STRUCT.unpack(data)
    else:
        whole = len(data) // (2 * ENTRY_WORDS)
        fields = struct.unpack_from(">" + "IQi" * whole, data)
    samples = [Sample(fields[i], fields[i + 1], fields[i + 2]) for i in range(0, len(fields), 3) if fields[i] != 0]
    samples.sort(key=lambda s: s.seq)
    return samples
