"""The gateways' own health (``health``) and their answers to commands (``reply/{name}``), as last heard.

A gateway's health shows what the readings cannot: a filling outbox, readings waiting for acks, a clock off the
hub's, and detectors that stopped answering on the bus (at the hub a silent detector looks like one with nothing
new to say). Input is judged like readings: a bad topic or payload, an unknown gateway or the wrong community is a
``Rejection`` for the caller to count and dead-letter; nothing here raises on input.

The latest health of each gateway is kept in memory for ``/metrics`` and the API, and its raw payload goes to the
store with the ingest round, so a restarted hub shows it before the gateway's next report (the broker's retained
copy usually arrives too; both lead to the same state). Replies are kept per (gateway, command), latest only.
"""

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from hub.ingest.registry import Registry
from hub.ingest.validate import check_origin
from hub.metrics import Metrics
from hub.store.base import HealthRecord
from protocol import Channel, Rejection, RejectReason, parse_topic
from protocol.telemetry import HealthReport, Reply, decode_health, decode_reply

__all__ = ["GAUGES", "KNOWN_COMMANDS", "GatewayTelemetry", "HealthSeen", "ReplySeen", "judge_health", "judge_reply"]

log = logging.getLogger("anju.hub.telemetry")

GAUGES: tuple[tuple[str, str, str], ...] = (
    ("anju_gateway_outbox_bytes", "outbox_bytes", "Bytes held in the gateway's outbox, as last reported."),
    ("anju_gateway_outbox_readings", "outbox_readings", "Readings held in the gateway's outbox."),
    ("anju_gateway_unsent_readings", "unsent_readings", "Readings the gateway has not published yet."),
    (
        "anju_gateway_oldest_unacked_seconds",
        "oldest_unacked_s",
        "Age of the oldest reading the gateway still holds (device time), in seconds.",
    ),
    (
        "anju_gateway_dropped_readings",
        "dropped_readings",
        "Readings the gateway thinned or dropped because its outbox was full (as it reports them).",
    ),
    ("anju_gateway_rss_bytes", "rss_bytes", "Resident memory of the gateway's agent process."),
    ("anju_gateway_disk_free_bytes", "disk_free_bytes", "Free space on the gateway's outbox file system."),
)
"""(metric name, health field, help): the per-gateway gauges taken from the health report as they are.

``clock_skew_s`` is not among them: it repeats the skew the gateway sent on ``reply/time``, and the gauge
``anju_gateway_clock_skew_seconds`` comes from that answer alone (``hub.ingest.timecheck``)."""
KNOWN_COMMANDS = frozenset({"rebirth", "config", "ping", "time"})
"""DESIGN.md's commands: the reply counter's ``command`` label; any other name counts as ``other``."""
MAX_REPLIES_PER_GATEWAY = 16
"""Replies kept per gateway (latest per command name); the oldest name goes first, so a gateway answering
made-up command names cannot grow the hub's memory."""


@dataclass(frozen=True, slots=True)
class HealthSeen:
    report: HealthReport
    received_ms: int
    """Hub clock, Unix ms: the age of a report does not depend on the gateway's clock being right."""


@dataclass(frozen=True, slots=True)
class ReplySeen:
    reply: Reply
    received_ms: int


def judge_health(topic: str, payload: bytes, registry: Registry) -> tuple[str, HealthReport] | Rejection:
    """The gateway id and its report, or why the message is refused (like unknown-gateway readings)."""
    parsed = parse_topic(topic)
    if isinstance(parsed, Rejection):
        return parsed
    if parsed.channel is not Channel.HEALTH:
        return Rejection(RejectReason.BAD_TOPIC, f"topic {topic!r} is not a health topic")
    report = check_origin(parsed, registry) or decode_health(payload)
    if isinstance(report, Rejection):
        return report
    return parsed.gateway, report


