"""Fuzz target for the edge's decoder of the hub's commands (``edge.commands.parse_command``), the one payload
decoder on the gateway's side: whatever arrives on a command topic — arbitrary bytes, near-miss JSON objects, odd
topics — is a ``Command`` or a ``CommandRejected`` naming the command, never an exception that would stop the
agent's MQTT thread. Bounded for CI by ``ANJU_FUZZ_EXAMPLES`` like tests/test_fuzz_config.py."""

import os

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.commands import Command, CommandRejected, ConfigPush, Ping, Rebirth, TimeCheck, parse_command

EXAMPLES = int(os.environ.get("ANJU_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
BASE = "anju/v1/hongxing/gw-b1/cmd"
NAMES = st.sampled_from(["rebirth", "ping", "time", "config", "reboot", "", "+", "#", "config/extra"])
KEYS = st.sampled_from(["id", "config", "hub_time", "extra", "", "ID"])
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
RESULTS = (Rebirth, Ping, TimeCheck, ConfigPush, CommandRejected)


def decode(topic: str, payload: bytes) -> Command | CommandRejected:
    result = parse_command(topic, payload, community="hongxing", gateway="gw-b1")
    assert isinstance(result, RESULTS), result
    if isinstance(result, CommandRejected):
        assert result.command and result.reason, "a refusal names the command (or '?') and why"
    return result


@FUZZ
@given(name=NAMES, payload=st.binary(max_size=512))
def test_arbitrary_bytes_on_any_command_topic_never_raise(name: str, payload: bytes) -> None:
    decode(f"{BASE}/{name}", payload)


@FUZZ
@given(name=NAMES, body=st.dictionaries(KEYS, ODD, max_size=4))
def test_near_miss_objects_never_raise_and_only_well_formed_ones_pass(name: str, body: dict[str, object]) -> None:
    try:
        payload = orjson.dumps(body)
    except TypeError:  # an integer orjson cannot write (beyond 64 bits): not a payload anyone can send
        return
    result = decode(f"{BASE}/{name}", payload)
    if isinstance(result, ConfigPush):
        assert set(body) == {"id", "config"} and result.text.strip()
    if isinstance(result, TimeCheck):
        assert set(body) == {"hub_time"}


@FUZZ
@given(topic=st.text(max_size=80), payload=st.binary(max_size=64))
def test_any_topic_never_raises(topic: str, payload: bytes) -> None:
    decode(topic, payload)
