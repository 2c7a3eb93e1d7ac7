"""The reading payload: a SenML pack (RFC 8428) in JSON, one message per batch.

Wire form (the first record carries the base fields and the two Anju extension fields)::

    [{"bn": "urn:anju:{community}:{gateway}:", "bt": 1764400000.25, "anju_ses": 3, "anju_seq": 17,
      "n": "gas-101", "u": "%LEL", "v": 3.2},
     {"n": "gas-101", "u": "%LEL", "v": 3.4, "t": 1.0}, ...]

- ``bt`` is Unix time in seconds; each record's time is ``bt + t`` (``t`` defaults to 0). Times are kept
  to the millisecond (``Reading.time_ms``) so that the same point always maps to the same stored row.
- ``anju_ses`` is the gateway session number (it changes on every gateway start, like Sparkplug's bdSeq)
  and ``anju_seq`` the message sequence number within that session. They are extension fields that do not
  end in ``_``, so a plain SenML reader may ignore them (RFC 8428 §4.4).
- ``v`` holds numbers, ``vb`` booleans (stored as 1.0 / 0.0). Base fields appear only in the first record.

``decode_batch`` is total: any bytes give a ``Batch`` or a ``Rejection`` naming what was wrong.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple, cast

import orjson

from protocol.ids import is_valid_id
from protocol.rejection import Rejection, RejectReason
from protocol.units import UNITS

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_BATCH",
    "Batch",
    "Columns",
    "Reading",
    "base_name",
    "decode_batch",
    "decode_columns",
    "encode_batch",
]

MAX_PAYLOAD_BYTES = 256 * 1024
"""Larger payloads are refused before parsing (memory bound per message)."""
MAX_READINGS_PER_BATCH = 5000
MAX_SEQ = 2**63 - 1
_EARLIEST_S = 946_684_800.0  # 2000-01-01: anything before is a gateway whose clock was never set
_LATEST_S = 4_102_444_800.0  # 2100-01-01
_RECORD_KEYS = frozenset({"n", "u", "v", "vb", "t"})
_FIRST_KEYS = _RECORD_KEYS | {"bn", "bt", "anju_ses", "anju_seq"}


class Reading(NamedTuple):
    """One measurement: ``value`` in ``unit`` at ``time_ms`` (Unix epoch, milliseconds).

    A NamedTuple rather than a frozen dataclass: it is just as immutable and typed, and it is built once per
    reading on the ingest path, where it costs half as much (bench/protocol_decode.py).
    """

    sensor: str
    time_ms: int
    value: float
    unit: str


@dataclass(frozen=True, slots=True)
class Batch:
    """One published message: readings of one gateway, numbered by (session, seq)."""

    community: str
    gateway: str
    session: int
    seq: int
    readings: tuple[Reading, ...]


def base_name(community: str, gateway: str) -> str:
    return f"urn:anju:{community}:{gateway}:"


def encode_batch(batch: Batch) -> bytes:
    """Serialise a batch to its SenML JSON form. Raises ValueError on an empty batch (programmer error)."""
    if not batch.readings:
        raise ValueError("a batch holds at least one reading")
    base_ms = batch.readings[0].time_ms
    records: list[dict[str, object]] = []
    for reading in batch.readings:
        record: dict[str, object] = {"n": reading.sensor, "u": reading.unit, "v": reading.value}
        if reading.time_ms != base_ms:
            record["t"] = (reading.time_ms - base_ms) / 1000.0
        records.append(record)
    records[0] = {
        "bn": base_name(batch.community, batch.gateway),
        "bt": base_ms / 1000.0,
        "anju_ses": batch.session,
        "anju_seq": batch.seq,
        **records[0],
    }
    return orjson.dumps(records)


def _number(value: object) -> float | None:
    """A finite JSON number as float, else None (bool is not a number here; huge integers are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


_KNOWN_IDS: set[str] = set()
_KNOWN_IDS_MAX = 100_000


def _remember_id(sensor: str) -> bool:
    """Validate an id not seen before and remember it (bounded: a flood of junk ids cannot grow memory)."""
    if not is_valid_id(sensor):
        return False
    if len(_KNOWN_IDS) < _KNOWN_IDS_MAX:
        _KNOWN_IDS.add(sensor)
    return True


def _counter(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        return None
    return value


@dataclass(frozen=True, slots=True)
class Columns:
    """One decoded message as parallel lists, record i = (names[i], times_ms[i], values[i], units[i]): what the
    hub's ingest takes a round of messages apart into, without a ``Reading`` per record."""

    community: str
    gateway: str
    session: int
    seq: int
    names: list[str]
    times_ms: list[int]
    values: list[float]
    units: list[str]

    def __len__(self) -> int:
        return len(self.names)


def decode_batch(payload: bytes, *, community: str, gateway: str) -> Batch | Rejection:
    """Decode one SenML message published by ``gateway`` of ``community`` (both taken from the topic).

    Checks, in order: size, JSON, pack shape, base name against the topic, session and seq, base time,
    then every record (sensor id, unit, value, time). The first failure is returned as a Rejection.
    """
    decoded = decode_columns(payload, community=community, gateway=gateway)
    if isinstance(decoded, Rejection):
        return decoded
    readings = tuple(map(Reading, decoded.names, decoded.times_ms, decoded.values, decoded.units))
    return Batch(community, gateway, decoded.session, decoded.seq, readings)


_BASE_KEYS = _FIRST_KEYS - _RECORD_KEYS
_UNIT_SYMBOLS = frozenset(UNITS)
_FLOAT = frozenset({float})
_OFFSET_TYPES = frozenset({float, type(None)})
_MAX_OFFSET_S = 86_400.0


def _fast_columns(
    pack: list[dict[str, object]], bt: float, base_ms: int
) -> tuple[list[str], list[int], list[float], list[str]] | None:
    """The records of a well-formed pack as columns, checked a column at a time (C loops: sets, map, sum) rather
    than a record at a time; None when a check fails or the pack uses what these checks do not cover (``vb``,
    integer values or offsets, ids not seen before, a base field missing): ``_record_columns`` then decides and
    names what is wrong. It accepts only what that loop accepts and gives the same columns: a sum of floats is
    finite only if every term is, and a time is ``round((bt + t) * 1000)`` in both."""
    names = [record.get("n") for record in pack]
    units = [record.get("u") for record in pack]
    values = [record.get("v") for record in pack]
    offsets = [record.get("t") for record in pack]
    try:
        if not (_KNOWN_IDS.issuperset(names) and _UNIT_SYMBOLS.issuperset(units)):
            return None
    except TypeError:  # an unhashable id or unit
        return None
    if set(map(type, values)) != _FLOAT or not set(map(type, offsets)) <= _OFFSET_TYPES:
        return None
    floats = cast(list[float], values)
    given = cast(list[float], [offset for offset in offsets if offset is not None])
    # Every record holds n, u, v (none is missing: checked above) and t where given, the first one also its four
    # base fields: as many keys in all means there is no other field (``vb``, unknown ones, a null t).
    if sum(map(len, pack)) != len(_BASE_KEYS) + 3 * len(pack) + len(given):
        return None
    if not math.isfinite(sum(floats)):
        return None
    if given and (not math.isfinite(sum(given)) or min(given) < -_MAX_OFFSET_S or max(given) > _MAX_OFFSET_S):
        return None
    times = [base_ms if offset is None else round((bt + offset) * 1000.0) for offset in cast(list[float], offsets)]
    return cast(list[str], names), times, floats, cast(list[str], units)


def decode_columns(payload: bytes, *, community: str, gateway: str) -> Columns | Rejection:
    """``decode_batch``'s checks, its result as ``Columns``."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(RejectReason.OVERSIZED, f"{len(payload)} bytes > limit {MAX_PAYLOAD_BYTES}")
    try:
        pack = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"not JSON: {exc}")
    if type(pack) is not list or not pack or not all(type(r) is dict for r in pack):
        return Rejection(RejectReason.NOT_SENML, "a SenML pack is a non-empty JSON array of objects")
    if len(pack) > MAX_READINGS_PER_BATCH:
        return Rejection(RejectReason.TOO_MANY_READINGS, f"{len(pack)} records > limit {MAX_READINGS_PER_BATCH}")
    first = pack[0]
    unknown = first.keys() - _FIRST_KEYS
    if unknown:
        return Rejection(RejectReason.NOT_SENML, f"unknown fields {sorted(unknown)} in record 0")
    expected_bn = base_name(community, gateway)
    bn = first.get("bn")
    if bn != expected_bn:
        if isinstance(bn, str) and bn.startswith("urn:anju:") and bn.count(":") == 4:
            return Rejection(
                RejectReason.COMMUNITY_MISMATCH, f"base name {bn!r} does not match the topic's {expected_bn!r}"
            )
        return Rejection(RejectReason.BAD_BASE_NAME, f"base name {bn!r}, expected {expected_bn!r}")
    session = _counter(first.get("anju_ses"))
    if session is None:
        return Rejection(RejectReason.BAD_SESSION, f"anju_ses {first.get('anju_ses')!r} is not an integer >= 0")
    seq = _counter(first.get("anju_seq"))
    if seq is None:
        return Rejection(RejectReason.BAD_SEQ, f"anju_seq {first.get('anju_seq')!r} is not an integer >= 0")
    bt = _number(first.get("bt"))
    if bt is None or not _EARLIEST_S <= bt <= _LATEST_S:
        return Rejection(RejectReason.BAD_TIME, f"base time {first.get('bt')!r} is not Unix seconds in 2000-2100")
    base_ms = round(bt * 1000.0)
    columns = _fast_columns(pack, bt, base_ms) or _record_columns(pack, bt, base_ms)
    if isinstance(columns, Rejection):
        return columns
    return Columns(community, gateway, session, seq, *columns)


def _record_columns(
    pack: list[dict[str, object]], bt: float, base_ms: int
) -> tuple[list[str], list[int], list[float], list[str]] | Rejection:
    """The records as columns, checked one at a time: the first bad one is named."""
    names: list[str] = []
    times: list[int] = []
    values: list[float] = []
    units: list[str] = []
    for index, record in enumerate(pack):
        # Fast paths first (exact types, a cache of ids already validated): this loop runs per reading.
        if index and not record.keys() <= _RECORD_KEYS:
            extra = sorted(record.keys() - _RECORD_KEYS)
            return Rejection(RejectReason.NOT_SENML, f"record {index}: unexpected fields {extra}")
        sensor = record.get("n")
        if type(sensor) is not str or (sensor not in _KNOWN_IDS and not _remember_id(sensor)):
            return Rejection(RejectReason.BAD_ID, f"record {index}: sensor id {sensor!r} is not [a-z0-9-]{{1,64}}")
        unit = record.get("u")
        if type(unit) is not str or unit not in UNITS:
            return Rejection(RejectReason.UNKNOWN_UNIT, f"record {index}: unit {unit!r} is not an Anju unit")
        raw = record.get("v")
        if type(raw) is float and raw - raw == 0.0:  # finite: inf - inf and nan - nan are nan
            value: float | None = raw
        elif "vb" in record:
            if type(record["vb"]) is not bool or "v" in record:
                return Rejection(RejectReason.BAD_VALUE, f"record {index}: vb must be a lone boolean")
            value = 1.0 if record["vb"] else 0.0
        else:
            value = _number(raw)
        if value is None:
            detail = f"record {index}: value {raw!r} is not a finite number"
            return Rejection(RejectReason.BAD_VALUE, detail)
        offset = record.get("t")
        if offset is None:
            time_ms = base_ms
        else:
            offset = _number(offset)
            if offset is None or not -86_400.0 <= offset <= 86_400.0:
                detail = f"record {index}: time offset {record.get('t')!r} not within ±1 day"
                return Rejection(RejectReason.BAD_TIME, detail)
            time_ms = round((bt + offset) * 1000.0)
        names.append(sensor)
        times.append(time_ms)
        values.append(value)
        units.append(unit)
    return names, times, values, units
