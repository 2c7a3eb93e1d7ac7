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
from protocol.telemetry import HEALTH_FIELDS, MAX_HEALTH_BYTES, MAX_SILENT_DETECTORS, DeviceStatus

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


LOW_BATTERY = DeviceStatus("smoke-b1-f3", 3, 7, 1, 0)
TAMPERED = DeviceStatus("gas-b1-301", 3, 88, 2, 4)
ENTRY = b'{"sensor": "smoke-b1-f3", "status": 3, "battery_pct": 7, "faults": 1, "garbage": 0}'
BROKER_MESSAGE_SIZE_LIMIT = 262_144
"""``message_size_limit`` in deploy/mosquitto/anju.conf: the broker drops anything larger unseen."""


def test_device_statuses_round_trip_sorted_by_sensor() -> None:
    report = HealthReport(T, {"outbox_bytes": 1.0}, ("gas-b1-101",), (LOW_BATTERY, TAMPERED))
    payload = encode_health(report)
    assert orjson.loads(payload)["devices"] == [
        {"sensor": "gas-b1-301", "status": 3, "battery_pct": 88, "faults": 2, "garbage": 4},
        {"sensor": "smoke-b1-f3", "status": 3, "battery_pct": 7, "faults": 1, "garbage": 0},
    ]
    decoded = decode_health(payload)
    assert decoded == HealthReport(T, {"outbox_bytes": 1.0}, ("gas-b1-101",), (TAMPERED, LOW_BATTERY))
    assert orjson.loads(encode_health(HealthReport(T)))["devices"] == []


def test_devices_missing_is_an_older_edge_and_unknown_keys_in_an_entry_are_ignored() -> None:
    older = decode_health(b'{"time": 1, "silent": ["gas-1"]}')
    assert isinstance(older, HealthReport) and older.devices == ()
    newer = decode_health(
        b'{"time": 1, "devices": [{"sensor": "smoke-b1-f3", "status": 3, "battery_pct": 7, "faults": 1, '
        b'"garbage": 0, "signal_dbm": -71}]}'
    )
    assert isinstance(newer, HealthReport) and newer.devices == (LOW_BATTERY,)


def _entry(**changes: object) -> bytes:
    entry = {**orjson.loads(ENTRY), **changes}
    return orjson.dumps({k: v for k, v in entry.items() if v != "<missing>"})


@pytest.mark.parametrize(
    ("devices", "words"),
    [
        (b'"smoke-b1-f3"', "devices must be a list of at most 1024 entries"),
        (b'{"smoke-b1-f3": 3}', "devices must be a list"),
        (b"null", "devices must be a list"),
        (b"[" + ENTRY + b", 7]", "devices[1] 7 is not an object"),
        (b"[" + ENTRY + b", [1, 2]]", "devices[1] [1, 2] is not an object"),
        (b"[" + _entry(sensor="Smoke 3") + b"]", "devices[0].sensor 'Smoke 3' is not a valid id"),
        (b"[" + _entry(sensor="<missing>") + b"]", "devices[0].sensor None is not a valid id"),
        (b"[" + _entry(sensor=12) + b"]", "devices[0].sensor 12 is not a valid id"),
        (b"[" + ENTRY + b", " + ENTRY + b"]", "devices[1].sensor 'smoke-b1-f3' is listed twice"),
        (b"[" + _entry(status=0) + b"]", "devices[0].status 0 is not a GB/T 45839 status code 1..4"),
        (b"[" + _entry(status=5) + b"]", "devices[0].status 5 is not a GB/T 45839 status code 1..4"),
        (b"[" + _entry(status=3.0) + b"]", "devices[0].status 3.0 is not"),
        (b"[" + _entry(status=True) + b"]", "devices[0].status True is not"),
        (b"[" + _entry(status="3") + b"]", "devices[0].status '3' is not"),
        (b"[" + _entry(battery_pct=101) + b"]", "devices[0].battery_pct 101 is not an integer 0..100"),
        (b"[" + _entry(battery_pct=-1) + b"]", "devices[0].battery_pct -1 is not an integer 0..100"),
        (b"[" + _entry(battery_pct=None) + b"]", "devices[0].battery_pct None is not an integer 0..100"),
        (b"[" + _entry(faults=65536) + b"]", "devices[0].faults 65536 is not an integer 0..65535"),
        (b"[" + _entry(faults=-1) + b"]", "devices[0].faults -1 is not an integer 0..65535"),
        (b"[" + _entry(faults="<missing>") + b"]", "devices[0].faults None is not an integer 0..65535"),
        (b"[" + _entry(garbage=-3) + b"]", "devices[0].garbage -3 is not an integer >= 0"),
        (b"[" + _entry(garbage=1.5) + b"]", "devices[0].garbage 1.5 is not an integer >= 0"),
        (b"[" + ENTRY[:-1] + b', "garbage": 1e30}]', "devices[0].garbage 1e+30 is not an integer >= 0"),
        (b"[" + ENTRY[:-1] + b', "garbage": 18446744073709551616}]', "devices[0].garbage 1.8446744073709552e+19"),
    ],
)
def test_bad_device_statuses_are_refused_naming_entry_and_field(devices: bytes, words: str) -> None:
    result = decode_health(b'{"time": 1, "devices": ' + devices + b"}")
    assert isinstance(result, Rejection) and result.reason is RejectReason.BAD_HEALTH, result
    assert words in result.detail, result.detail


