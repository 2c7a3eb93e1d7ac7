"""The gateway's own health (``health``) and its answers to commands (``reply/{name}``), gateway -> hub.

Health payload, a JSON object of at most ``MAX_HEALTH_BYTES``::

    {"time": 1764400000.25, "outbox_readings": 3, "outbox_bytes": 180, "oldest_unacked_s": 2.25,
     "clock_skew_s": null, ..., "silent": ["gas-b1-301"],
     "devices": [{"sensor": "smoke-b1-f3", "status": 3, "battery_pct": 7, "faults": 1, "garbage": 0}]}

- ``time``: the gateway's clock when the snapshot was taken, Unix seconds (required; the hub keeps its own
  receive time too, so a gateway with a wrong clock still shows how old its report is).
- the numeric fields of ``HEALTH_FIELDS`` (units in the names, meanings there); ``null`` means not known
  (``clock_skew_s`` before any ``cmd/time``), and so does a missing field.
- ``silent``: ids of the detectors that did not answer on the bus at their last poll. The hub cannot tell
  otherwise: a detector that stopped answering and one with nothing new to report both send no readings.
- ``devices``: detectors worth a look (``DeviceStatus``): each one's own report from its header registers
  (GB/T 45839 status, battery, fault flags: low battery, tamper) and the samples the gateway refused from it as
  physically impossible. Like ``silent`` it is a full snapshot: a detector not listed is healthy. A missing
  ``devices`` is an edge that predates it, taken as empty; a present one is checked entry by entry (exact
  integers in range, valid and unique ids; unknown keys inside an entry are ignored, as at the top level).

Health is decoded tolerantly: unknown keys are ignored and known numeric fields may be missing. Gateways in
the field and the hub are upgraded at different times, and health is a report nothing acts on for delivery,
so a newer edge with an extra field (or an older one without one) must still be seen, not dead-lettered. A
known field of the wrong type is refused: that is a broken sender, not a newer one. (Commands are the
opposite, strict: they are carried out, and a misspelt key must not be silently ignored.)

Reply payload, a JSON object of at most ``MAX_REPLY_BYTES``, on ``reply/{name}`` for ``cmd/{name}``::

    {"command": "ping", "ok": true, "time": 1764400000.3, "id": "p-7", "detail": "pong"}
    {"command": "time", "ok": true, "time": 1764400000.3, "skew_s": 0.012, "detail": "clock skew +0.012 s"}
    {"command": "reboot", "ok": false, "time": 1764400000.3, "detail": "unknown command"}

``command`` repeats the topic's name so a dead-lettered reply explains itself; ``ok`` false carries the
refusal's reason in ``detail``; ``id`` echoes a ping's id; ``skew_s`` is gateway minus hub in seconds. Replies
follow the same tolerance rule as health (unknown keys ignored, known keys typed).

Both decoders are total: any bytes give a value or a ``Rejection`` with a reason; they never raise.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import orjson

from protocol.ids import is_valid_id
from protocol.rejection import Rejection, RejectReason

__all__ = [
    "HEALTH_FIELDS",
    "MAX_HEALTH_BYTES",
    "MAX_REPLY_BYTES",
    "MAX_SILENT_DETECTORS",
    "DeviceStatus",
    "HealthReport",
    "Reply",
    "decode_health",
    "decode_reply",
    "encode_health",
    "encode_reply",
]

HEALTH_FIELDS: Mapping[str, str] = {
    "outbox_readings": "readings held in the outbox (count)",
    "outbox_bytes": "bytes the outbox's rows take (B)",
    "unsent_readings": "readings never published yet (count)",
    "unacked_batches": "published batches the hub has not acknowledged (count)",
    "oldest_unacked_s": "age of the oldest reading held, by its device time (s)",
    "dropped_readings": "readings thinned or dropped because the outbox was full (count, ever)",
    "reconnects": "broker reconnections since the agent started (count)",
    "hub_online": "1 unless the hub's retained state says offline (0/1)",
    "bad_acks": "hub-acks that could not be decoded (count since start)",
    "garbage_samples": "detector samples refused as physically impossible (count since start)",
    "unanswered_polls": "polls a detector did not answer (count since start)",
    "commands_rejected": "commands refused (count since start)",
    "clock_skew_s": "gateway clock minus hub clock at the last cmd/time (s)",
    "cpu_s": "CPU time of the agent process, user + system (s)",
    "rss_bytes": "resident memory of the agent process (B)",
    "disk_free_bytes": "free space on the outbox's file system (B; -1 unknown)",
    "client_rebuilds": "MQTT clients replaced because their network thread died or stalled (count since start)",
    "health_skipped": "health snapshots not sent because the broker was unreachable (count since start)",
}
"""Every health field the hub knows, with its meaning and unit. A gateway may send more (ignored) or fewer."""

MAX_HEALTH_BYTES = 240 * 1024
"""Larger payloads are refused unparsed. The largest report the codec allows is ~226,100 bytes: a full ``silent``
list (``MAX_SILENT_DETECTORS`` ids of 64 characters: 68,609 bytes), a full ``devices`` list (as many entries of
152 bytes each, 64-character id and every number at its widest: 156,673 bytes) and every numeric field at its
widest (~760 bytes). 240 KiB leaves ~19 KB for fields a newer edge adds and stays 16 KiB under the broker's
``message_size_limit`` (262,144 bytes, ``deploy/mosquitto/anju.conf``), which would drop a larger one unseen."""
MAX_SILENT_DETECTORS = 1024
"""A Modbus bus holds 247 units; a gateway with a few buses stays well below. Also the limit of ``devices``."""
_MAX_COUNT = 2**64 - 1
"""The largest integer JSON carries exactly here (orjson); a ``garbage`` count above it cannot be sent."""
MAX_REPLY_BYTES = 4096
MAX_DETAIL_CHARS = 512
_LATEST_S = 4_102_444_800.0  # 2100-01-01
_RESERVED = frozenset({"time", "silent", "devices"})
_DEVICE_RANGES: Mapping[str, tuple[int, int, str]] = {
    "status": (1, 4, "a GB/T 45839 status code 1..4"),
    "battery_pct": (0, 100, "an integer 0..100"),
    "faults": (0, 0xFFFF, "an integer 0..65535"),
    "garbage": (0, _MAX_COUNT, "an integer >= 0"),
}
"""The integer fields of a ``devices`` entry: (lowest, highest, what a refusal says the value must be). Status codes
are ``protocol.registers.Status``: 1 normal, 2 alarm, 3 fault, 4 shielded."""


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """One detector's own report (its header registers) plus what the gateway saw of its samples."""

    sensor: str
    """Detector (sensor) id, ``protocol.ids`` valid."""
    status: int
    """GB/T 45839 code from header word 1: 1 normal, 2 alarm, 3 fault, 4 shielded."""
    battery_pct: int
    """Header word 2, 0..100."""
    faults: int
    """Header word 8 fault flag bits (bit 0 low battery, bit 1 tamper), 0..65535."""
    garbage: int
    """Samples refused as physically impossible since the agent started (count, >= 0)."""


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One health snapshot: ``values`` holds the known numeric fields that were present and not null."""

    time_s: float
    values: Mapping[str, float] = field(default_factory=dict)
    silent: tuple[str, ...] = ()
    """Sorted, unique detector (sensor) ids not answering on the bus."""
    devices: tuple[DeviceStatus, ...] = ()
    """Detectors worth a look, sorted by sensor, one entry each; a detector not listed is healthy."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The gateway's answer to ``cmd/{command}``."""

    command: str
    ok: bool
    time_s: float
    detail: str = ""
    id: str | None = None
    skew_s: float | None = None


