"""MQTT topic names (DESIGN.md "Topics"): ``anju/v1/{community}/{gateway}/{channel}[/{command}]``.

Only MQTT 3.1.1 features are needed. The hub's own retained state lives at ``anju/v1/hub/state``.

``health`` and ``reply/{name}`` are additions to the channels DESIGN.md lists (issue 3): the gateway's own
health as telemetry, and its answers to ``cmd/{name}``. Their payloads are in ``protocol.telemetry``.
"""

import enum
from dataclasses import dataclass

from protocol.ids import is_valid_id
from protocol.rejection import Rejection, RejectReason

__all__ = ["HUB_STATE_TOPIC", "PREFIX", "Channel", "ParsedTopic", "parse_topic", "subscription", "topic"]

PREFIX = "anju/v1"
HUB_STATE_TOPIC = f"{PREFIX}/hub/state"


class Channel(enum.StrEnum):
    """The last topic level(s) after the gateway id."""

    DATA = "data"
    """gateway -> hub, QoS 1: routine readings in SenML batches."""
    ALARM = "alarm"
    """gateway -> hub, QoS 1: readings that tripped a local alarm; the hub serves these first."""
    STATE = "state"
    """gateway -> hub, retained: birth (online) and Will (offline) with the session number."""
    ACK = "ack"
    """hub -> gateway: highest contiguous seq of this session that the hub has committed."""
    CMD = "cmd"
    """hub -> gateway: ``cmd/{name}`` (rebirth, config, ping, time)."""
    HEALTH = "health"
    """gateway -> hub, QoS 1, retained: the gateway's own health every ``health_interval_s``.

    Retained because each snapshot supersedes the one before and is useful on its own: a hub that restarts,
    or an operator who subscribes later, sees every gateway's latest health at once instead of waiting up to
    an interval (the snapshot carries the gateway's time, so a stale one is recognisable). One retained
    message per gateway keeps the broker's cost bounded. QoS 1 because the snapshot sent over a flaky link is
    the one that matters; it is not kept in the outbox (that holds readings), so an offline gateway skips it.
    """
    REPLY = "reply"
    """gateway -> hub, QoS 1, not retained: ``reply/{name}`` answers ``cmd/{name}`` (ok or the refusal's reason).

    Not retained: an answer belongs to one request, and a late subscriber must not take an old one as new.
    """


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    community: str
    gateway: str
    channel: Channel
    command: str | None = None
    """The command name of ``cmd/{name}`` and ``reply/{name}``; None on every other channel."""


_NAMED = frozenset({Channel.CMD, Channel.REPLY})
"""Channels followed by one more level, the command name."""


def topic(community: str, gateway: str, channel: Channel, command: str | None = None) -> str:
    """Build a topic; raises ValueError for ids that break the pattern (a programmer error here)."""
    for label, value in (("community", community), ("gateway", gateway)):
        if not is_valid_id(value):
            raise ValueError(f"{label} id {value!r} does not match [a-z0-9-]{{1,64}}")
    if (channel in _NAMED) != (command is not None):
        raise ValueError("a command name is given with the cmd and reply channels and only there")
    if command is not None:
        if not is_valid_id(command):
            raise ValueError(f"command name {command!r} does not match [a-z0-9-]{{1,64}}")
        return f"{PREFIX}/{community}/{gateway}/{channel.value}/{command}"
    return f"{PREFIX}/{community}/{gateway}/{channel.value}"


def subscription(channel: Channel, *, community: str = "+", gateway: str = "+") -> str:
    """A subscription filter for one channel, all communities and gateways by default."""
    suffix = f"{channel.value}/+" if channel in _NAMED else channel.value
    return f"{PREFIX}/{community}/{gateway}/{suffix}"


def parse_topic(name: str) -> ParsedTopic | Rejection:
    """Split a topic into its parts, or say why it is not an Anju gateway topic."""
    parts = name.split("/")
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != PREFIX:
        return Rejection(RejectReason.BAD_TOPIC, f"topic {name!r} is not anju/v1/{{community}}/{{gateway}}/…")
    community, gateway, rest = parts[2], parts[3], parts[4:]
    for label, value in (("community", community), ("gateway", gateway)):
        if not is_valid_id(value):
            return Rejection(RejectReason.BAD_ID, f"{label} id {value!r} in topic does not match [a-z0-9-]{{1,64}}")
    try:
        channel = Channel(rest[0])
    except ValueError:
        return Rejection(RejectReason.BAD_TOPIC, f"unknown channel {rest[0]!r} in topic {name!r}")
    if channel in _NAMED:
        if len(rest) != 2 or not is_valid_id(rest[1]):
            return Rejection(RejectReason.BAD_TOPIC, f"{channel.value} topic {name!r} needs one command name")
        return ParsedTopic(community, gateway, channel, rest[1])
    if len(rest) != 1:
        return Rejection(RejectReason.BAD_TOPIC, f"extra levels after {channel.value!r} in topic {name!r}")
    return ParsedTopic(community, gateway, channel)
