"""Per-gateway rate and size limits at the hub, and the grade IV alert that flags a gateway that keeps flooding.

**Where.** Every routine message (``data``, ``health``, ``reply``) is judged by the routine receiver *before* it
takes room in the inbox (``Ingest._receive``), without decoding it: its gateway from the topic, its size, its
records counted as ``{`` bytes (every SenML record is one JSON object, so the count never undercounts a valid
pack). Each registered gateway has three token buckets (readings, bytes, messages a second, with a burst:
``hub.ingest.budget``) and a largest message; every gateway not registered under the hub's community shares one
more set, so spoofed ids cannot make state grow nor starve a registered gateway. ``alarm`` messages are judged by
the urgent receiver against an alarm budget of their own (messages a second; ``hub.ingest.budget``), never against
the data's, so no data holds an alarm back while a gateway flooding the alarm topic (which the hub serves first) is
deferred beyond it; ``state`` (births and Wills) is never judged.

**What happens to a message** (the delivery guarantee, DESIGN.md, holds because the hub acks only what it stored):

- within budget: into the inbox, where the committer takes gateways round-robin (``hub.ingest.inbox``), so what
  one gateway may send within its budget is also shared fairly with the others;
- over budget: **deferred** — PUBACKed so the broker's queue for the hub (shared by every gateway) moves on to
  the other gateways' messages, but neither stored nor hub-acked: the gateway keeps the batch in its outbox and
  republishes it after its ack timeout, when the hub finds the hole below its ack. Deferral is sticky: once a
  gateway is over, its messages wait until every bucket is back to half its burst, so what passes comes in long
  contiguous runs (acks move) rather than every n-th batch, and the head of the gateway's replay finds room;
- larger than its ``max_message_bytes`` (or more records than its readings burst, which could never pass):
  **refused** with reason ``oversized`` naming the gateway and the limit, counted and dead-lettered with its head
  (``DEAD_LETTER_HEAD``: what the API shows of a dead letter anyway; keeping whole oversize payloads would let a
  gateway fill the disk). The kept head is paid from the bytes budget; past it the message is deferred instead.

**Flagged.** Per gateway counters (deferred messages, readings, bytes; oversize refusals) and a grade IV alert
``{community}/gateway/{gateway}/flood`` (kind ``gateway``, rule ``rate-limit``, maintenance: to the property
company's people like an offline gateway) once a gateway has been over its limits across ``alert_after_s``
without a calm stretch of ``calm_s``; cleared after ``calm_s`` without going over. The two spans are the
hysteresis: one deferral does not page, and a gateway hovering at its limit does not flap.
"""

import asyncio
import enum
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerts.model import OPEN_STATES, Alert, AlertState, Grade, RiskEvent
from hub.config import Deployment
from hub.ingest.budget import DEFAULT_BUDGET, Budget, TokenBucket
from hub.ingest.registry import Registry
from hub.metrics import Metrics
from protocol import Rejection
from protocol.rejection import RejectReason

__all__ = [
    "DEAD_LETTER_HEAD",
    "UNREGISTERED",
    "GatewayLimits",
    "Judgement",
    "LimitsPolicy",
    "Verdict",
    "flood_key",
    "limits_policy",
]

log = logging.getLogger("anju.hub.limits")

