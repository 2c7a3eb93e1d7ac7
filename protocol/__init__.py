"""The wire contract shared by every Anju component.

Topic names, identifiers, sensor kinds and units, the SenML payload codec with the gateway session and
sequence extension fields, hub-acks, gateway state, the gateway's health and command replies, and the Modbus
register map of Anju-compatible detectors. Depends only on the standard library and orjson, so it installs on a gateway.
"""

from protocol.ids import ID_PATTERN, is_valid_id
from protocol.kinds import KINDS, SensorKind, SetPoint, kind_for
from protocol.rejection import Rejection, RejectReason
from protocol.senml import (
    MAX_PAYLOAD_BYTES,
    MAX_READINGS_PER_BATCH,
    Batch,
    Columns,
    Reading,
    decode_batch,
    decode_columns,
    encode_batch,
)
from protocol.session import Ack, GatewayState, decode_ack, decode_state, encode_ack, encode_state
from protocol.telemetry import HealthReport, Reply, decode_health, decode_reply, encode_health, encode_reply
from protocol.topics import Channel, ParsedTopic, parse_topic, topic
from protocol.units import UNITS, Unit

__all__ = [
    "ID_PATTERN",
    "KINDS",
    "MAX_PAYLOAD_BYTES",
    "MAX_READINGS_PER_BATCH",
    "UNITS",
    "Ack",
    "Batch",
    "Channel",
    "Columns",
    "GatewayState",
    "HealthReport",
    "ParsedTopic",
    "Reading",
    "RejectReason",
    "Rejection",
    "Reply",
    "SensorKind",
    "SetPoint",
    "Unit",
    "decode_ack",
    "decode_batch",
    "decode_columns",
    "decode_health",
    "decode_reply",
    "decode_state",
    "encode_ack",
    "encode_batch",
    "encode_health",
    "encode_reply",
    "encode_state",
    "is_valid_id",
    "kind_for",
    "parse_topic",
    "topic",
]
