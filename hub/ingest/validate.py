"""Turn one received MQTT message into readings to store and rejections to dead-letter.

Total: any topic and payload give an ``Inspection``; nothing raises. A message-level problem (bad topic,
bytes that are not a SenML batch, unknown gateway, wrong community) rejects the whole message; a
record-level problem (unknown sensor, wrong unit for the sensor's kind, value outside the physical range)
rejects only that reading, and the message's other readings are kept (DESIGN.md "Never lose").
"""

from dataclasses import dataclass

import orjson

from hub.ingest.registry import Registry, SensorInfo
from protocol import Batch, Reading, Rejection, RejectReason, decode_batch
from protocol.topics import Channel, ParsedTopic, parse_topic

__all__ = ["Accepted", "Inspection", "inspect_message"]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A decoded batch with the readings that passed the registry checks."""

    batch: Batch
    channel: Channel
    readings: tuple[tuple[Reading, SensorInfo], ...]


@dataclass(frozen=True, slots=True)
class Inspection:
    accepted: Accepted | None
    rejections: tuple[tuple[Rejection, bytes], ...]
    """Each refusal with the raw bytes to keep: the whole payload, or the one record that was refused."""


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
    decoded = decode_batch(payload, community=parsed.community, gateway=parsed.gateway)
    if isinstance(decoded, Rejection):
        return _reject(decoded, payload)
    kept: list[tuple[Reading, SensorInfo]] = []
    refused: list[tuple[Rejection, bytes]] = []
    keep = kept.append
    sensors = registry.on_gateway[parsed.gateway]
    for reading in decoded.readings:
        # The common case inline (this loop runs per reading); _check_reading says what is wrong otherwise.
        info = sensors.get(reading.sensor)
        if info is not None:
            kind = info.kind
            if reading.unit == kind.unit and kind.minimum <= reading.value <= kind.maximum:
                keep((reading, info))
                continue
        rejection = _check_reading(reading, info, parsed.gateway)
        if rejection is not None:
            record = orjson.dumps(
                {"n": reading.sensor, "u": reading.unit, "v": reading.value, "time_ms": reading.time_ms}
            )
            refused.append((rejection, record))
    return Inspection(Accepted(decoded, parsed.channel, tuple(kept)), tuple(refused))


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
