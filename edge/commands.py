"""Commands from the hub on ``anju/v1/{community}/{gateway}/cmd/{name}``: decoded and validated, never trusted.

Payloads (JSON objects, at most ``MAX_COMMAND_BYTES``; unknown keys are refused so a typo is not silently
ignored; these schemas are the edge's until the lead moves them to ``protocol/``):

- ``rebirth``: empty, or ``{}``: roll over to a new session and resend every unacknowledged reading under it;
- ``ping``: ``{"id": "<1-64 printable chars>"}``: answered on ``reply/ping`` with the id (``protocol.telemetry``);
- ``time``: ``{"hub_time": <unix seconds>}``: the gateway's clock skew against the hub, ``gateway - hub`` in
  seconds (> 0: the gateway's clock is ahead), warned about above ``CLOCK_SKEW_WARN_S``;
- ``config``: ``{"id": "<1-64 printable chars>", "config": "<the whole edge.yaml as text>"}``, at most
  ``MAX_CONFIG_PUSH_BYTES``: a new configuration, validated, applied and tried by ``edge.reconfigure``.

``parse_command`` returns a command or a ``CommandRejected`` with a reason (another gateway's topic, a bad
payload, a command this edge does not support); it never raises on input.
"""

import math
from dataclasses import dataclass

import orjson

from protocol.rejection import Rejection
from protocol.topics import Channel, parse_topic

__all__ = [
    "CLOCK_SKEW_WARN_S",
    "MAX_COMMAND_BYTES",
    "MAX_CONFIG_PUSH_BYTES",
    "Command",
    "CommandRejected",
    "ConfigPush",
    "Ping",
    "Rebirth",
    "TimeCheck",
    "parse_command",
]

MAX_COMMAND_BYTES = 4096
MAX_CONFIG_PUSH_BYTES = 256 * 1024
"""``cmd/config`` only: it carries a whole edge.yaml. One bus holds at most 247 detectors; with a Chinese location
comment each (JSON may escape every character as 6 bytes) that is ~70 KB, so 256 KiB leaves 3x room. The bound
also caps the parse: ruamel (pure Python) took 1.6 s for 256 KiB of YAML on the development machine, several
times that on a Pi, which is why the push is parsed in a worker thread."""
CLOCK_SKEW_WARN_S = 2.0
"""Above this the gateway's device-time stamps (the detectors' clocks are set from it) are visibly off."""
_EARLIEST_S = 946_684_800.0  # 2000-01-01, as protocol.senml
_LATEST_S = 4_102_444_800.0  # 2100-01-01


@dataclass(frozen=True, slots=True)
class Rebirth:
    pass


@dataclass(frozen=True, slots=True)
class Ping:
    id: str


@dataclass(frozen=True, slots=True)
class TimeCheck:
    hub_time_s: float

    def skew_s(self, gateway_time_s: float) -> float:
        """Gateway clock minus hub clock in seconds (ignores the broker's transit time, well under 2 s)."""
        return gateway_time_s - self.hub_time_s


@dataclass(frozen=True, slots=True)
class ConfigPush:
    """A new configuration from the hub: ``id`` names the request in the answer, ``text`` is the whole YAML."""

    id: str
    text: str


Command = Rebirth | Ping | TimeCheck | ConfigPush


@dataclass(frozen=True, slots=True)
class CommandRejected:
    """A command not carried out: ``command`` is its name as far as it could be read, ``reason`` why."""

    command: str
    reason: str

    def __str__(self) -> str:
        return f"{self.command}: {self.reason}"


def parse_command(topic_name: str, payload: bytes, *, community: str, gateway: str) -> Command | CommandRejected:
    """Decode one message on a command topic for gateway ``community``/``gateway``."""
    parsed = parse_topic(topic_name)
    if isinstance(parsed, Rejection):
        return CommandRejected("?", f"bad topic: {parsed}")
    if parsed.channel is not Channel.CMD or parsed.command is None:
        return CommandRejected("?", f"topic {topic_name!r} is not a command topic")
    name = parsed.command
    if (parsed.community, parsed.gateway) != (community, gateway):
        return CommandRejected(name, f"meant for gateway {parsed.community}/{parsed.gateway}, not this one")
    limit = MAX_CONFIG_PUSH_BYTES if name == "config" else MAX_COMMAND_BYTES
    if len(payload) > limit:
        return CommandRejected(name, f"payload of {len(payload)} bytes > limit {limit}")
    body = _body(payload, allow_empty=name == "rebirth")
    if isinstance(body, str):
        return CommandRejected(name, body)
    if name == "rebirth":
        return _only(name, body, set()) or Rebirth()
    if name == "ping":
        return _only(name, body, {"id"}) or _ping(body)
    if name == "time":
        return _only(name, body, {"hub_time"}) or _time(body)
    if name == "config":
        return _only(name, body, {"id", "config"}) or _config(body)
    return CommandRejected(name, "unknown command")


def _body(payload: bytes, *, allow_empty: bool) -> dict[str, object] | str:
    if not payload.strip() and allow_empty:
        return {}
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return f"payload is not JSON: {exc}"
    if not isinstance(body, dict):
        return f"payload must be a JSON object, got {type(body).__name__}"
    return body


def _only(name: str, body: dict[str, object], allowed: set[str]) -> CommandRejected | None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        return CommandRejected(name, f"unknown keys {unknown} (allowed: {sorted(allowed)})")
    return None


def _ping(body: dict[str, object]) -> Ping | CommandRejected:
    value = body.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        return CommandRejected("ping", f"id {value!r} must be a string of 1-64 printable characters")
    return Ping(value)


def _config(body: dict[str, object]) -> ConfigPush | CommandRejected:
    push_id, text = body.get("id"), body.get("config")
    if not isinstance(push_id, str) or not 1 <= len(push_id) <= 64 or not push_id.isprintable():
        shown = repr(push_id)[:80]  # the payload may be 256 KiB: never put all of it in a log line
        return CommandRejected("config", f"id {shown} must be a string of 1-64 printable characters")
    if not isinstance(text, str) or not text.strip():
        got = "empty text" if isinstance(text, str) else "null" if text is None else type(text).__name__
        return CommandRejected("config", f"config must be the whole edge.yaml as a JSON string, got {got}")
    return ConfigPush(push_id, text)


def _time(body: dict[str, object]) -> TimeCheck | CommandRejected:
    value = body.get("hub_time")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return CommandRejected("time", f"hub_time {value!r} must be a number (unix seconds)")
    if not _EARLIEST_S <= value <= _LATEST_S:
        return CommandRejected("time", f"hub_time {value!r} is not between 2000 and 2100")
    return TimeCheck(float(value))