def encode_health(report: HealthReport) -> bytes:
    """The JSON form; non-finite values go out as null (not known). Raises ValueError on bad names or ids."""
    body: dict[str, object] = {"time": report.time_s}
    for name, value in report.values.items():
        if name in _RESERVED or not _is_field_name(name):
            raise ValueError(f"health field name {name!r} is reserved or not [a-z][a-z0-9_]{{0,63}}")
        body[name] = value if math.isfinite(value) else None
    bad = [sensor for sensor in report.silent if not is_valid_id(sensor)]
    if bad or len(report.silent) > MAX_SILENT_DETECTORS:
        raise ValueError(f"silent detectors must be at most {MAX_SILENT_DETECTORS} valid ids, bad: {bad!r}")
    body["silent"] = sorted(set(report.silent))
    body["devices"] = _encode_devices(report.devices)
    return orjson.dumps(body)


def _encode_devices(devices: tuple[DeviceStatus, ...]) -> list[dict[str, object]]:
    """The ``devices`` list sorted by sensor; raises ValueError naming the first bad entry."""
    if len(devices) > MAX_SILENT_DETECTORS:
        raise ValueError(f"devices must be at most {MAX_SILENT_DETECTORS} entries, got {len(devices)}")
    seen: set[str] = set()
    entries: list[dict[str, object]] = []
    for device in devices:
        entry = asdict(device)
        problem = _device_problem(entry, seen)
        if problem is not None:
            raise ValueError(f"device status {device!r}: {problem}")
        entries.append(entry)
    return sorted(entries, key=lambda entry: str(entry["sensor"]))


