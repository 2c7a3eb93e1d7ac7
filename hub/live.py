"""The live feed behind ``GET /api/v1/stream``: alert changes and sensor changes, fanned out to subscribers.

Alerts: every change of an alert is a row of the audit trail (``alerts.store``: opened, notified, acknowledged,
escalated, upgraded, cleared, resolved …), numbered by its ``seq``. One task reads the rows after the last one it
saw every ``alert_period_s`` and hands each, with its alert as it is now, to the subscribers whose interest covers
the alert's grid. The seq is the stream's event id: a client that reconnects with ``Last-Event-ID`` gets what it
missed from the audit trail itself (``replay``), so nothing is lost across a dropped connection or a hub restart.

Sensors: every ``sensor_period_s`` the sensors whose newest committed reading moved since the tick before
(``hub.ingest.latest``) go out as one batch — the newest value of each, not every reading: a dashboard needs the
state of the community, and 300,000 readings a second would drown a phone. Sensor batches carry no event id; a
client that reconnects reads ``/sensors/status`` and the latest values again.

Bounded: each subscriber's queue holds at most ``capacity`` items. A subscriber that falls that far behind (a
stalled connection) is dropped — its stream ends with a ``reset`` — rather than holding memory for it; it
reconnects and resumes from its last event id.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from alerts.model import Alert, Transition
from alerts.store import AlertStore
from hub.ingest.latest import LatestValues
from hub.ingest.liveness import Liveness
from hub.ingest.offline import SensorReason, SensorStatus
from hub.ingest.registry import Registry, SensorInfo
from hub.metrics import Metrics

__all__ = ["AlertChange", "Interest", "LiveFeed", "SensorChange", "SensorChanges", "Subscription"]

log = logging.getLogger("anju.hub.live")

REPLAY_LIMIT = 1_000
"""Audit rows a reconnecting client may catch up on; further behind, it is told to reload (``replay`` → None)."""


@dataclass(frozen=True, slots=True)
class AlertChange:
    seq: int
    """The audit row's number: the stream's event id."""
    transition: Transition
    alert: Alert


@dataclass(frozen=True, slots=True)
class SensorChange:
    info: SensorInfo
    time_ms: int
    """Device time of the newest committed reading (Unix ms)."""
    value: float
    """In the unit of the sensor's kind (``info.kind.unit``)."""
    status: SensorStatus
    reason: SensorReason | None


@dataclass(frozen=True, slots=True)
class SensorChanges:
    time_ms: int
    """Hub clock when the batch was taken (Unix ms)."""
    sensors: list[SensorChange]


Item = AlertChange | SensorChanges


@dataclass(frozen=True, slots=True)
class Interest:
    """What a subscriber is to be sent: alerts of ``grids`` (None: all), sensors whose ``rows`` mask is True
    (registry rows; None: all). The caller's scope and the request's filters both end up here."""

    alerts: bool = True
    sensors: bool = True
    grids: frozenset[str] | None = None
    rows: npt.NDArray[np.bool_] | None = None
    visible: Callable[[Alert], bool] | None = None
    """The caller's scope over alerts (``hub.identity.Scope.sees_alert``); None: every alert."""

    def wants(self, alert: Alert) -> bool:
        return (
            self.alerts
            and (self.grids is None or alert.grid in self.grids)
            and (self.visible is None or self.visible(alert))
        )


@dataclass(slots=True, eq=False)
class Subscription:
    """One open stream's queue (compared by identity: a set holds the open ones)."""

    interest: Interest
    capacity: int
    queue: asyncio.Queue[Item | None] = field(default_factory=asyncio.Queue)
    dropped: bool = False

    def offer(self, item: Item) -> bool:
        """Queue ``item``; False (and the subscription ends) when the subscriber is ``capacity`` items behind."""
        if self.dropped:
            return False
        if self.queue.qsize() >= self.capacity:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False
        self.queue.put_nowait(item)
        return True

    async def next(self, timeout_s: float) -> Item | None:
        """The next item; raises TimeoutError after ``timeout_s`` without one; None once dropped."""
        async with asyncio.timeout(timeout_s):
            return await self.queue.get()


