"""MQTT topic names (DESIGN.md "Topics"): ``anju/v1/{community}/{gateway}/{channel}[/{command}]``.

Only MQTT 3.1.1 features are needed. The hub's own retained state lives at ``anju/v1/hub/state``.
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


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    community: str
    gateway: str
    channel: Channel
    command: str | None = None


def topic(community: str, gateway: str, channel: Channel, command: str | None = None) -> str:
    """Build a topic; raises ValueError for ids that break the pattern (a programmer error here)."""
    for label, value in (("community", community), ("gateway", gateway)):
        if not is_valid_id(value):
            raise ValueError(f"{label} id {value!r} does not match [a-z0-9-]{{1,64}}")
    if (channel is Channel.CMD) != (command is not None):
        raise ValueError("a command name is given with the cmd channel and only there")
    if command is not None:
        if not is_valid_id(command):
            raise ValueError(f"command name {command!r} does not match [a-z0-9-]{{1,64}}")
        return f"{PREFIX}/{community}/{gateway}/cmd/{command}"
    return f"{PREFIX}/{community}/{gateway}/{channel.value}"


def subscription(channel: Channel, *, community: str = "+", gateway: str = "+") -> str:
    """A subscription filter for one channel, all communities and gateways by default."""
    suffix = "cmd/+" if channel is Channel.CMD else channel.value
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
    if channel is Channel.CMD:
        if len(rest) != 2 or not is_valid_id(rest[1]):
            return Rejection(RejectReason.BAD_TOPIC, f"command topic {name!r} needs one command name")
        return ParsedTopic(community, gateway, channel, rest[1])
    if len(rest) != 1:
        return Rejection(RejectReason.BAD_TOPIC, f"extra levels after {channel.value!r} in topic {name!r}")
    return ParsedTopic(community, gateway, channel)
