import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import Ack, GatewayState, Rejection, RejectReason, decode_ack, decode_state, encode_ack, encode_state
from protocol.topics import Channel, ParsedTopic, parse_topic, subscription, topic


def test_topics_round_trip() -> None:
    for channel in (Channel.DATA, Channel.ALARM, Channel.STATE, Channel.ACK, Channel.HEALTH):
        name = topic("hongxing", "gw-b1", channel)
        assert name == f"anju/v1/hongxing/gw-b1/{channel.value}"
        assert parse_topic(name) == ParsedTopic("hongxing", "gw-b1", channel)
    assert parse_topic(topic("hongxing", "gw-b1", Channel.CMD, "rebirth")) == ParsedTopic(
        "hongxing", "gw-b1", Channel.CMD, "rebirth"
    )
    assert subscription(Channel.DATA) == "anju/v1/+/+/data"


def test_health_and_reply_topics() -> None:
    assert topic("hongxing", "gw-b1", Channel.HEALTH) == "anju/v1/hongxing/gw-b1/health"
    reply = topic("hongxing", "gw-b1", Channel.REPLY, "ping")
    assert reply == "anju/v1/hongxing/gw-b1/reply/ping"
    assert parse_topic(reply) == ParsedTopic("hongxing", "gw-b1", Channel.REPLY, "ping")
    assert subscription(Channel.HEALTH) == "anju/v1/+/+/health"
    assert subscription(Channel.REPLY) == "anju/v1/+/+/reply/+"
    assert subscription(Channel.CMD, community="hongxing", gateway="gw-b1") == "anju/v1/hongxing/gw-b1/cmd/+"
    with pytest.raises(ValueError, match="command name"):
        topic("hongxing", "gw-b1", Channel.REPLY)
    with pytest.raises(ValueError, match="command name"):
        topic("hongxing", "gw-b1", Channel.HEALTH, "ping")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("anju/v2/hongxing/gw-b1/data", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1", RejectReason.BAD_TOPIC),
        ("anju/v1/Hongxing/gw-b1/data", RejectReason.BAD_ID),
        ("anju/v1/hongxing/gw b1/data", RejectReason.BAD_ID),
        ("anju/v1/hongxing/gw-b1/metrics", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/data/extra", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/cmd", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/reply", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/reply/Ping", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/reply/ping/extra", RejectReason.BAD_TOPIC),
        ("anju/v1/hongxing/gw-b1/health/extra", RejectReason.BAD_TOPIC),
        ("anju/v1/" + "a" * 65 + "/gw-b1/data", RejectReason.BAD_ID),
    ],
)
def test_bad_topics_are_rejected_with_a_reason(name: str, reason: RejectReason) -> None:
    result = parse_topic(name)
    assert isinstance(result, Rejection) and result.reason is reason


def test_topic_builder_refuses_bad_ids() -> None:
    with pytest.raises(ValueError, match="community id"):
        topic("Hong Xing", "gw", Channel.DATA)


def test_ack_and_state_round_trip() -> None:
    assert decode_ack(encode_ack(Ack(3, 17))) == Ack(3, 17)
    state = GatewayState("online", 4, 1764400000.5)
    assert decode_state(encode_state(state)) == state


@pytest.mark.parametrize(
    "payload", [b"", b"{", b"[]", b'{"session": -1, "seq": 1}', b'{"session": 1, "seq": true}', b'{"session": 1}']
)
def test_bad_acks_are_rejected(payload: bytes) -> None:
    assert isinstance(decode_ack(payload), Rejection)


@pytest.mark.parametrize(
    "payload",
    [b'{"status": "maybe", "session": 1, "time": 1}', b'{"status": "online", "session": "1", "time": 1}', b"x" * 5000],
)
def test_bad_states_are_rejected(payload: bytes) -> None:
    assert isinstance(decode_state(payload), Rejection)


@given(st.binary(max_size=512))
def test_session_decoders_are_total(payload: bytes) -> None:
    decode_ack(payload)
    decode_state(payload)
