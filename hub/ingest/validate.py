"""Turn one received MQTT message into readings to store and rejections to dead-letter.

Total: any topic and payload give an ``Inspection``; nothing raises. A message-level problem (bad topic,
bytes that are not a SenML batch, unknown gateway, wrong community) rejects the whole message; a
record-level problem (unknown sensor, wrong unit for the sensor's kind, value outside the physical range)
rejects only that reading, and the message's other readings are kept (DESIGN.md "Never lose").
"""

from dataclasses import dataclass
from typing import cast

import orjson

from hub.ingest.registry import Registry, SensorInfo
from protocol import Columns, Reading, Rejection, RejectReason, decode_columns
from protocol.topics import Channel, ParsedTopic, parse_topic

__all__ = ["Accepted", "Inspection", "inspect_message"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A decoded message and, as parallel lists, the records that passed the registry checks (in the unit of
    their sensor's kind): the ingest round concatenates these lists instead of building an object per reading."""

    batch: Columns
    channel: Channel
    names: list[str]
    times_ms: list[int]
    values: list[float]
    infos: list[SensorInfo]

    @property
    def readings(self) -> list[tuple[Reading, SensorInfo]]:
        """The kept records as (reading, sensor) pairs (tests, tools)."""
        return [
            (Reading(n, t, v, i.kind.unit), i)
            for n, t, v, i in zip(self.names, self.times_ms, self.values, self.infos, strict=True)
        ]


@dataclass(frozen=True, slots=True)
class Inspection:
    accepted: Accepted | None
    rejections: tuple[tuple[Rejection, bytes], ...]
    """Each refusal with the raw bytes to keep: the whole payload, or the one record that was refused."""
    implausible: tuple[tuple[SensorInfo, int, float], ...] = ()
    """(sensor, time ms, value) of the refused records that were a registered sensor's value in its unit but
    outside its kind's physical range: also a sign of a broken detector (``hub.detection.health``)."""


def _reject(rejection: Rejection, payload: bytes) -> Inspection:
    return Inspection(None, ((rejection, payload),))


def inspect_message(topic: str, payload: bytes, registry: Registry) -> Inspection:
    parsed = parse_topic(topic)
    if isinstance(parsed, Rejection):
        return _reject(parsed, payload)
    if parsed.channel not in (Channel.DATA, Channel.ALARM):
        return _reject(Rejection(RejectReason.BAD_TOPIC, f"hub does not ingest {parsed.channel.value!r}"), payload)
    problem = check_origin(parsed, registry)
    if problem is not None:
        return _reject(problem, payload)
    decoded = decode_columns(payload, community=parsed.community, gateway=parsed.gateway)
    if isinstance(decoded, Rejection):
        return _reject(decoded, payload)
    sensors = registry.on_gateway[parsed.gateway]
    infos = [sensors.get(name) for name in decoded.names]
    # The common case in one pass without building anything (this runs per reading); only a message with a bad
    # record is taken apart record by record, and _check_reading says what is wrong with each.
    good = True
    for info, unit, value in zip(infos, decoded.units, decoded.values, strict=True):
        if info is None or unit != info.kind.unit or not info.kind.minimum <= value <= info.kind.maximum:
            good = False
            break
    if good:
        kept = cast(list[SensorInfo], infos)  # every one checked above
        accepted = Accepted(decoded, parsed.channel, decoded.names, decoded.times_ms, decoded.values, kept)
        return Inspection(accepted, ())
    accepted = Accepted(decoded, parsed.channel, [], [], [], [])
    refused: list[tuple[Rejection, bytes]] = []
    implausible: list[tuple[SensorInfo, int, float]] = []
    for name, time_ms, value, unit, info in zip(
        decoded.names, decoded.times_ms, decoded.values, decoded.units, infos, strict=True
    ):
        rejection = _check_reading(Reading(name, time_ms, value, unit), info, parsed.gateway)
        if rejection is None and info is not None:
            accepted.names.append(name)
            accepted.times_ms.append(time_ms)
            accepted.values.append(value)
            accepted.infos.append(info)
        elif rejection is not None:
            record = orjson.dumps({"n": name, "u": unit, "v": value, "time_ms": time_ms})
            refused.append((rejection, record))
            if rejection.reason is RejectReason.OUT_OF_RANGE and info is not None:
                implausible.append((info, time_ms, value))
    return Inspection(accepted, tuple(refused), tuple(implausible))


def check_origin(parsed: ParsedTopic, registry: Registry) -> Rejection | None:
    """Refuse messages from gateways the deployment does not know or from the wrong community."""
    if parsed.community != registry.community:
        return Rejection(
            RejectReason.COMMUNITY_MISMATCH,
            f"topic community {parsed.community!r} is not this hub's community {registry.community!r}",
        )
    if parsed.gateway not in registry.gateways:
        return Rejection(RejectReason.UNKNOWN_GATEWAY, f"gateway {parsed.gateway!r} is not registered")
    return None


def _check_reading(reading: Reading, info: SensorInfo | None, gateway: str) -> Rejection | None:
    if info is None:
        return Rejection(RejectReason.UNKNOWN_SENSOR, f"sensor {reading.sensor!r} is not registered on {gateway!r}")
    kind = info.kind
    if reading.unit != kind.unit:
        return Rejection(
            RejectReason.WRONG_UNIT,
            f"sensor {reading.sensor!r} is {kind.name} in {kind.unit!r}, reading is in {reading.unit!r}",
        )
    if not kind.minimum <= reading.value <= kind.maximum:
        return Rejection(
            RejectReason.OUT_OF_RANGE,
            f"sensor {reading.sensor!r}: {reading.value} {kind.unit} outside {kind.minimum}..{kind.maximum}",
        )
    return None
