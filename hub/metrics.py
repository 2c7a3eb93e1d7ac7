"""Counters and gauges rendered in the Prometheus text exposition format (version 0.0.4) at ``/metrics``.

A few dozen series do not justify a client library; this keeps label handling explicit and the output
stable for tests.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from alerts.emergency import EmergencyCounters
from alerts.service import Counters as AlertCounters

__all__ = ["Counter", "Gauge", "GaugeFamily", "Metrics", "render_alert_counters", "render_emergency_counters"]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(key: tuple[tuple[str, str], ...]) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in key) + "}"


@dataclass(slots=True)
class Counter:
    name: str
    help: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = tuple(sorted(labels.items()))
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        if not self.values:
            yield f"{self.name} 0"
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(key)} {value:g}"


@dataclass(slots=True)
class Gauge:
    name: str
    help: str
    read: Callable[[], float]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        yield f"{self.name} {self.read():g}"


@dataclass(slots=True)
class GaugeFamily:
    """A gauge with labels (one series per gateway, …): ``read`` returns the current ``(labels, value)`` samples.

    Values keep 15 significant digits, so byte counts of many gigabytes stay exact; with no samples only the
    HELP and TYPE lines appear (a valid empty family).
    """

    name: str
    help: str
    read: Callable[[], Iterable[tuple[Mapping[str, str], float]]]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        samples = sorted((tuple(sorted(labels.items())), value) for labels, value in self.read())
        for key, value in samples:
            yield f"{self.name}{_labels(key)} {value:.15g}"


class Metrics:
    """The hub's metrics; gauges are registered by the components that own the measured state."""

    def __init__(self) -> None:
        self.readings_stored = Counter("anju_readings_stored_total", "Readings newly written to the store.")
        self.duplicates = Counter(
            "anju_duplicates_total", "Readings received again (replayed batch or already stored point)."
        )
        self.payloads_rejected = Counter(
            "anju_payloads_rejected_total", "Messages or readings refused, by reason; each kept as a dead letter."
        )
        self.messages_received = Counter("anju_messages_received_total", "MQTT messages received, by channel.")
        self.seq_gaps = Counter(
            "anju_seq_gaps_total",
            "Routine batches that arrived while an earlier seq was missing (alarms jump by design).",
        )
        self.acks_published = Counter("anju_acks_published_total", "Hub-acks published to gateways.")
        self.backpressure_seconds = Counter(
            "anju_ingest_backpressure_seconds_total",
            "Seconds a receiver waited for room in its inbox lane (PUBACKs withheld, the broker holds the rest), "
            "by lane.",
        )
        self.commits = Counter("anju_store_commits_total", "Store transactions committed.")
        self.ingest_waits = Counter(
            "anju_ingest_wait_seconds_total",
            "Seconds the committer waited, by what for: messages (the inbox was empty: the hub keeps up) or commit "
            "(the round before was still being committed: the store sets the pace).",
        )
        self.store_failures = Counter(
            "anju_store_commit_failures_total",
            "Store commits that failed (the round is kept and retried; nothing is acked until it succeeds).",
        )
        self.clock_skewed = Counter(
            "anju_readings_clock_skewed_total",
            "Readings stored with the CLOCK_SKEW flag, by gateway and reason (future, past, gateway_clock).",
        )
        self.risk_events = Counter("anju_risk_events_total", "Risk events raised by detection, by grade and status.")
        self.api_refused = Counter(
            "anju_api_requests_refused_total", "API requests refused before any route read them, by reason."
        )
        self.api_risk_events = Counter(
            "anju_api_risk_events_total",
            "Risk events posted by other systems (POST /api/v1/events): taken, or rejected by the field at fault.",
        )
        self.unknown_devices = Counter(
            "anju_health_unknown_devices_total",
            "Detectors in a gateway's health report that are not registered on that gateway, by gateway.",
        )
        self.mqtt_connects = Counter("anju_mqtt_connects_total", "Successful connections of the hub to the broker.")
        self.rebirths = Counter(
            "anju_rebirths_requested_total", "cmd/rebirth sent to gateways whose session was unknown past seq 1."
        )
        self.command_replies = Counter(
            "anju_command_replies_total", "Answers of gateways on reply/{command}, by command and ok (true/false)."
        )
        self.commands_sent = Counter(
            "anju_commands_sent_total", "Commands the hub published to gateways on cmd/{command}, by command."
        )
        self.liveness_transitions = Counter(
            "anju_liveness_transitions_total",
            "Sensors and gateways declared offline (reason stale, gateway-offline, heartbeat-lost) or back "
            "(reason cleared), by subject (sensor, gateway).",
        )
        self.gateway_throttled_messages = Counter(
            "anju_gateway_throttled_messages_total",
            "Routine messages deferred because their gateway was over its limits (neither stored nor acked: the "
            "gateway keeps and replays them), by gateway.",
        )
        self.gateway_throttled_readings = Counter(
            "anju_gateway_throttled_readings_total",
            "Records in those deferred messages (counted, not decoded), by gateway.",
        )
        self.gateway_throttled_bytes = Counter(
            "anju_gateway_throttled_bytes_total", "Payload bytes of those deferred messages, by gateway."
        )
        self.gateway_oversize = Counter(
            "anju_gateway_oversize_total",
            "Messages refused as larger than their gateway's max_message_bytes (or with more records than its "
            "readings burst), by gateway; each a dead letter (reason oversized).",
        )
        self.live_dropped = Counter(
            "anju_live_subscribers_dropped_total",
            "Live-stream subscribers dropped for falling too far behind (they reconnect and resume).",
        )
        self._gauges: list[Gauge | GaugeFamily] = []

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self._gauges.append(Gauge(name, help, read))

    def gauge_family(self, name: str, help: str, read: Callable[[], Iterable[tuple[Mapping[str, str], float]]]) -> None:
        self._gauges.append(GaugeFamily(name, help, read))

    def render(self) -> str:
        # Every counter attribute, in the order they were created: a new counter cannot be forgotten here.
        counters = [value for value in vars(self).values() if isinstance(value, Counter)]
        metrics: list[Counter | Gauge | GaugeFamily] = [*counters, *self._gauges]
        lines = [line for metric in metrics for line in metric.render()]
        return "\n".join(lines) + "\n"


