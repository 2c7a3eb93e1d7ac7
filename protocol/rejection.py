"""Why an input was refused: decoders return a ``Rejection`` instead of raising into the caller's loop."""

import enum
from dataclasses import dataclass

__all__ = ["RejectReason", "Rejection"]


class RejectReason(enum.StrEnum):
    """Stable reason codes; they label the ``anju_payloads_rejected_total{reason}`` counter."""

    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    NOT_SENML = "not_senml"
    BAD_TOPIC = "bad_topic"
    BAD_ID = "bad_id"
    BAD_BASE_NAME = "bad_base_name"
    BAD_SESSION = "bad_session"
    BAD_SEQ = "bad_seq"
    BAD_TIME = "bad_time"
    BAD_VALUE = "bad_value"
    UNKNOWN_UNIT = "unknown_unit"
    WRONG_UNIT = "wrong_unit"
    TOO_MANY_READINGS = "too_many_readings"
    UNKNOWN_GATEWAY = "unknown_gateway"
    UNKNOWN_SENSOR = "unknown_sensor"
    COMMUNITY_MISMATCH = "community_mismatch"
    OUT_OF_RANGE = "out_of_range"
    BAD_STATE = "bad_state"
    BAD_ACK = "bad_ack"
    BAD_HEALTH = "bad_health"
    BAD_REPLY = "bad_reply"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused input: ``reason`` is the stable code, ``detail`` says what exactly was wrong."""

    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"
