"""Which gateways are offline and which sensors are stale, and the grade IV risk events that say so (issue 4).

A **gateway** is offline when the broker says so (its death or Will on the retained ``state`` topic; or, once the
grace below has passed, no state at all since the hub connected) or when nothing came from it — data, health, a
birth — for ``intervals ×`` its heartbeat interval while the broker still says online: a half-open connection
(a dead gateway whose TCP connection the broker has not noticed yet). The heartbeat interval is learned from the
arrivals of its ``health`` reports (``hub.ingest.intervals``; the report does not carry the edge's
``health_interval_s``), and only gateways that have sent health during this run are judged on silence.

A **sensor** is stale when nothing arrived from it for ``intervals ×`` its expected reporting interval (learned,
or ``report_interval_s`` in the deployment file), and at once, with reason ``gateway-offline``, when its gateway
is offline. It is fresh again on its next reading; a sensor whose gateway came back keeps the gateway reason
until it reports (cleared) or stays silent for its own limit (the rule becomes ``stale``).

No storms of the hub's own making: nothing is judged while the hub is not connected to the broker, and every
clock restarts when the connection (re)starts, so a sensor is declared stale no sooner than one stale limit
after the hub connected. Sensors never seen since start are judged that way too — from the connection, not from
the store's latest reading: a reading stored before the hub started is older than the connection by definition,
so it could never move the clock, and reading it back for a few hundred thousand sensors would slow the start.

Each condition is a ``RiskEvent`` of its own key, grade IV (maintenance for the property company), emitted only
on a change: ``{community}/{sensor}/offline`` (rule ``stale`` or ``gateway-offline``) and
``{community}/gateway/{gateway}/offline`` (kind ``gateway``; rule ``gateway-offline`` or ``heartbeat-lost``).
``value`` is the seconds since the last reading (or since the hub connected, if none came since), unit ``s``.

Cost: ``observe`` is a few numpy passes over one commit round; ``sweep`` is O(sensors) numpy plus a Python step
per gateway (a few thousand at most) and per changed sensor, at most ``max_events`` a sweep (the rest follow in
the next sweeps, their state unchanged until emitted).
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Protocol

import numpy as np
import numpy.typing as npt

from alerts.model import OPEN_STATES, Alert, AlertState, RiskEvent
from hub.ingest.intervals import IntervalPolicy, ReportIntervals
from hub.ingest.offline import (
    GatewayLiveness,
    GatewayReason,
    GatewayStatusName,
    SensorLiveness,
    SensorReason,
    SensorStatus,
    gateway_offline_event,
    offline_event,
)
from hub.ingest.registry import Registry
from hub.metrics import Metrics

__all__ = ["Liveness", "OpenAlerts"]

log = logging.getLogger("anju.hub.liveness")

FRESH, STALE, GATEWAY_DOWN = 0, 1, 2
"""A sensor's declared state (``Liveness`` array codes)."""
ONLINE, OFFLINE, SILENT = 0, 1, 2
"""A gateway's declared state."""
_STATUSES: tuple[SensorStatus, ...] = ("fresh", "stale", "unseen")
_GATEWAY_STATUSES: tuple[GatewayStatusName, ...] = ("online", "offline", "heartbeat-lost")
_SENSOR_RULES: dict[int, SensorReason] = {STALE: "stale", GATEWAY_DOWN: "gateway-offline"}
_GATEWAY_RULES: dict[int, GatewayReason] = {OFFLINE: "gateway-offline", SILENT: "heartbeat-lost"}
_NEVER = np.iinfo(np.int64).min
_DISCONNECTED = np.iinfo(np.int64).max
Samples = list[tuple[Mapping[str, str], float]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class OpenAlerts(Protocol):
    """What ``Liveness.restore_open`` needs of the alert service (``alerts.service.AlertService``)."""

    async def every_alert_in(self, state: AlertState) -> list[Alert]: ...


class Liveness:
    """Liveness state of every registered sensor and gateway, as numpy arrays indexed by row (config order)."""

    def __init__(
        self,
        *,
        registry: Registry,
        metrics: Metrics,
        policy: IntervalPolicy | None = None,
        max_events: int = 10_000,
        period_s: float = 1.0,
    ) -> None:
        if max_events < 1 or not period_s > 0:
            raise ValueError(f"max_events must be >= 1 and period_s > 0, got {max_events!r} and {period_s!r}")
        policy = policy or IntervalPolicy()
        self.policy = policy
        self.max_events = max_events
        self._registry = registry
        self._metrics = metrics
        self._infos = sorted(registry.by_id.values(), key=lambda info: info.index)
        if [info.index for info in self._infos] != list(range(len(self._infos))):
            raise ValueError("the registry's sensors must be numbered 0 … n-1 (SensorInfo.index)")
        self._index = {info.id: row for row, info in enumerate(self._infos)}
        self.gateway_ids = list(registry.gateways)
        self._gateway_index = {gateway: row for row, gateway in enumerate(self.gateway_ids)}
        self._gateway_of = np.array([self._gateway_index[i.gateway] for i in self._infos], np.intp)
        overrides = np.array([np.nan if i.report_interval_s is None else i.report_interval_s for i in self._infos])
        self.sensors = ReportIntervals(len(self._infos), policy=policy, overrides_s=overrides)
        self._device_ms = np.full(len(self._infos), _NEVER, np.int64)
        self._state = np.zeros(len(self._infos), np.int8)
        self._scratch = (
            np.zeros(len(self._infos), bool),
            np.full(len(self._infos), _NEVER, np.int64),
            np.zeros(len(self._infos), np.intp),
        )
        self._since = np.zeros(len(self._infos), np.int64)
        size = len(self.gateway_ids)
        self.heartbeats = ReportIntervals(size, policy=policy)
        self._heard_ms = np.full(size, -1, np.int64)
        self._health_time_s = np.full(size, np.nan)
        self._heartbeat_known = np.zeros(size, bool)
        self._gateway_state = np.zeros(size, np.int8)
        self._gateway_since = np.zeros(size, np.int64)
        self._up_since = np.full(size, -1, np.int64)
        self._seen: list[tuple[bool, int] | None] = [None] * size
        """(online, session) of each gateway at the previous sweep; None before the first state."""
        self._connected_since: int | None = None
        self._connection = -1
        shortest_s = float(np.nanmin(np.append(overrides, policy.min_s)))
        self.period_s = min(period_s, shortest_s * policy.intervals / 4)
        """Seconds between sweeps: at most a quarter of the shortest stale limit."""
        community_name = registry.community_name
        grids: dict[str, Counter[str]] = {g: Counter() for g in self.gateway_ids}
        for info in self._infos:
            grids[info.gateway][info.grid] += 1
        self._gateway_grid = [grids[g].most_common(1)[0][0] if grids[g] else "" for g in self.gateway_ids]
        self._gateway_place = [
            " ".join(p for p in (community_name, registry.gateways[g].location, f"网关 {g}") if p)
            for g in self.gateway_ids
        ]
        self._sensor_place = [f"{community_name} {i.location}".strip() for i in self._infos]
        metrics.gauge_family(
            "anju_sensors_stale",
            "Sensors declared stale, by reason (stale: silent for 3 report intervals; gateway-offline).",
            self._stale_samples,
        )
        metrics.gauge_family(
            "anju_gateways_offline",
            "Gateways declared offline by liveness, by reason (gateway-offline: death/Will or no state; "
            "heartbeat-lost: silent while the broker says online).",
            self._offline_samples,
        )

    # --- input ---------------------------------------------------------------------------------------------

    def observe(self, sensor_ids: Sequence[str], times_ms: npt.NDArray[np.int64], received_ms: int) -> None:
        """``observe_rows`` by sensor id (unknown ids are ignored). The dict lookup per reading misses the cache at
        a few hundred thousand sensors: bench/liveness.py measured ~0.3 µs a reading this way against ~0.12 µs by
        row, so the ingest round passes the registry rows it already has."""
        rows = np.fromiter(map(self._index.get, sensor_ids, repeat(-1)), np.intp, len(sensor_ids))
        known = rows >= 0
        if not known.all():
            rows, times_ms = rows[known], np.asarray(times_ms, np.int64)[known]
        self.observe_rows(rows, times_ms, received_ms)

    def observe_rows(self, rows: npt.NDArray[np.intp], times_ms: npt.NDArray[np.int64], received_ms: int) -> None:
        """One commit round's accepted readings: sensor rows (``SensorInfo.index``), device times (Unix ms),
        committed at ``received_ms`` (hub clock).

        Any accepted reading, new or repeated, proves its sensor and gateway reach the hub; only readings newer
        than the sensor's newest teach its interval (``hub.ingest.intervals``).
        """
        if rows.size == 0:
            return
        times = np.asarray(times_ms, np.int64)
        unique, newest, newer = self._per_sensor(rows, times)
        previous = self._device_ms[unique]
        seen = previous != _NEVER
        advance = np.full(unique.size, np.nan)
        advance[seen] = (newest[seen] - previous[seen]).astype(np.float64)
        self.sensors.arrive(unique, received_ms, advance, newer, learn_after_ms=self._learn_after())
        self._device_ms[unique] = np.maximum(previous, newest)
        gateways = self._gateway_of[unique]  # repeated gateways all get the same value: no need to dedup
        self._heard_ms[gateways] = np.maximum(self._heard_ms[gateways], received_ms)

    def _per_sensor(
        self, rows: npt.NDArray[np.intp], times: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.intp]]:
        """The distinct rows (sorted), each one's newest device time, and how many of its readings are newer
        than the newest seen before. Large rounds scatter into row-sized scratch arrays (O(rows + sensors), no
        sort); small ones sort (``np.unique``), so a round of ten readings does not scan every sensor."""
        newer_mask = times > self._device_ms[rows]
        if rows.size * 16 < len(self._infos):
            unique, inverse = np.unique(rows, return_inverse=True)
            newest = np.full(unique.size, _NEVER, np.int64)
            np.maximum.at(newest, inverse, times)
            return unique, newest, np.bincount(inverse[newer_mask], minlength=unique.size)
        marked, latest, count = self._scratch
        marked[rows] = True
        unique = np.flatnonzero(marked)
        marked[unique] = False
        np.maximum.at(latest, rows, times)
        np.add.at(count, rows[newer_mask], 1)
        newest, newer = latest[unique], count[unique]
        latest[unique], count[unique] = _NEVER, 0
        return unique, newest, newer

    def heartbeat(self, gateway: str, time_s: float, received_ms: int) -> None:
        """A health report (gateway clock ``time_s``) received at ``received_ms``: the gateway's heartbeat.

        The health topic is retained, so the broker re-delivers the last report on every hub (re)connect: a
        report with the ``time_s`` of the previous one is that copy, not a sign of life, and is ignored.
        """
        row = self._gateway_index.get(gateway)
        if row is None or time_s == self._health_time_s[row]:
            return
        previous = self._health_time_s[row]
        advance = np.array([(time_s - previous) * 1000.0])  # NaN for the first report: nothing learned
        self._health_time_s[row] = time_s
        self._heartbeat_known[row] = True
        self._heard_ms[row] = max(int(self._heard_ms[row]), received_ms)
        one = np.ones(1, np.intp)
        self.heartbeats.arrive(np.array([row], np.intp), received_ms, advance, one, learn_after_ms=self._learn_after())

    def restore(self, events: Iterable[RiskEvent], now_ms: int) -> int:
        """Take the firing liveness conditions of alerts still open from before a restart; return how many.

        Without this a sensor that came back while the hub was down would never be cleared (events are emitted
        on change only), and one still stale would not be re-declared: its alert is already open.
        """
        taken = 0
        for event in events:
            if event.status != "firing" or event.community != self._registry.community:
                continue
            parts = event.key.split("/")
            if len(parts) == 4 and parts[1] == "gateway" and parts[3] == "offline":
                row = self._gateway_index.get(parts[2])
                if row is not None:
                    self._gateway_state[row] = SILENT if event.rule == _GATEWAY_RULES[SILENT] else OFFLINE
                    self._gateway_since[row] = now_ms
                    taken += 1
            elif len(parts) == 3 and parts[2] == "offline" and (row := self._index.get(parts[1])) is not None:
                self._state[row] = GATEWAY_DOWN if event.rule == _SENSOR_RULES[GATEWAY_DOWN] else STALE
                self._since[row] = now_ms
                taken += 1
        return taken

    async def restore_open(self, alerts: OpenAlerts, now_ms: int | None = None) -> int:
        """``restore`` from the alert service's unresolved alerts (open, acknowledged, en route or on site)."""
        now = _now_ms() if now_ms is None else now_ms
        taken = 0
        for state in OPEN_STATES:
            taken += self.restore((alert.last_event for alert in await alerts.every_alert_in(state)), now)
        if taken:
            log.info("liveness: %d offline conditions still open from before the restart", taken)
        return taken

    # --- judging -------------------------------------------------------------------------------------------

    def sweep(self, now_ms: int, *, connected: bool, connection: int = 0) -> list[RiskEvent]:
        """Judge everything at ``now_ms`` (hub clock) and return the changes as events, gateways first.

        ``connection`` counts the hub's broker connections: a new value means it reconnected since the previous
        sweep, even if ``connected`` was never seen false in between; the clocks restart then.
        """
        if not connected:
            self._connected_since = None
            return []
        if self._connected_since is None or connection != self._connection:
            self._connected_since, self._connection = now_ms, connection
        events = self._sweep_gateways(now_ms, self._connected_since)
        events.extend(self._sweep_sensors(now_ms, self._connected_since, self.max_events))
        return events

    async def run(
        self,
        *,
        connected: Callable[[], bool],
        on_risks: Callable[[Sequence[RiskEvent]], Awaitable[object]],
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        """Sweep every ``period_s`` until cancelled, handing each sweep's events to ``on_risks`` together (the
        alert service: a dead gateway's sensors in one transaction)."""
        while True:
            connections = int(self._metrics.mqtt_connects.get())
            events = self.sweep(clock_ms(), connected=connected(), connection=connections)
            for event in events:
                self._metrics.risk_events.inc(grade=event.grade.name, status=event.status)
            if events:
                await on_risks(events)
            await asyncio.sleep(self.period_s)

    def _learn_after(self) -> int:
        return _DISCONNECTED if self._connected_since is None else self._connected_since

    def _sweep_gateways(self, now_ms: int, since_ms: int) -> list[RiskEvent]:
        limits = self.heartbeats.limit_ms()
        events: list[RiskEvent] = []
        for row, gateway in enumerate(self.gateway_ids):
            status = self._registry.gateways[gateway]
            before = self._seen[row]
            if status.session is not None:
                # A birth seen during this run is a sign of life; the first state seen may be a retained copy.
                if status.online and before is not None and (not before[0] or before[1] != status.session):
                    self._heard_ms[row] = max(int(self._heard_ms[row]), now_ms)
                self._seen[row] = (status.online, status.session)
            reported = int(self._gateway_state[row])
            heard = int(self._heard_ms[row])
            if not status.online:
                in_grace = status.session is None and now_ms - since_ms <= limits[row]
                target = reported if in_grace else OFFLINE
            elif self._heartbeat_known[row] and now_ms - max(heard, since_ms) > limits[row]:
                target = SILENT
            elif reported != ONLINE and heard <= self._gateway_since[row]:
                target = reported  # the broker says online, but nothing came from it since it was declared
            else:
                target = ONLINE
            if target == reported:
                continue
            self._gateway_state[row], self._gateway_since[row] = target, now_ms
            if target == ONLINE:
                self._up_since[row] = now_ms
            events.append(self._gateway_event(row, target, reported, now_ms, since_ms, float(limits[row])))
        return events

    def _sweep_sensors(self, now_ms: int, since_ms: int, budget: int) -> list[RiskEvent]:
        last = self.sensors.last_ms
        limits = self.sensors.limit_ms()
        state = self._state
        gateway_down = self._gateway_state[self._gateway_of] != ONLINE
        clock = np.maximum(np.maximum(last, since_ms), self._up_since[self._gateway_of])
        silent = (now_ms - clock) > limits
        waiting = (state != FRESH) & (last <= self._since)  # declared, and no reading since
        target = np.where(gateway_down, GATEWAY_DOWN, np.where(silent, STALE, np.where(waiting, state, FRESH)))
        changed = np.flatnonzero(target != state)
        if changed.size == 0:
            return []
        deferred = max(0, changed.size - budget)
        changed = changed[:budget]
        events = [
            self._sensor_event(row, int(target[row]), int(state[row]), now_ms, since_ms, float(limits[row]))
            for row in changed.tolist()
        ]
        state[changed] = target[changed]
        self._since[changed] = now_ms
        firing = sum(1 for event in events if event.status == "firing")
        log.warning(
            "liveness: %d sensors stale or changed reason, %d back%s",
            firing,
            len(events) - firing,
            f", {deferred} more in the next sweeps" if deferred else "",
        )
        return events

    def _sensor_event(self, row: int, new: int, old: int, now_ms: int, since_ms: int, limit_ms: float) -> RiskEvent:
        info = self._infos[row]
        last = int(self.sensors.last_ms[row])
        rule = _SENSOR_RULES[new if new != FRESH else old]
        self._metrics.liveness_transitions.inc(subject="sensor", reason=rule if new != FRESH else "cleared")
        return offline_event(
            community=self._registry.community,
            info=info,
            place=self._sensor_place[row],
            rule=rule,
            firing=new != FRESH,
            age_ms=now_ms - (last if last >= 0 else since_ms),
            time_ms=now_ms if new != FRESH or last < 0 else last,
            limit_ms=limit_ms,
            intervals=self.policy.intervals,
        )

    def _gateway_event(self, row: int, new: int, old: int, now_ms: int, since_ms: int, limit_ms: float) -> RiskEvent:
        gateway = self.gateway_ids[row]
        heard = int(self._heard_ms[row])
        rule = _GATEWAY_RULES[new if new != ONLINE else old]
        self._metrics.liveness_transitions.inc(subject="gateway", reason=rule if new != ONLINE else "cleared")
        log.warning("liveness: gateway %s %s", gateway, rule if new != ONLINE else "back (cleared)")
        return gateway_offline_event(
            community=self._registry.community,
            gateway=gateway,
            grid=self._gateway_grid[row],
            place=self._gateway_place[row],
            rule=rule,
            firing=new != ONLINE,
            age_ms=now_ms - (heard if heard >= 0 else since_ms),
            time_ms=now_ms,
            limit_ms=limit_ms,
            intervals=self.policy.intervals,
        )

    # --- views ---------------------------------------------------------------------------------------------

    def sensor_statuses(self, rows: npt.NDArray[np.intp]) -> list[tuple[SensorStatus, SensorReason | None]]:
        """Status and, for a stale one, the reason, of the sensors at ``rows`` (as ``sensor_page`` says them)."""
        last = self.sensors.last_ms[rows]
        state = self._state[rows]
        codes = np.where(state != FRESH, 1, np.where(last < 0, 2, 0))
        return [(_STATUSES[code], _SENSOR_RULES.get(s)) for code, s in zip(codes.tolist(), state.tolist(), strict=True)]

    def sensor_page(
        self,
        now_ms: int,
        *,
        gateway: str | None = None,
        status: SensorStatus | None = None,
        after_row: int = -1,
        limit: int = 1000,
        only: Collection[str] | None = None,
    ) -> tuple[int, int, list[SensorLiveness]]:
        """The total matching, how many of them come before ``after_row`` (inclusive), and one page of sensors
        (config order) after ``after_row`` (a keyset page: the sensor's ``SensorInfo.index``; -1: from the first),
        optionally of one gateway or status, and only of the sensor ids in ``only`` (the caller's scope) when
        given."""
        last = self.sensors.last_ms
        codes = np.where(self._state != FRESH, 1, np.where(last < 0, 2, 0))
        mask = np.ones(len(self._infos), bool)
        if only is not None:
            mask &= np.fromiter((info.id in only for info in self._infos), bool, len(self._infos))
        if gateway is not None:
            mask &= self._gateway_of == self._gateway_index.get(gateway, -1)
        if status is not None:
            mask &= codes == _STATUSES.index(status)
        rows = np.flatnonzero(mask)
        skipped = int(np.searchsorted(rows, after_row, side="right"))
        page = rows[skipped : skipped + limit]
        sources = self.sensors.source(page)
        limits = self.sensors.limit_ms()
        views = []
        for row, source in zip(page.tolist(), sources, strict=True):
            info, seen = self._infos[row], int(last[row])
            views.append(
                SensorLiveness(
                    sensor=info.id,
                    gateway=info.gateway,
                    kind=info.kind.name,
                    status=_STATUSES[int(codes[row])],
                    reason=_SENSOR_RULES.get(int(self._state[row])),
                    last_seen_ms=seen if seen >= 0 else None,
                    age_s=max(0, now_ms - seen) / 1000 if seen >= 0 else None,
                    interval_s=float(self.sensors.interval_ms[row]) / 1000,
                    interval_source=source,
                    stale_after_s=float(limits[row]) / 1000,
                )
            )
        return rows.size, skipped, views

    def gateway_view(self, gateway: str) -> GatewayLiveness | None:
        """The gateway's declared liveness, or None when the deployment does not know it."""
        row = self._gateway_index.get(gateway)
        if row is None:
            return None
        state = int(self._gateway_state[row])
        unknown = state == ONLINE and self._registry.gateways[gateway].session is None
        heard = int(self._heard_ms[row])
        return GatewayLiveness(
            gateway=gateway,
            status="unknown" if unknown else _GATEWAY_STATUSES[state],
            last_heard_ms=heard if heard >= 0 else None,
            heartbeat_known=bool(self._heartbeat_known[row]),
            heartbeat_interval_s=float(self.heartbeats.interval_ms[row]) / 1000,
            silent_after_s=float(self.heartbeats.limit_ms()[row]) / 1000,
        )

    def _labels(self, reason: str) -> Mapping[str, str]:
        return {"community": self._registry.community, "reason": reason}

    def _stale_samples(self) -> Samples:
        counts = np.bincount(self._state, minlength=3)
        return [(self._labels(rule), float(counts[code])) for code, rule in _SENSOR_RULES.items()]

    def _offline_samples(self) -> Samples:
        counts = np.bincount(self._gateway_state, minlength=3)
        return [(self._labels(rule), float(counts[code])) for code, rule in _GATEWAY_RULES.items()]
