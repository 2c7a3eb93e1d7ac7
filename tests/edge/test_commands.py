"""Command decoding: every bad input is a ``CommandRejected`` with a reason, never an exception."""

import orjson
import pytest

from edge.commands import (
    MAX_COMMAND_BYTES,
    MAX_CONFIG_PUSH_BYTES,
    CommandRejected,
    ConfigPush,
    Ping,
    Rebirth,
    TimeCheck,
    parse_command,
)

BASE = "anju/v1/hongxing/gw-b1/cmd"


def _parse(name: str, payload: bytes, *, topic: str | None = None) -> object:
    return parse_command(topic or f"{BASE}/{name}", payload, community="hongxing", gateway="gw-b1")


def test_valid_commands() -> None:
    assert _parse("rebirth", b"") == Rebirth()
    assert _parse("rebirth", b"{}") == Rebirth()
    assert _parse("ping", b'{"id": "p-1"}') == Ping("p-1")
    assert _parse("time", b'{"hub_time": 1764400000.5}') == TimeCheck(1764400000.5)
    assert TimeCheck(1000.0).skew_s(1003.5) == 3.5
    assert _parse("config", b'{"id": "c-1", "config": "community: hongxing\\n"}') == ConfigPush(
        "c-1", "community: hongxing\n"
    )
    text = "x" * (MAX_CONFIG_PUSH_BYTES - 64)  # far above the other commands' limit, within the push's
    assert _parse("config", orjson.dumps({"id": "c-2", "config": text})) == ConfigPush("c-2", text)


@pytest.mark.parametrize(
    ("name", "payload", "topic", "reason"),
    [
        ("ping", b'{"id": "p-1"}', "anju/v1/hongxing/gw-b2/cmd/ping", "meant for gateway hongxing/gw-b2"),
        ("ping", b'{"id": "p-1"}', "anju/v1/other/gw-b1/cmd/ping", "meant for gateway other/gw-b1"),
        ("ping", b"not json", None, "not JSON"),
        ("ping", b"[1]", None, "must be a JSON object"),
        ("ping", b"{}", None, "id None must be a string"),
        ("ping", b'{"id": ""}', None, "id '' must be a string"),
        ("ping", b'{"id": 7}', None, "id 7 must be a string"),
        ("ping", b'{"id": "a\\nb"}', None, "printable"),
        ("ping", b'{"id": "x", "reply": 1}', None, "unknown keys ['reply']"),
        ("ping", b"", None, "not JSON"),
        ("time", b'{"hub_time": "now"}', None, "must be a number"),
        ("time", b'{"hub_time": true}', None, "must be a number"),
        ("time", b'{"hub_time": 12}', None, "between 2000 and 2100"),
        ("time", b'{"hub_time": 1e400}', None, "not JSON"),
        ("rebirth", b'{"now": true}', None, "unknown keys ['now']"),
        ("config", b"{}", None, "id None must be a string"),
        ("config", b'{"id": "c-1"}', None, "config must be the whole edge.yaml as a JSON string, got null"),
        ("config", b'{"id": "c-1", "config": " "}', None, "got empty text"),
        ("config", b'{"id": "c-1", "config": {"gateway": "gw-b1"}}', None, "got dict"),
        ("config", b'{"id": "c-1", "config": "a: 1", "apply": true}', None, "unknown keys ['apply']"),
        ("config", b"community: hongxing", None, "not JSON"),
        ("config", b'{"id": "' + b"i" * 70_000 + b'", "config": "a: 1"}', None, "1-64 printable"),
        ("config", b'{"id": "c", "config": "' + b"x" * MAX_CONFIG_PUSH_BYTES + b'"}', None, "limit 262144"),
        ("reboot", b"{}", None, "unknown command"),
        ("ping", b"{" + b" " * MAX_COMMAND_BYTES + b"}", None, "limit"),
        ("?", b"", "anju/v1/hongxing/gw-b1/data", "not a command topic"),
        ("?", b"", "garbage", "bad topic"),
    ],
)
def test_bad_commands_are_rejected_with_a_reason(name: str, payload: bytes, topic: str | None, reason: str) -> None:
    result = _parse(name, payload, topic=topic)
    assert isinstance(result, CommandRejected), result
    assert result.command == name
    assert reason in result.reason
    assert len(result.reason) < 300, "a refusal's reason goes into a log line: never the whole payload"