DEAD_LETTER_HEAD = 65_536
"""Most bytes of an oversize payload kept in its dead letter: what ``GET /api/v1/dead-letters`` shows of any (and
never more than the gateway's ``max_message_bytes``, so its bytes burst can always pay for it)."""
RESUME_FRACTION = 0.5
"""A deferring gateway is let through again once every bucket holds this share of its burst."""
UNREGISTERED = "(unregistered)"
"""The shared budget (and metric label) of every gateway id not registered under the hub's community; not an id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsPolicy:
    """``default`` for every gateway, ``overrides`` by gateway id; the alert after ``alert_after_s`` over budget,
    cleared after ``calm_s`` within it (seconds). ``enabled=False`` lets everything through (and flags nothing)."""

    enabled: bool = True
    default: Budget = DEFAULT_BUDGET
    overrides: Mapping[str, Budget] = field(default_factory=dict)
    alert_after_s: float = 30.0
    calm_s: float = 60.0

    def __post_init__(self) -> None:
        if not (self.alert_after_s > 0 and self.calm_s > 0):
            raise ValueError(f"alert_after_s and calm_s must be > 0, got {self.alert_after_s!r}, {self.calm_s!r}")

    def budget(self, gateway: str) -> Budget:
        return self.overrides.get(gateway, self.default)


def limits_policy(deployment: Deployment) -> LimitsPolicy:
    """The deployment file's ``gateway_limits`` and each gateway's ``limits`` (checked when the file was loaded)."""
    config = deployment.gateway_limits
    fields = ("readings_per_s", "readings_burst", "bytes_per_s", "bytes_burst", "messages_per_s", "messages_burst")
    base = {name: getattr(config, name) for name in (*fields, "max_message_bytes")}
    overrides: dict[str, Budget] = {}
    for gateway in deployment.gateways:
        if gateway.limits is not None:
            own = {name: value for name, value in gateway.limits.model_dump().items() if value is not None}
            overrides[gateway.id] = Budget(**(base | own))
    return LimitsPolicy(
        enabled=config.enabled,
        default=Budget(**base),
        overrides=overrides,
        alert_after_s=config.flood_alert_after_s,
        calm_s=config.flood_calm_s,
    )


class Verdict(enum.Enum):
    ADMIT = "admit"
    DEFER = "defer"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class Judgement:
    verdict: Verdict
    rejection: Rejection | None = None
    """For REFUSE: the reason, naming the gateway and the limit."""
    kept: bytes = b""
    """For REFUSE: the head of the payload to dead-letter."""


_ADMIT = Judgement(Verdict.ADMIT)
_DEFER = Judgement(Verdict.DEFER)


class _Gate:
    """One gateway's buckets and flood state (monotonic seconds)."""

    __slots__ = (
        "alarms",
        "budget",
        "bytes",
        "deferring",
        "episode_s",
        "firing",
        "last_over_s",
        "messages",
        "readings",
    )

    def __init__(self, budget: Budget, now_s: float) -> None:
        self.budget = budget
        self.readings = TokenBucket(rate=budget.readings_per_s, burst=budget.readings_burst, now_s=now_s)
        self.bytes = TokenBucket(rate=budget.bytes_per_s, burst=budget.bytes_burst, now_s=now_s)
        self.messages = TokenBucket(rate=budget.messages_per_s, burst=budget.messages_burst, now_s=now_s)
        self.alarms = TokenBucket(rate=budget.alarm_messages_per_s, burst=budget.alarm_messages_burst, now_s=now_s)
        self.deferring = False
        self.episode_s: float | None = None
        """When the gateway first went over after a calm stretch; None: calm."""
        self.last_over_s = 0.0
        self.firing = False


def flood_key(community: str, gateway: str) -> str:
    return f"{community}/gateway/{gateway}/flood"


class OpenAlerts(Protocol):
    async def every_alert_in(self, state: AlertState) -> list[Alert]: ...


