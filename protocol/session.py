"""Session messages: hub-acks (``ack``) and gateway birth / death (``state``).

Ack payload: ``{"session": 3, "seq": 17}`` — the hub has committed every message of session 3 up to and
including seq 17 (highest contiguous). The gateway may then delete those rows from its outbox.

State payload (retained): ``{"status": "online" | "offline", "session": 3, "time": 1764400000.0}``. The
birth is published on connect; the same topic with status offline is the MQTT Will, so the broker
announces a dead gateway. The hub's own retained state at ``anju/v1/hub/state`` uses the same shape with
session 0.
"""

from dataclasses import dataclass
from typing import Literal

import orjson

from protocol.rejection import Rejection, RejectReason
from protocol.senml import MAX_SEQ

__all__ = ["Ack", "GatewayState", "decode_ack", "decode_state", "encode_ack", "encode_state"]

_MAX_SMALL = 4096


@dataclass(frozen=True, slots=True)
class Ack:
    session: int
    seq: int


@dataclass(frozen=True, slots=True)
class GatewayState:
    status: Literal["online", "offline"]
    session: int
    time_s: float


def encode_ack(ack: Ack) -> bytes:
    return orjson.dumps({"session": ack.session, "seq": ack.seq})


def encode_state(state: GatewayState) -> bytes:
    return orjson.dumps({"status": state.status, "session": state.session, "time": state.time_s})


def _is_counter(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _load(payload: bytes, reason: RejectReason) -> dict[str, object] | Rejection:
    if len(payload) > _MAX_SMALL:
        return Rejection(RejectReason.OVERSIZED, f"{len(payload)} bytes > limit {_MAX_SMALL}")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return Rejection(RejectReason.MALFORMED_JSON, f"not JSON: {exc}")
    if not isinstance(body, dict):
        return Rejection(reason, "expected a JSON object")
    return body


def decode_ack(payload: bytes) -> Ack | Rejection:
    body = _load(payload, RejectReason.BAD_ACK)
    if isinstance(body, Rejection):
        return body
    session, seq = body.get("session"), body.get("seq")
    if not _is_counter(session) or not _is_counter(seq):
        return Rejection(RejectReason.BAD_ACK, f"session {session!r} and seq {seq!r} must be integers >= 0")
    return Ack(session, seq)  # type: ignore[arg-type]


def decode_state(payload: bytes) -> GatewayState | Rejection:
    body = _load(payload, RejectReason.BAD_STATE)
    if isinstance(body, Rejection):
        return body
    status, session, time_s = body.get("status"), body.get("session"), body.get("time")
    if status not in ("online", "offline"):
        return Rejection(RejectReason.BAD_STATE, f"status {status!r} is not 'online' or 'offline'")
    if not _is_counter(session):
        return Rejection(RejectReason.BAD_STATE, f"session {session!r} is not an integer >= 0")
    if isinstance(time_s, bool) or not isinstance(time_s, int | float):
        return Rejection(RejectReason.BAD_STATE, f"time {time_s!r} is not a number")
    return GatewayState(status, session, float(time_s))  # type: ignore[arg-type]
