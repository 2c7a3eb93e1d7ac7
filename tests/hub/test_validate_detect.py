from pathlib import Path

import pytest

from alerts.model import Grade
from hub.config import load_deployment
from hub.detection.rules import RuleEngine, default_rules
from hub.ingest.registry import Registry
from hub.ingest.validate import inspect_message
from protocol import Batch, Reading, RejectReason, encode_batch
from tests.vectors import senml_vectors

T0 = 1_764_400_000_000


@pytest.fixture
def registry(demo_deployment: Path) -> Registry:
    return Registry(load_deployment(demo_deployment))


def _rules(registry: Registry, community_name: str = "") -> RuleEngine:
    return RuleEngine(
        community="hongxing",
        community_name=community_name,
        ruleset=default_rules(),
        sensors=list(registry.sensors.values()),
    )


def payload(*readings: Reading, gateway: str = "gw-b1", community: str = "hongxing", seq: int = 1) -> bytes:
    return encode_batch(Batch(community, gateway, 1, seq, readings))


def test_valid_batch_is_accepted_whole(registry: Registry) -> None:
    body = payload(Reading("gas-b1-301", T0, 3.0, "%LEL"), Reading("temp-b1-301", T0, 22.5, "Cel"))
    inspection = inspect_message("anju/v1/hongxing/gw-b1/data", body, registry)
    assert inspection.rejections == ()
    assert inspection.accepted is not None and len(inspection.accepted.readings) == 2


@pytest.mark.parametrize(
    ("topic", "body", "reason"),
    [
        (
            "anju/v1/hongxing/gw-b9/data",
            payload(Reading("gas-b1-301", T0, 3.0, "%LEL"), gateway="gw-b9"),
            "unknown_gateway",
        ),
        (
            "anju/v1/other/gw-b1/data",
            payload(Reading("gas-b1-301", T0, 3.0, "%LEL"), community="other"),
            "community_mismatch",
        ),
        ("anju/v1/hongxing/GW/data", b"[]", "bad_id"),
        ("anju/v1/hongxing/gw-b1/data", b"{not json", "malformed_json"),
        ("anju/v1/hongxing/gw-b1/data", b"[" + b"0," * 140_000 + b"0]", "oversized"),
        (
            "anju/v1/hongxing/gw-b1/data",
            payload(Reading("gas-b1-301", T0, 3.0, "%LEL"), gateway="gw-b2"),
            "community_mismatch",
        ),
    ],
)
def test_message_level_rejections(registry: Registry, topic: str, body: bytes, reason: str) -> None:
    inspection = inspect_message(topic, body, registry)
    assert inspection.accepted is None
    ((rejection, raw),) = inspection.rejections
    assert rejection.reason.value == reason and raw == body


def test_bad_readings_are_refused_one_by_one_and_the_rest_kept(registry: Registry) -> None:
    body = payload(
        Reading("gas-b1-301", T0, 3.0, "%LEL"),
        Reading("gas-b2-301", T0, 3.0, "%LEL"),  # registered, but on the other gateway
        Reading("temp-b1-301", T0, 22.0, "%LEL"),  # wrong unit for its kind
        Reading("gas-b1-101", T0, 250.0, "%LEL"),  # beyond 100 %LEL
        Reading("nobody", T0, 1.0, "Cel"),
        Reading("smoke-b1-f1", T0, 0.01, "dB/m"),
    )
    inspection = inspect_message("anju/v1/hongxing/gw-b1/data", body, registry)
    assert inspection.accepted is not None
    assert [r.sensor for r, _ in inspection.accepted.readings] == ["gas-b1-301", "smoke-b1-f1"]
    assert [r.reason for r, _ in inspection.rejections] == [
        RejectReason.UNKNOWN_SENSOR,
        RejectReason.WRONG_UNIT,
        RejectReason.OUT_OF_RANGE,
        RejectReason.UNKNOWN_SENSOR,
    ]
    assert b"temp-b1-301" in inspection.rejections[1][1]


def test_set_points_escalate_and_clear_with_hysteresis(registry: Registry) -> None:
    detector = _rules(registry, "红星社区")
    info = registry.by_id["gas-b1-301"]
    values = [5, 12, 26, 24, 21, 55, 45, 35, 15, 9, 7]
    events = []
    for i, value in enumerate(values):
        events += [
            (i, e.status, e.grade, e.rule)
            for e in detector.observe([(Reading(info.id, T0 + i * 1000, value, "%LEL"), info)])
        ]
    assert events == [
        (1, "firing", Grade.IV, "pre-warning"),
        (2, "firing", Grade.III, "level-1 alarm"),
        # 24 and 21 stay above the level-1 clear level (20): no flapping
        (5, "firing", Grade.II, "level-2 alarm"),
        # 45 is above the level-2 clear level (40); 35 is below it but still past level 1
        (7, "firing", Grade.III, "level-1 alarm"),
        (8, "firing", Grade.IV, "pre-warning"),
        (10, "cleared", Grade.IV, "pre-warning"),
    ]


def test_replayed_readings_are_not_judged_again(registry: Registry) -> None:
    detector = _rules(registry)
    info = registry.by_id["water-b1-basement"]
    first = detector.observe([(Reading(info.id, T0 + 5000, 0.12, "m"), info)])
    assert [e.grade for e in first] == [Grade.III]
    assert detector.observe([(Reading(info.id, T0, 0.5, "m"), info)]) == []
    (event,) = detector.observe([(Reading(info.id, T0 + 6000, 0.2, "m"), info)])
    assert event.grade is Grade.II and event.key == "hongxing/water-b1-basement/water-depth/level"
    assert event.location_zh == "1栋地下室" and event.threshold == 0.15


@pytest.mark.parametrize("vector", senml_vectors()["invalid"], ids=lambda v: v["name"])
def test_hub_refuses_every_invalid_golden_vector_with_its_reason(registry: Registry, vector: dict[str, str]) -> None:
    name = f"anju/v1/{vector['community']}/{vector['gateway']}/data"
    inspection = inspect_message(name, vector["payload"].encode(), registry)
    assert inspection.accepted is None
    ((rejection, raw),) = inspection.rejections
    assert rejection.reason.value == vector["reason"] and raw == vector["payload"].encode()


@pytest.mark.parametrize("vector", senml_vectors()["valid"], ids=lambda v: v["name"])
def test_hub_decodes_valid_golden_vectors_like_the_protocol(registry: Registry, vector: dict) -> None:  # type: ignore[type-arg]
    name = f"anju/v1/{vector['community']}/{vector['gateway']}/data"
    inspection = inspect_message(name, vector["payload"].encode(), registry)
    assert inspection.accepted is not None
    kept = [[r.sensor, r.time_ms, r.value, r.unit] for r, _ in inspection.accepted.readings]
    refused = {rejection.reason for rejection, _ in inspection.rejections}
    expected = vector["expect"]["readings"]
    registered = [row for row in expected if registry.sensor(vector["gateway"], row[0]) is not None]
    assert kept == registered
    assert refused <= {RejectReason.UNKNOWN_SENSOR}
    assert len(kept) + len(inspection.rejections) == len(expected)