def encode_reply(reply: Reply) -> bytes:
    """The JSON form; ``id`` and ``skew_s`` only when set. Raises ValueError on a bad command name."""
    if not is_valid_id(reply.command):
        raise ValueError(f"command name {reply.command!r} does not match [a-z0-9-]{{1,64}}")
    body: dict[str, object] = {"command": reply.command, "ok": reply.ok, "time": reply.time_s}
    body["detail"] = reply.detail[:MAX_DETAIL_CHARS]
    if reply.id is not None:
        body["id"] = reply.id
    if reply.skew_s is not None and math.isfinite(reply.skew_s):
        body["skew_s"] = reply.skew_s
    return orjson.dumps(body)


def decode_health(payload: bytes) -> HealthReport | Rejection:
    """Decode a health snapshot tolerantly (see the module docstring); never raises."""
    body = _load(payload, MAX_HEALTH_BYTES, RejectReason.BAD_HEALTH)
    if isinstance(body, Rejection):
        return body
    time_s = _time(body.get("time"), RejectReason.BAD_HEALTH)
    if isinstance(time_s, Rejection):
        return time_s
    values: dict[str, float] = {}
    for name in HEALTH_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if not _is_number(value):
            return Rejection(RejectReason.BAD_HEALTH, f"{name} {_short(value)} is not a number")
        values[name] = float(value)  # type: ignore[arg-type]
    silent = body.get("silent", [])
    if not isinstance(silent, list) or len(silent) > MAX_SILENT_DETECTORS:
        return Rejection(RejectReason.BAD_HEALTH, f"silent must be a list of at most {MAX_SILENT_DETECTORS} ids")
    for sensor in silent:
        if not is_valid_id(sensor):
            return Rejection(RejectReason.BAD_HEALTH, f"silent detector {_short(sensor)} is not a valid id")
    devices = _decode_devices(body.get("devices", []))
    if isinstance(devices, Rejection):
        return devices
    return HealthReport(time_s, values, tuple(sorted(set(silent))), devices)


def _decode_devices(entries: object) -> tuple[DeviceStatus, ...] | Rejection:
    """A present ``devices`` is checked entry by entry (a missing one is an older edge: empty)."""
    if not isinstance(entries, list) or len(entries) > MAX_SILENT_DETECTORS:
        return Rejection(RejectReason.BAD_HEALTH, f"devices must be a list of at most {MAX_SILENT_DETECTORS} entries")
    seen: set[str] = set()
    devices: list[DeviceStatus] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return Rejection(RejectReason.BAD_HEALTH, f"devices[{index}] {_short(entry)} is not an object")
        problem = _device_problem(entry, seen)
        if problem is not None:
            return Rejection(RejectReason.BAD_HEALTH, f"devices[{index}].{problem}")
        devices.append(
            DeviceStatus(entry["sensor"], entry["status"], entry["battery_pct"], entry["faults"], entry["garbage"])
        )
    return tuple(sorted(devices, key=lambda device: device.sensor))