class LiveFeed:
    def __init__(
        self,
        *,
        store: AlertStore,
        registry: Registry,
        latest: LatestValues,
        liveness: Liveness,
        metrics: Metrics,
        alert_period_s: float = 0.25,
        sensor_period_s: float = 1.0,
        capacity: int = 1_000,
    ) -> None:
        """``alert_period_s``: how often the audit trail is read (the added latency of an alert on the stream, s);
        ``sensor_period_s``: how often changed sensors go out (s); ``capacity``: items a subscriber may lag."""
        self.store = store
        self.registry = registry
        self.latest = latest
        self.liveness = liveness
        self.alert_period_s = alert_period_s
        self.sensor_period_s = sensor_period_s
        self.capacity = capacity
        self._infos = sorted(registry.sensors.values(), key=lambda info: info.index)
        self._subscribers: set[Subscription] = set()
        self._seq: int | None = None
        self._version = 0
        self.dropped = metrics.live_dropped
        metrics.gauge(
            "anju_live_subscribers", "Open live streams (GET /api/v1/stream).", lambda: len(self._subscribers)
        )

    def _count(self) -> float:
        return float(len(self._subscribers))

    @property
    def head(self) -> int:
        """The seq of the newest audit row handed out (or found at start)."""
        return self._seq or 0

    def rows_where(
        self, *, grids: frozenset[str] | None, gateway: str | None, sensors: frozenset[str] | None = None
    ) -> npt.NDArray[np.bool_] | None:
        """The registry rows mask of sensors in ``grids`` (None: any) on ``gateway`` (None: any) among ``sensors``
        (None: any; the caller's scope); None for all."""
        if grids is None and gateway is None and sensors is None:
            return None
        return np.fromiter(
            (
                (grids is None or info.grid in grids)
                and (gateway is None or info.gateway == gateway)
                and (sensors is None or info.id in sensors)
                for info in self._infos
            ),
            bool,
            len(self._infos),
        )

    @contextlib.contextmanager
    def subscribed(self, interest: Interest) -> Iterator[Subscription]:
        subscription = Subscription(interest, self.capacity)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def replay(self, after: int, interest: Interest) -> list[AlertChange] | None:
        """The alert changes after seq ``after`` that ``interest`` covers, up to the current head; None when more
        than ``REPLAY_LIMIT`` audit rows came since (the client reloads instead)."""
        rows = await asyncio.to_thread(self.store.audit_after, after, limit=REPLAY_LIMIT + 1)
        if len(rows) > REPLAY_LIMIT:
            return None
        return [AlertChange(seq, t, alert) for seq, t, alert in rows if interest.wants(alert)]

    async def run(self) -> None:
        """Read the audit trail and the latest values on their periods until cancelled."""
        self._seq = await asyncio.to_thread(self.store.audit_head)
        self._version = self.latest.round
        next_sensors = time.monotonic() + self.sensor_period_s
        while True:
            try:
                await self._alerts()
            except Exception as exc:  # a locked or busy database: the next tick reads the same rows
                log.warning("live feed: reading the audit trail failed (%s: %s)", type(exc).__name__, exc)
            if time.monotonic() >= next_sensors:
                self._sensors()
                next_sensors = time.monotonic() + self.sensor_period_s
            await asyncio.sleep(self.alert_period_s)

    async def _alerts(self) -> None:
        if not self._subscribers:
            self._seq = await asyncio.to_thread(self.store.audit_head)
            return
        rows = await asyncio.to_thread(self.store.audit_after, self.head, limit=REPLAY_LIMIT)
        for seq, transition, alert in rows:
            change = AlertChange(seq, transition, alert)
            for subscription in list(self._subscribers):
                if subscription.interest.wants(alert):
                    self._offer(subscription, change)
            self._seq = seq

    def _sensors(self) -> None:
        latest = self.latest
        version, self._version = self._version, latest.round
        wanting = [s for s in self._subscribers if s.interest.sensors]
        if not wanting or latest.round == version:
            return
        rows = latest.changed_since(version)
        statuses = self.liveness.sensor_statuses(rows)
        changes = [
            SensorChange(self._infos[row], int(t), float(v), status, reason)
            for row, t, v, (status, reason) in zip(
                rows.tolist(), latest.time_ms[rows].tolist(), latest.value[rows].tolist(), statuses, strict=True
            )
        ]
        now_ms = time.time_ns() // 1_000_000
        for subscription in wanting:
            mask = subscription.interest.rows
            picked = changes if mask is None else [c for c, keep in zip(changes, mask[rows], strict=True) if keep]
            if picked:
                self._offer(subscription, SensorChanges(now_ms, picked))

    def _offer(self, subscription: Subscription, item: Item) -> None:
        if not subscription.offer(item) and subscription in self._subscribers:
            self._subscribers.discard(subscription)
            self.dropped.inc()
            log.warning("live feed: a subscriber fell %d items behind and was dropped", subscription.capacity)