def test_too_many_device_statuses_are_refused_both_ways() -> None:
    entries = [{**orjson.loads(ENTRY), "sensor": f"d-{i}"} for i in range(MAX_SILENT_DETECTORS + 1)]
    refused = decode_health(orjson.dumps({"time": 1, "devices": entries}))
    assert isinstance(refused, Rejection) and "devices must be a list of at most 1024" in refused.detail
    accepted = decode_health(orjson.dumps({"time": 1, "devices": entries[:-1]}))
    assert isinstance(accepted, HealthReport) and len(accepted.devices) == MAX_SILENT_DETECTORS
    statuses = tuple(DeviceStatus(f"d-{i}", 3, 7, 1, 0) for i in range(MAX_SILENT_DETECTORS + 1))
    with pytest.raises(ValueError, match="devices must be at most 1024"):
        encode_health(HealthReport(T, {}, (), statuses))


@pytest.mark.parametrize(
    ("device", "words"),
    [
        (DeviceStatus("Smoke 3", 3, 7, 1, 0), "sensor 'Smoke 3' is not a valid id"),
        (DeviceStatus("smoke-3", 9, 7, 1, 0), "status 9 is not"),
        (DeviceStatus("smoke-3", 3, 107, 1, 0), "battery_pct 107 is not"),
        (DeviceStatus("smoke-3", 3, 7, 1 << 16, 0), "faults 65536 is not"),
        (DeviceStatus("smoke-3", 3, 7, 1, -1), "garbage -1 is not"),
        (DeviceStatus("smoke-3", 3, 7.0, 1, 0), "battery_pct 7.0 is not"),  # type: ignore[arg-type]
    ],
)
def test_health_encoder_refuses_bad_device_statuses_naming_the_entry(device: DeviceStatus, words: str) -> None:
    with pytest.raises(ValueError, match="device status DeviceStatus") as refused:
        encode_health(HealthReport(T, {}, (), (device,)))
    assert words in str(refused.value)
    with pytest.raises(ValueError, match="listed twice"):
        encode_health(HealthReport(T, {}, (), (LOW_BATTERY, LOW_BATTERY)))


def test_the_largest_report_fits_the_limit_and_the_broker() -> None:
    """Full ``silent`` and ``devices`` lists of 64-character ids, every number at its widest."""
    ids = [f"{i:04d}-" + "x" * 59 for i in range(MAX_SILENT_DETECTORS)]
    assert all(len(sensor) == 64 for sensor in ids)
    widest = {name: -1.7976931348623157e308 for name in HEALTH_FIELDS}
    devices = tuple(DeviceStatus(sensor, 4, 100, 65535, 2**64 - 1) for sensor in ids)
    report = HealthReport(4_102_444_799.999999, widest, tuple(ids), devices)
    payload = encode_health(report)
    assert 220_000 < len(payload) <= MAX_HEALTH_BYTES <= BROKER_MESSAGE_SIZE_LIMIT
    assert decode_health(payload) == report


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
device_entries = st.dictionaries(
    st.sampled_from(["sensor", "status", "battery_pct", "faults", "garbage", "other"]),
    st.sampled_from(["gas-1", "gas-2", "Gas 1", ""])
    | st.integers(-2, 70_000)
    | st.sampled_from([0, 1, 4, 5, 100, 101, 65535, 65536, 2**64 - 1])
    | json_values,
    max_size=6,
)
near_devices = st.lists(
    st.fixed_dictionaries(
        {
            "sensor": st.sampled_from(["gas-1", "gas-2", "smoke-3"]),
            "status": st.integers(0, 5),
            "battery_pct": st.integers(-1, 101),
            "faults": st.sampled_from([0, 1, 2, 3, 65535, 65536]),
            "garbage": st.sampled_from([0, 1, -1, 2**64 - 1]),
        }
    )
    | device_entries
    | json_values,
    max_size=4,
)
near_health = st.dictionaries(
    st.sampled_from([*HEALTH_FIELDS, "time", "silent", "devices", "command", "ok", "id", "detail", "skew_s", "other"]),
    json_values,
    max_size=10,
) | st.fixed_dictionaries({"time": st.sampled_from([0, 1.5, 1_764_400_000]), "devices": near_devices | json_values})


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