def _device_problem(entry: Mapping[str, object], seen: set[str]) -> str | None:
    """What is wrong with one ``devices`` entry, as ``field value is not …`` (None: nothing); adds its sensor
    to ``seen``. Unknown keys are not looked at."""
    sensor = entry.get("sensor")
    if not is_valid_id(sensor):
        return f"sensor {_short(sensor)} is not a valid id"
    if sensor in seen:
        return f"sensor {_short(sensor)} is listed twice"
    for name, (lowest, highest, what) in _DEVICE_RANGES.items():
        value = entry.get(name)
        if type(value) is not int or not lowest <= value <= highest:
            return f"{name} {_short(value)} is not {what}"
    seen.add(str(sensor))
    return None


def decode_reply(payload: bytes) -> Reply | Rejection:
    """Decode a command reply (unknown keys ignored, known keys typed); never raises."""
    body = _load(payload, MAX_REPLY_BYTES, RejectReason.BAD_REPLY)
    if isinstance(body, Rejection):
        return body
    command, ok = body.get("command"), body.get("ok")
    if not is_valid_id(command):
        return Rejection(RejectReason.BAD_REPLY, f"command {_short(command)} is not a valid command name")
    if not isinstance(ok, bool):
        return Rejection(RejectReason.BAD_REPLY, f"ok {_short(ok)} is not true or false")
    time_s = _time(body.get("time"), RejectReason.BAD_REPLY)
    if isinstance(time_s, Rejection):
        return time_s
    detail = body.get("detail", "")
    if not isinstance(detail, str) or len(detail) > MAX_DETAIL_CHARS:
        return Rejection(RejectReason.BAD_REPLY, f"detail must be a string of at most {MAX_DETAIL_CHARS} characters")
    reply_id = body.get("id")
    if reply_id is not None and not (isinstance(reply_id, str) and 1 <= len(reply_id) <= 64 and reply_id.isprintable()):
        return Rejection(RejectReason.BAD_REPLY, f"id {_short(reply_id)} must be 1-64 printable characters")
    skew_s = body.get("skew_s")
    if skew_s is not None and not _is_number(skew_s):
        return Rejection(RejectReason.BAD_REPLY, f"skew_s {_short(skew_s)} is not a number")
    return Reply(
        command,  # type: ignore[arg-type]
        ok,
        time_s,
        detail,
        reply_id,
        None if skew_s is None else float(skew_s),  # type: ignore[arg-type]
    )


def _load(payload: bytes, limit: int, reason: RejectReason) -> dict[str, object] | Rejection:
    if len(payload) > limit:
        return Rejection(RejectReason.OVERSIZED, f"{len(payload)} bytes > limit {limit}")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"not JSON: {exc}")
    if not isinstance(body, dict):
        return Rejection(reason, f"expected a JSON object, got {type(body).__name__}")
    return body


def _is_number(value: object) -> bool:
    """A JSON number that fits a float: not a bool (a Python int), not an int too large, not inf/NaN."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**1023
    return isinstance(value, float) and math.isfinite(value)


def _time(value: object, reason: RejectReason) -> float | Rejection:
    """The gateway's Unix time in seconds. Anything from 1970 on is kept: a Pi without a real-time clock that
    never reached NTP reports 1970, and that is exactly the gateway whose health must still be seen."""
    if not _is_number(value) or not 0 <= value <= _LATEST_S:  # type: ignore[operator]
        return Rejection(reason, f"time {_short(value)} is not Unix seconds between 1970 and 2100")
    return float(value)  # type: ignore[arg-type]


def _is_field_name(name: str) -> bool:
    return (
        1 <= len(name) <= 64
        and name[0].isascii()
        and name[0].islower()
        and all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in name)
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