def render_alert_counters(counters: AlertCounters) -> str:
    """The alerts service's counters in the exposition format (``anju_alerts_*``)."""
    lines = [
        "# HELP anju_alerts_opened_total Alerts opened, by grade.",
        "# TYPE anju_alerts_opened_total counter",
        *(
            f'anju_alerts_opened_total{{grade="{grade.name}"}} {count}'
            for grade, count in counters.alerts_opened_total.items()
        ),
        "# HELP anju_notifications_sent_total Notifications delivered to a receiver.",
        "# TYPE anju_notifications_sent_total counter",
        f"anju_notifications_sent_total {counters.notifications_sent_total}",
        "# HELP anju_pages_sent_total Deliveries made; a digest of several grouped notifications is one page.",
        "# TYPE anju_pages_sent_total counter",
        f"anju_pages_sent_total {counters.pages_sent_total}",
        "# HELP anju_digests_sent_total Pages that carried several notifications of one group.",
        "# TYPE anju_digests_sent_total counter",
        f"anju_digests_sent_total {counters.digests_sent_total}",
        "# HELP anju_notification_failures_total Failed delivery attempts, by kind.",
        "# TYPE anju_notification_failures_total counter",
        *(
            f'anju_notification_failures_total{{kind="{kind}"}} {count}'
            for kind, count in counters.notification_failures_total.items()
        ),
        "# HELP anju_alerts_unrouted_total Alerts for a grid with nobody to notify.",
        "# TYPE anju_alerts_unrouted_total counter",
        f"anju_alerts_unrouted_total {counters.unrouted_total}",
        "# HELP anju_alerts_muted_total Firing events muted by a silence or an inhibition (no alert, no page).",
        "# TYPE anju_alerts_muted_total counter",
        f"anju_alerts_muted_total {counters.muted_total}",
        "# HELP anju_alerts_escalations_total Alerts paged one level up the chain for want of an acknowledgement.",
        "# TYPE anju_alerts_escalations_total counter",
        f"anju_alerts_escalations_total {counters.escalations_total}",
        "# HELP anju_alerts_reminders_total Alerts paged again at the top of the chain for want of an acknowledgement.",
        "# TYPE anju_alerts_reminders_total counter",
        f"anju_alerts_reminders_total {counters.reminders_total}",
    ]
    return "\n".join(lines) + "\n"


def render_emergency_counters(counters: EmergencyCounters) -> str:
    """The emergency desk's counters (``anju_incident_*``): notices, volunteer call-outs and measures delivered."""
    lines = [
        "# HELP anju_incident_messages_sent_total Incident messages (notices, call-outs, measures) delivered.",
        "# TYPE anju_incident_messages_sent_total counter",
        f"anju_incident_messages_sent_total {counters.messages.sent_total}",
        "# HELP anju_incident_message_failures_total Failed incident message delivery attempts, by kind.",
        "# TYPE anju_incident_message_failures_total counter",
        *(
            f'anju_incident_message_failures_total{{kind="{kind}"}} {count}'
            for kind, count in counters.messages.failures_total.items()
        ),
        "# HELP anju_incident_measures_overdue_total Measures notified again, not confirmed by their deadline.",
        "# TYPE anju_incident_measures_overdue_total counter",
        f"anju_incident_measures_overdue_total {counters.measures_overdue_total}",
    ]
    return "\n".join(lines) + "\n"