def judge_reply(topic: str, payload: bytes, registry: Registry) -> tuple[str, Reply] | Rejection:
    """The gateway id and its reply, or why the message is refused; the payload must name the topic's command."""
    parsed = parse_topic(topic)
    if isinstance(parsed, Rejection):
        return parsed
    if parsed.channel is not Channel.REPLY:
        return Rejection(RejectReason.BAD_TOPIC, f"topic {topic!r} is not a reply topic")
    reply = check_origin(parsed, registry) or decode_reply(payload)
    if isinstance(reply, Rejection):
        return reply
    if reply.command != parsed.command:
        return Rejection(RejectReason.BAD_REPLY, f"reply on reply/{parsed.command} names command {reply.command!r}")
    return parsed.gateway, reply


Samples = list[tuple[Mapping[str, str], float]]


class GatewayTelemetry:
    """Latest health and replies per registered gateway; registers the per-gateway gauges on ``metrics``."""

    def __init__(self, *, registry: Registry, metrics: Metrics, saved: Iterable[HealthRecord] = ()) -> None:
        self._registry = registry
        self._metrics = metrics
        self.health: dict[str, HealthSeen] = {}
        self.replies: dict[str, dict[str, ReplySeen]] = {}
        for record in saved:
            report = decode_health(record.payload)
            if record.gateway in registry.gateways and isinstance(report, HealthReport):
                self.health[record.gateway] = HealthSeen(report, record.received_ms)
        for name, key, text in GAUGES:
            metrics.gauge_family(name, text, self._field_reader(key))
        metrics.gauge_family(
            "anju_gateway_detectors_silent",
            "Detectors not answering on the gateway's bus at their last poll (the API lists them).",
            lambda: self._samples(lambda seen: float(len(seen.report.silent))),
        )
        metrics.gauge_family(
            "anju_gateway_health_age_seconds",
            "Seconds since the hub received the gateway's latest health report (hub clock).",
            lambda: self._samples(lambda seen: max(0.0, time.time() - seen.received_ms / 1000)),
        )

    def record_health(self, gateway: str, report: HealthReport, received_ms: int) -> None:
        previous = self.health.get(gateway)
        self.health[gateway] = HealthSeen(report, received_ms)
        if previous is None or previous.report.silent != report.silent:
            if report.silent:
                log.warning("gateway %s: detectors not answering: %s", gateway, ", ".join(report.silent))
            elif previous is not None:
                log.info("gateway %s: every detector answering again", gateway)

    def record_reply(self, gateway: str, reply: Reply, received_ms: int) -> None:
        kept = self.replies.setdefault(gateway, {})
        kept.pop(reply.command, None)
        kept[reply.command] = ReplySeen(reply, received_ms)  # dicts keep insertion order: the newest is last
        while len(kept) > MAX_REPLIES_PER_GATEWAY:
            del kept[next(iter(kept))]
        label = reply.command if reply.command in KNOWN_COMMANDS else "other"
        self._metrics.command_replies.inc(command=label, ok=str(reply.ok).lower())
        extra = f" id={reply.id}" if reply.id is not None else ""
        if reply.skew_s is not None:
            extra += f" skew={reply.skew_s:+.3f}s"
        level = logging.INFO if reply.ok else logging.WARNING
        log.log(level, "gateway %s reply %s ok=%s%s: %s", gateway, reply.command, reply.ok, extra, reply.detail)

    def _labels(self, gateway: str) -> Mapping[str, str]:
        return {"community": self._registry.community, "gateway": gateway}

    def _samples(self, value: Callable[[HealthSeen], float]) -> Samples:
        return [
            (self._labels(gateway), value(seen))
            for gateway, seen in sorted(self.health.items(), key=lambda item: item[0])
        ]

    def _field_reader(self, key: str) -> Callable[[], Samples]:
        def read() -> Samples:
            return [
                (self._labels(gateway), seen.report.values[key])
                for gateway, seen in sorted(self.health.items(), key=lambda item: item[0])
                if key in seen.report.values
            ]

        return read