class GatewayLimits:
    """The budgets of every gateway that has sent anything, judged per message, and their flood alerts."""

    def __init__(
        self,
        *,
        registry: Registry,
        metrics: Metrics,
        policy: LimitsPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds for the buckets and the alert's spans (a test passes its own)."""
        self.policy = policy or LimitsPolicy()
        self._registry = registry
        self._metrics = metrics
        self._clock = clock
        self._gates: dict[str, _Gate] = {}
        grids: dict[str, Counter[str]] = {g: Counter() for g in registry.gateways}
        for info in registry.sensors.values():
            grids[info.gateway][info.grid] += 1
        self._grid = {g: count.most_common(1)[0][0] if count else "" for g, count in grids.items()}
        metrics.gauge_family(
            "anju_gateway_over_budget",
            "1 while a gateway's flood alert is firing (over its per-gateway limits for a sustained period), by "
            "gateway; 0 for the others that sent anything.",
            lambda: [({"gateway": g}, float(gate.firing)) for g, gate in self._gates.items()],
        )

    # --- judging -------------------------------------------------------------------------------------------

    def _gate(self, topic: str, now: float) -> tuple[str, _Gate]:
        parts = topic.split("/", 4)
        registered = len(parts) > 4 and parts[2] == self._registry.community and parts[3] in self._registry.gateways
        gateway = parts[3] if registered else UNREGISTERED
        gate = self._gates.get(gateway)
        if gate is None:
            gate = self._gates[gateway] = _Gate(self.policy.budget(gateway), now)
        return gateway, gate

    def judge_alarm(self, topic: str, payload: bytes) -> Judgement:
        """Admit or defer one ``alarm`` message, against the gateway's alarm budget alone (``Budget``'s docstring:
        an honest gateway never reaches it). Deferred like data: PUBACKed, not hub-acked, replayed by the gateway."""
        if not self.policy.enabled:
            return _ADMIT
        now = self._clock()
        gateway, gate = self._gate(topic, now)
        if gate.alarms.refill(now) < 1:
            self._over(gateway, gate, now)
            self._metrics.gateway_throttled_messages.inc(gateway=gateway)
            self._metrics.gateway_throttled_readings.inc(payload.count(b"{"), gateway=gateway)
            self._metrics.gateway_throttled_bytes.inc(len(payload), gateway=gateway)
            return _DEFER
        gate.alarms.tokens -= 1
        return _ADMIT

    def judge(self, topic: str, channel: str, payload: bytes) -> Judgement:
        """Admit, defer or refuse one routine message (``channel``: data, health or reply) of ``topic``."""
        if not self.policy.enabled:
            return _ADMIT
        now = self._clock()
        gateway, gate = self._gate(topic, now)
        budget = gate.budget
        size = len(payload)
        records = payload.count(b"{") if channel == "data" else 0
        if size > budget.max_message_bytes or records > budget.readings_burst:
            return self._refuse(gateway, gate, topic, payload, records, now)
        readings = gate.readings.refill(now)
        room = gate.bytes.refill(now)
        messages = gate.messages.refill(now)
        floor = RESUME_FRACTION if gate.deferring else 0.0
        if (
            readings < max(records, floor * budget.readings_burst)
            or room < max(size, floor * budget.bytes_burst)
            or messages < max(1.0, floor * budget.messages_burst)
        ):
            self._over(gateway, gate, now)
            gate.deferring = True
            self._metrics.gateway_throttled_messages.inc(gateway=gateway)
            self._metrics.gateway_throttled_readings.inc(records, gateway=gateway)
            self._metrics.gateway_throttled_bytes.inc(size, gateway=gateway)
            return _DEFER
        gate.deferring = False
        gate.readings.tokens -= records
        gate.bytes.tokens -= size
        gate.messages.tokens -= 1
        return _ADMIT

    def _refuse(self, gateway: str, gate: _Gate, topic: str, payload: bytes, records: int, now: float) -> Judgement:
        self._over(gateway, gate, now)
        kept = payload[: min(DEAD_LETTER_HEAD, gate.budget.max_message_bytes)]
        if gate.bytes.refill(now) < len(kept) or gate.messages.refill(now) < 1:
            self._metrics.gateway_throttled_messages.inc(gateway=gateway)
            self._metrics.gateway_throttled_readings.inc(records, gateway=gateway)
            self._metrics.gateway_throttled_bytes.inc(len(payload), gateway=gateway)
            return _DEFER
        gate.bytes.tokens -= len(kept)
        gate.messages.tokens -= 1
        budget = gate.budget
        self._metrics.gateway_oversize.inc(gateway=gateway)
        if len(payload) > budget.max_message_bytes:
            detail = f"gateway {gateway}: {len(payload)} bytes > its max_message_bytes {budget.max_message_bytes}"
        else:
            detail = f"gateway {gateway}: {records} records > its readings_burst {budget.readings_burst:g}"
        if len(kept) < len(payload):
            detail += f" (first {len(kept)} bytes kept)"
        return Judgement(Verdict.REFUSE, Rejection(RejectReason.OVERSIZED, detail), kept)

    def _over(self, gateway: str, gate: _Gate, now: float) -> None:
        if gate.episode_s is None or now - gate.last_over_s >= self.policy.calm_s:
            gate.episode_s = now
            log.warning(
                "gateway %s is over its limits: its routine messages are deferred (it keeps and replays them)", gateway
            )
        gate.last_over_s = now

    def over(self, gateway: str) -> bool:
        """True while ``gateway`` is in an episode over its limits (until ``calm_s`` after it last went over)."""
        gate = self._gates.get(gateway)
        return gate is not None and gate.episode_s is not None and self._clock() - gate.last_over_s < self.policy.calm_s

    # --- the alert -----------------------------------------------------------------------------------------

    def sweep(self, now_ms: int | None = None) -> list[RiskEvent]:
        """Fire for gateways over their limits across ``alert_after_s``; clear those calm for ``calm_s``."""
        now = self._clock()
        wall_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        policy = self.policy
        events: list[RiskEvent] = []
        for gateway, gate in self._gates.items():
            if gate.episode_s is None or gateway == UNREGISTERED:
                continue
            span = gate.last_over_s - gate.episode_s
            calm = now - gate.last_over_s >= policy.calm_s
            if gate.firing and calm:
                gate.firing = False
                events.append(self._event(gateway, span, wall_ms, firing=False))
                log.warning("gateway %s is within its limits again (flood alert cleared)", gateway)
            elif not gate.firing and not calm and span >= policy.alert_after_s:
                gate.firing = True
                events.append(self._event(gateway, span, wall_ms, firing=True))
                log.warning("gateway %s has been over its limits for %.0f s: flood alert", gateway, span)
            if calm:
                gate.episode_s = None
        return events

    async def run(self, *, on_risks: Callable[[Sequence[RiskEvent]], Awaitable[object]], period_s: float = 1.0) -> None:
        """Sweep every ``period_s`` until cancelled, handing the changes to ``on_risks`` (the alert service)."""
        while True:
            events = self.sweep()
            for event in events:
                self._metrics.risk_events.inc(grade=event.grade.name, status=event.status)
            if events:
                await on_risks(events)
            await asyncio.sleep(period_s)

    def restore(self, events: Iterable[RiskEvent]) -> int:
        """Take the flood conditions of alerts still open from before a restart, so that they clear once calm."""
        now = self._clock()
        taken = 0
        for event in events:
            parts = event.key.split("/")
            if event.status != "firing" or len(parts) != 4 or parts[1] != "gateway" or parts[3] != "flood":
                continue
            gateway = parts[2]
            if event.community != self._registry.community or gateway not in self._registry.gateways:
                continue
            gate = self._gates.get(gateway)
            if gate is None:
                gate = self._gates[gateway] = _Gate(self.policy.budget(gateway), now)
            gate.firing, gate.episode_s, gate.last_over_s = True, now, now
            taken += 1
        return taken

    async def restore_open(self, alerts: OpenAlerts) -> int:
        """``restore`` from the alert service's unresolved alerts."""
        taken = 0
        for state in OPEN_STATES:
            taken += self.restore(alert.last_event for alert in await alerts.every_alert_in(state))
        return taken

    def _event(self, gateway: str, span_s: float, time_ms: int, *, firing: bool) -> RiskEvent:
        registry = self._registry
        parts = (registry.community_name, registry.gateways[gateway].location, f"网关 {gateway}")
        place = " ".join(part for part in parts if part)
        return RiskEvent(
            key=flood_key(registry.community, gateway),
            maintenance=True,
            community=registry.community,
            grid=self._grid.get(gateway, ""),
            sensor=gateway,
            kind="gateway",
            location_zh=place,
            rule="rate-limit",
            grade=Grade.IV,
            value=round(max(0.0, span_s), 1),
            unit="s",
            time_ms=time_ms,
            status="firing" if firing else "cleared",
            source=(
                "Anju ingest: over its per-gateway limits (readings, bytes or messages a second, or message size); "
                "its excess is deferred (the gateway keeps and replays it), oversize messages are refused"
            ),
            threshold=self.policy.alert_after_s,
        )
