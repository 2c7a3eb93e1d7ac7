"""The health and reply codecs: round trips, the tolerance rule, refusals with reasons, and totality."""

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import (
    HealthReport,
    Rejection,
    RejectReason,
    Reply,
    decode_health,
    decode_reply,
    encode_health,
    encode_reply,
)
from protocol.telemetry import HEALTH_FIELDS, MAX_HEALTH_BYTES, MAX_SILENT_DETECTORS

T = 1_764_400_000.25


def test_health_round_trips_and_non_finite_values_travel_as_unknown() -> None:
    report = HealthReport(T, {"outbox_bytes": 180.0, "oldest_unacked_s": 2.25}, ("gas-b1-301", "gas-b1-101"))
    decoded = decode_health(encode_health(report))
    assert decoded == HealthReport(T, {"outbox_bytes": 180.0, "oldest_unacked_s": 2.25}, ("gas-b1-101", "gas-b1-301"))
    skew = encode_health(HealthReport(T, {"clock_skew_s": math.nan, "cpu_s": 0.5}))
    assert orjson.loads(skew)["clock_skew_s"] is None
    assert decode_health(skew) == HealthReport(T, {"cpu_s": 0.5}, ())


def test_health_is_tolerant_of_unknown_and_missing_fields() -> None:
    newer = decode_health(b'{"time": 1764400000, "outbox_bytes": 7, "zigbee_links": 3, "silent": []}')
    assert newer == HealthReport(1764400000.0, {"outbox_bytes": 7.0}, ())
    assert decode_health(b'{"time": 0}') == HealthReport(0.0, {}, ())  # a Pi whose clock never got set
    assert "zigbee_links" not in HEALTH_FIELDS


@pytest.mark.parametrize(
    ("payload", "reason", "words"),
    [
        (b"", RejectReason.MALFORMED_JSON, "not JSON"),
        (b"[1, 2]", RejectReason.BAD_HEALTH, "JSON object"),
        (b'{"outbox_bytes": 1}', RejectReason.BAD_HEALTH, "time None"),
        (b'{"time": "now"}', RejectReason.BAD_HEALTH, "time 'now'"),
        (b'{"time": 5e9}', RejectReason.BAD_HEALTH, "between 1970 and 2100"),
        (b'{"time": -1}', RejectReason.BAD_HEALTH, "between 1970 and 2100"),
        (b'{"time": 1, "outbox_bytes": "180"}', RejectReason.BAD_HEALTH, "outbox_bytes '180' is not a number"),
        (b'{"time": 1, "hub_online": true}', RejectReason.BAD_HEALTH, "hub_online True"),
        (b'{"time": 1, "silent": "gas-1"}', RejectReason.BAD_HEALTH, "silent must be a list"),
        (b'{"time": 1, "silent": ["Gas 1"]}', RejectReason.BAD_HEALTH, "'Gas 1' is not a valid id"),
        (b'{"time": 1, "silent": [7]}', RejectReason.BAD_HEALTH, "7 is not a valid id"),
        (b"{" + b" " * MAX_HEALTH_BYTES + b"}", RejectReason.OVERSIZED, "limit"),
    ],
)
def test_bad_health_is_refused_with_a_reason(payload: bytes, reason: RejectReason, words: str) -> None:
    result = decode_health(payload)
    assert isinstance(result, Rejection), result
    assert result.reason is reason and words in result.detail


def test_too_many_silent_detectors_are_refused_both_ways() -> None:
    ids = [f"d-{i}" for i in range(MAX_SILENT_DETECTORS + 1)]
    assert isinstance(decode_health(orjson.dumps({"time": 1, "silent": ids})), Rejection)
    with pytest.raises(ValueError, match="silent detectors"):
        encode_health(HealthReport(T, {}, tuple(ids)))


def test_health_encoder_refuses_programmer_errors() -> None:
    with pytest.raises(ValueError, match="reserved"):
        encode_health(HealthReport(T, {"time": 1.0}))
    with pytest.raises(ValueError, match="reserved"):
        encode_health(HealthReport(T, {"Outbox": 1.0}))
    with pytest.raises(ValueError, match="valid ids"):
        encode_health(HealthReport(T, {}, ("no/slash",)))


def test_replies_round_trip() -> None:
    for reply in (
        Reply("ping", True, T, "pong", id="p-7"),
        Reply("time", True, T, "clock skew +0.012 s", skew_s=0.012),
        Reply("reboot", False, T, "unknown command"),
    ):
        assert decode_reply(encode_reply(reply)) == reply
    assert decode_reply(b'{"command": "ping", "ok": true, "time": 1, "firmware": "2.1"}') == Reply("ping", True, 1.0)
    with pytest.raises(ValueError, match="command name"):
        encode_reply(Reply("Ping!", True, T))


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b'{"ok": true, "time": 1}', "command None"),
        (b'{"command": "ping", "ok": 1, "time": 1}', "ok 1 is not true or false"),
        (b'{"command": "ping", "ok": true}', "time None"),
        (b'{"command": "ping", "ok": true, "time": 1, "detail": 5}', "detail must be a string"),
        (b'{"command": "ping", "ok": true, "time": 1, "detail": "' + b"x" * 600 + b'"}', "at most 512"),
        (b'{"command": "ping", "ok": true, "time": 1, "id": ""}', "1-64 printable"),
        (b'{"command": "time", "ok": true, "time": 1, "skew_s": "3"}', "skew_s '3' is not a number"),
    ],
)
def test_bad_replies_are_refused_with_a_reason(payload: bytes, words: str) -> None:
    result = decode_reply(payload)
    assert isinstance(result, Rejection) and result.reason is RejectReason.BAD_REPLY, result
    assert words in result.detail


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
near_health = st.dictionaries(
    st.sampled_from([*HEALTH_FIELDS, "time", "silent", "command", "ok", "id", "detail", "skew_s", "other"]),
    json_values,
    max_size=10,
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_never_raise(payload: bytes) -> None:
    assert isinstance(decode_health(payload), HealthReport | Rejection)
    assert isinstance(decode_reply(payload), Reply | Rejection)


@settings(max_examples=400, deadline=None)
@given(near_health)
def test_near_miss_objects_never_raise(body: dict[str, object]) -> None:
    payload = orjson.dumps(body)
    health = decode_health(payload)
    reply = decode_reply(payload)
    assert isinstance(health, HealthReport | Rejection) and isinstance(reply, Reply | Rejection)
    if isinstance(health, HealthReport):  # what was accepted encodes again to the same report
        assert decode_health(encode_health(health)) == health
    if isinstance(reply, Reply):
        assert decode_reply(encode_reply(reply)) == reply
