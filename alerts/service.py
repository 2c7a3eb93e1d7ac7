"""The alert service: risk events in, one deduplicated alert per condition, notifications out, reliably.

::

    async with WebhookReceiver() as receiver, AlertService(
        store=store, directory=directory, receiver=receiver
    ) as service:
        alert = await service.submit(event)

The event path: stages (mute) → dedup by key → grade (:mod:`alerts.grading`) → route to the grid's managers
(:class:`alerts.directory.Directory`), and up the escalation chain when nobody acknowledges in time
(:mod:`alerts.escalation`, task ``anju-alerts-escalation``) → commit alert, audit and outbox in one transaction →
hand the due notifications to the courier (:mod:`alerts.delivery`, task ``anju-alerts-delivery`` under the
service's one TaskGroup), which sends them at once — threshold crossing → notification sent is the latency-critical
path, DESIGN.md targets p99 ≤ 1 s against GB/T 45839-2025's 15 s — and retries retryable failures with capped,
jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from alerts.delivery import Courier, RetryPolicy
from alerts.directory import Directory, VoiceTarget
from alerts.disclosure import Disclosure, SubjectKind
from alerts.escalation import EscalationPolicy
from alerts.grading import grade as final_grade
from alerts.grouping import GroupingPolicy, PageWindows, group_of
from alerts.hazards import REVIEW_EVERY_MS, Hazard, HazardState
from alerts.incidents import HouseholdStatus, Incident, IncidentKind, ResidentReport, check_values
from alerts.inhibit import Inhibitions
from alerts.message import Reason, iso8601, notification_body, with_work_order
from alerts.model import OPEN_STATES, Alert, AlertState, EventStatus, Grade, RiskEvent, Transition
from alerts.receivers.base import Receiver
from alerts.silence import Mute, Silence, SilenceMatch, first_mute
from alerts.stage import Stage
from alerts.stats import GroupBy, ResponseStats, response_stats
from alerts.store import AlertStore, AuditReport, AuditRow, Notification
from alerts.work_orders import STEPS as WORK_ORDER_STEPS
from alerts.work_orders import Department, Evidence, WorkOrder, WorkOrderState

__all__ = [
    "AlertNotFoundError",
    "AlertService",
    "Clock",
    "Counters",
    "HazardNotFoundError",
    "IncidentNotFoundError",
    "NotFoundError",
    "TransitionError",
    "WorkOrderNotFoundError",
    "wall_clock_ms",
]

log = logging.getLogger("anju.alerts")

Clock = Callable[[], int]
"""Returns Unix milliseconds."""

SYSTEM = "anju"
"""``by`` of transitions the service makes itself (opening, upgrades, clears)."""

_S = AlertState
_ALLOWED: dict[AlertState, frozenset[AlertState]] = {
    _S.OPEN: frozenset({_S.ACKNOWLEDGED}),
    _S.ACKNOWLEDGED: frozenset({_S.EN_ROUTE, _S.ON_SITE, _S.RESOLVED}),
    _S.EN_ROUTE: frozenset({_S.ON_SITE, _S.RESOLVED}),
    _S.ON_SITE: frozenset({_S.RESOLVED}),
    _S.RESOLVED: frozenset({_S.VERIFIED, _S.OPEN}),
    _S.VERIFIED: frozenset({_S.CLOSED, _S.OPEN}),
    _S.CLOSED: frozenset(),
}
"""Lifecycle edges people may take (to OPEN: reopening). Resolving needs an acknowledgement first, so answer times
are measured; en route and on site may be skipped (a manager who was already there)."""


def wall_clock_ms() -> int:
    """Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


RECENT_EVENTS = 10_000
"""Risk events kept in memory for ``GET /api/v1/risk-events`` (what detection and other systems said lately)."""


@dataclass(frozen=True, slots=True)
class RecentEvent:
    """A risk event as the service took it: when (ms), whether a mute stopped it, the alert it opened or changed."""

    event: RiskEvent
    received_ms: int
    outcome: Literal["muted", "taken"]
    alert: Alert | None
    """The alert it opened or changed (None: muted, or nothing changed)."""
    seq: int = 0
    """Its place in the order taken since the service started (1, 2, …): a position that later events do not move,
    for paging (``recent_events(before=…)``)."""


class TransitionError(Exception):
    """A lifecycle step that is not allowed from the alert's (or work order's) current state."""

    def __init__(self, subject_id: str, from_state: str, to_state: str, why: str = "") -> None:
        text = f"{subject_id}: cannot go from {from_state} to {to_state}" + (f": {why}" if why else "")
        super().__init__(text)
        self.alert_id = subject_id
        self.from_state = from_state
        self.to_state = to_state
        self.why = why


def _order_json(order: WorkOrder, department: Department | None) -> dict[str, Any]:
    return {
        "id": order.id,
        "department": order.department,
        "department_name": department.name if department else order.department,
        "task": order.task,
        "state": order.state.value,
        "due": iso8601(order.due_ms),
    }


class NotFoundError(LookupError):
    """No record of this kind (``what``) has this id; the API answers 404 with the message."""

    what = "record"

    def __init__(self, ident: str) -> None:
        super().__init__(f"no {self.what} {ident!r}")
        self.ident = ident


class AlertNotFoundError(NotFoundError):
    what = "alert"


class WorkOrderNotFoundError(NotFoundError):
    what = "work order"


class HazardNotFoundError(NotFoundError):
    what = "hazard"


class IncidentNotFoundError(NotFoundError):
    what = "incident"


@dataclasses.dataclass(slots=True)
class Counters:
    """Monotonic counters for the hub to export (Prometheus names without the ``anju_alerts_`` prefix).

    ``notification_failures_total`` kinds: ``retryable`` (each failed attempt that will be retried),
    ``permanent`` (receiver refused), ``exhausted`` (gave up after ``max_attempts``), ``no_target``
    (the person or target left the directory before delivery).
    """

    alerts_opened_total: dict[Grade, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(Grade, 0))
    notifications_sent_total: int = 0
    notification_failures_total: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(("retryable", "permanent", "exhausted", "no_target"), 0)
    )
    unrouted_total: int = 0
    muted_total: int = 0
    escalations_total: int = 0
    """Alerts paged one level further up for want of an acknowledgement."""
    reminders_total: int = 0
    """Alerts paged again at the top of the chain for want of an acknowledgement."""
    work_orders_overdue_total: int = 0
    """Work orders paged again for not being done by their deadline."""
    overdue_total: int = 0
    """Acknowledged alerts paged again because nobody reported on site in time."""
    reopened_total: int = 0
    """Resolved alerts reopened by the service because their condition stayed in alarm."""
    pages_sent_total: int = 0
    """Deliveries made: a digest of several notifications is one page."""
    digests_sent_total: int = 0
    """Pages that carried several notifications of one group (``alerts.grouping``)."""

    def snapshot(self) -> Counters:
        """A copy that later counting does not change."""
        return dataclasses.replace(
            self,
            alerts_opened_total=dict(self.alerts_opened_total),
            notification_failures_total=dict(self.notification_failures_total),
        )


VOICE_INTERVAL_MS = 60_000
"""The shortest group interval on a voice channel: providers allow one call a minute to a number (Alibaba Cloud VMS
flow control), and the person's other channels carry every change within the grade's interval."""


class AlertService:
    """Alert lifecycle over an :class:`AlertStore`, with a background delivery task. Use as ``async with``."""

    def __init__(
        self,
        *,
        store: AlertStore,
        directory: Directory,
        receiver: Receiver,
        clock: Clock = wall_clock_ms,
        stages: Sequence[Stage] = (),
        mutes: Sequence[Mute] = (),
        escalation: EscalationPolicy | None = None,
        departments: Sequence[Department] = (),
        max_attempts: int = 10,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_in_flight: int = 32,
        grouping: GroupingPolicy | None = None,
        maintenance: Sequence[str] = (),
    ) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock
        self._stages = tuple(stages)
        self._mutes = tuple(mutes)
        """Mutes besides the silences (inhibitions, …), asked in order after the silences."""
        self._silences: list[Silence] = []
        """Silences not yet ended or lifted (loaded at start, kept up to date by ``silence``/``lift_silence``)."""
        self._inhibitions = Inhibitions()
        self._incidents: list[Incident] = []
        """Active incidents (loaded at start, followed on declare and close)."""
        self._muted_counts: dict[str, int] = {}
        """Events muted per silence since the counts were last written (written once a second)."""
        self._escalation = escalation if escalation is not None else EscalationPolicy()
        self._escalation.check(directory)
        self._departments = {d.id: d for d in departments}
        for person_id in maintenance:
            if directory.person(person_id) is None:
                raise ValueError(f"maintenance names unknown person {person_id!r}")
        self._maintenance = tuple(maintenance)
        """Who answers first for equipment faults (``RiskEvent.maintenance``): the property company's people."""
        for department in departments:
            for person_id in department.people:
                if directory.person(person_id) is None:
                    raise ValueError(f"department {department.id!r} names unknown person {person_id!r}")
        self._windows = PageWindows(grouping) if grouping is not None else None
        """Group windows and volume caps (None: every notification is its own page)."""
        self._counters = Counters()
        self._mutex = asyncio.Lock()  # one alert change at a time: dedup reads then writes
        self._pending: list[tuple[RiskEvent, asyncio.Future[Alert | None]]] = []
        self._recent: deque[RecentEvent] = deque(maxlen=RECENT_EVENTS)
        self._recent_seq = 0
        """Submitted events waiting for the next group commit."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._courier = Courier(
            store=store,
            directory=directory,
            receiver=receiver,
            clock=clock,
            counters=self._counters,
            retry=RetryPolicy(max_attempts=max_attempts, base_s=retry_base_s, max_s=retry_max_s),
            max_in_flight=max_in_flight,
            spawn=lambda coro, name: self._spawn(coro, name=name),
        )

    # --- lifetime -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> AlertService:
        if self._group is not None:
            raise RuntimeError("AlertService is already running")
        self._silences = await asyncio.to_thread(self._store.silences, running_at_ms=self._clock())
        self._incidents = await asyncio.to_thread(self._store.incidents, active_only=True)
        if self._windows is not None:
            since = self._clock() - self._windows.policy.longest_ms
            self._windows.load(await asyncio.to_thread(self._store.recent_pages, since_ms=since))
        for state in OPEN_STATES:
            for alert in await self.every_alert_in(state):
                self._inhibitions.follow(alert)
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._spawn(self._courier.run(), name="anju-alerts-delivery")
        self._spawn(self._escalate_forever(), name="anju-alerts-escalation")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        for task in list(self._tasks):
            task.cancel()  # deliveries in flight stay pending in the outbox and go out after a restart
        await self._write_muted_counts()
        # The body's own exception (if any) propagates unchanged; a crashed delivery task raises its group.
        await group.__aexit__(None, None, None)

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        assert self._group is not None
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def counters(self) -> Counters:
        """A snapshot of the service's counters."""
        return self._counters.snapshot()

    # --- events -------------------------------------------------------------------------------------------

    async def submit(self, event: RiskEvent) -> Alert | None:
        """Take one risk event; return the alert it opened or changed, or None when it changed nothing.

        One open alert per ``event.key``. A firing event without an open alert opens one and notifies the
        grid's managers; a more severe grade upgrades it and notifies again (grades never drop while open);
        a firing event after the condition had cleared notifies again ("refired"); otherwise the alert only
        takes the latest value and time. A cleared event records ``cleared_at_ms`` and notifies
        "已恢复 / cleared" — the alert stays open until a person resolves it. Cleared events for keys without
        an open alert, and events a stage stopped, return None.
        """
        (alert,) = await self.submit_many((event,))
        return alert

    async def submit_many(self, events: Sequence[RiskEvent]) -> list[Alert | None]:
        """``submit`` for several events, in order: what each opened or changed (None: nothing). They are judged and
        committed together — an ingest round's or another system's batch costs one transaction (one fsync), not one
        per event — except that an event whose alert may mute later ones (a corroboration, the cause another event
        names) is committed before the events after it go through the mutes, so a batch is muted as the same
        events one by one would be."""
        loop = asyncio.get_running_loop()
        results: list[asyncio.Future[Alert | None] | None] = []
        causes = {event.cause for event in events if event.cause is not None}
        for event in events:
            passed = await self._through_stages(event)
            if passed is None:
                results.append(None)
                continue
            result: asyncio.Future[Alert | None] = loop.create_future()
            self._pending.append((passed, result))
            results.append(result)
            if passed.status == "firing" and (passed.kind == "corroboration" or passed.key in causes):
                # Its alert may mute events after it (inhibitions follow committed alerts): as one at a time.
                await self._settle(results)
        await self._settle(results)
        outcomes = [None if r is None else await r for r in results]
        received = self._clock()
        for event, waited, outcome in zip(events, results, outcomes, strict=True):
            self._recent_seq += 1
            self._recent.append(
                RecentEvent(event, received, "muted" if waited is None else "taken", outcome, self._recent_seq)
            )
        return outcomes

    def recent_events(
        self, *, matching: Callable[[RiskEvent], bool] | None = None, limit: int, before: int | None = None
    ) -> list[RecentEvent]:
        """The risk events taken since the service started (the newest ``RECENT_EVENTS``), newest first, those
        ``matching`` accepts, only those taken before the one numbered ``before`` (a keyset page), at most
        ``limit``."""
        found = []
        for recent in reversed(self._recent):
            if before is not None and recent.seq >= before:
                continue
            if matching is None or matching(recent.event):
                found.append(recent)
                if len(found) >= limit:
                    break
        return found

    async def _settle(self, results: Sequence[asyncio.Future[Alert | None] | None]) -> None:
        """Group commit: every event waiting when the mutex frees is judged and committed in one transaction (one
        fsync) by whichever submitter gets the mutex first; the others find their results ready."""
        waiting = [r for r in results if r is not None]
        if waiting:
            async with self._mutex:
                if not all(r.done() for r in waiting):
                    batch, self._pending = self._pending, []
                    await self._judge_batch(batch)

    async def _through_stages(self, event: RiskEvent) -> RiskEvent | None:
        """``event`` as the stages and mutes pass it on, or None when one of them stopped it."""
        for stage in self._stages:
            passed = await stage(event)
            if passed is None:
                self._counters.muted_total += 1
                log.info("event muted by %s: %s", type(stage).__name__, event.key)
                return None
            event = passed
        if event.status == "firing" and self._is_muted(event):
            return None
        return event

    async def _judge_batch(self, batch: list[tuple[RiskEvent, asyncio.Future[Alert | None]]]) -> None:
        """Dedup, grade and route ``batch`` in order and commit every change in one transaction."""
        try:
            now = self._clock()
            keys = list(dict.fromkeys(event.key for event, _ in batch))
            current_of = await asyncio.to_thread(self._store.open_alerts, keys)
            writes: list[tuple[Alert, list[Transition], list[Notification]]] = []
            outcomes: list[tuple[asyncio.Future[Alert | None], Alert | None, bool]] = []
            for event, result in batch:
                current = current_of.get(event.key)
                reason: Reason | None
                if current is None:
                    if event.status == "cleared":
                        outcomes.append((result, await self._cleared_after_resolve(event, now), False))
                        continue
                    alert, reason, transitions = self._open(event, now)
                else:
                    alert, reason, transitions = self._update(current, event, now)
                current_of[event.key] = alert
                writes.append((alert, transitions, self._outbox(alert, reason, now) if reason else []))
                outcomes.append((result, alert, current is None))
            await asyncio.to_thread(self._store.commit_many, writes)
        except BaseException as exc:
            for _, result in batch:
                if not result.done():
                    result.set_exception(exc)
            raise
        for written, _, _ in writes:
            self._inhibitions.follow(written)
        if self._incidents:
            await self._attach_to_incidents([a for _, a, opened in outcomes if opened and a is not None])
        for result, outcome, opened in outcomes:
            if opened and outcome is not None:
                self._counters.alerts_opened_total[outcome.grade] += 1
                log.info("alert opened: %s %s grade %s", outcome.id, outcome.key, outcome.grade.name)
            result.set_result(outcome)
        if self._group is not None:
            self._courier.send_now([n for _, _, notifications in writes for n in notifications], now)

    def _is_muted(self, event: RiskEvent) -> bool:
        """A firing event a silence or another mute holds back (counted); cleared events always pass, so an alert
        opened before a silence still gets its "cleared" notice."""
        now = self._clock()
        for silence in self._silences:
            if silence.muted_by(event, now) is not None:
                self._muted_counts[silence.id] = self._muted_counts.get(silence.id, 0) + 1
                self._counters.muted_total += 1
                log.info("event muted by silence %s: %s", silence.id, event.key)
                return True
        why = first_mute((self._inhibitions, *self._mutes), event, now)
        if why is not None:
            self._counters.muted_total += 1
            log.info("event muted (%s): %s", why, event.key)
            return True
        return False

    # --- silences -----------------------------------------------------------------------------------------

    async def silence(
        self, match: SilenceMatch, *, by: str, reason: str, ends_at_ms: int, starts_at_ms: int | None = None
    ) -> Silence:
        """Mute firing events that ``match`` from ``starts_at_ms`` (default now) until ``ends_at_ms``; audited.
        Raises ValueError for a window that ends before it starts, is longer than allowed or is already over."""
        now = self._clock()
        start = now if starts_at_ms is None else starts_at_ms
        if ends_at_ms <= now:
            raise ValueError("the silence would already be over")
        silence = Silence(
            match=match, starts_at_ms=start, ends_at_ms=ends_at_ms, created_by=by, created_ms=now, reason=reason
        )
        await asyncio.to_thread(self._store.add_silence, silence)
        self._silences = [s for s in self._silences if s.ends_at_ms > now] + [silence]
        log.info("silence %s set by %s: %s (%s)", silence.id, by, match.describe(), reason)
        return silence

    async def lift_silence(self, silence_id: str, *, by: str) -> Silence | None:
        """End a silence now (audited); None when no such silence is running."""
        await self._write_muted_counts()
        lifted = await asyncio.to_thread(self._store.cancel_silence, silence_id, by=by, now_ms=self._clock())
        if lifted is not None:
            self._silences = [s for s in self._silences if s.id != silence_id]
            log.info("silence %s lifted by %s", silence_id, by)
        return lifted

    async def list_silences(self, *, running: bool = False) -> list[Silence]:
        """Every silence newest first, or (``running``) those not yet ended or lifted, with their muted counts."""
        await self._write_muted_counts()
        at = self._clock() if running else None
        return await asyncio.to_thread(self._store.silences, running_at_ms=at)

    async def _write_muted_counts(self) -> None:
        counts, self._muted_counts = self._muted_counts, {}
        if counts:
            await asyncio.to_thread(self._store.count_muted, counts)

    async def _cleared_after_resolve(self, event: RiskEvent, now: int) -> Alert | None:
        """A resolved alert whose condition was still in alarm sees it clear: it will not reopen (audited, nobody
        paged: it is resolved). None when no such alert waits."""
        waiting = await asyncio.to_thread(self._store.awaiting_clear, event.key)
        if waiting is None:
            return None
        alert = dataclasses.replace(
            waiting, last_event=event, cleared_at_ms=event.time_ms, updated_at_ms=now, escalate_at_ms=None
        )
        transition = self._audit_row(
            alert, SYSTEM, "event", now, "condition cleared after it was resolved 处置后已恢复"
        )
        await asyncio.to_thread(self._store.commit, alert, transitions=[transition])
        self._inhibitions.follow(alert)
        return alert

    def _open(self, event: RiskEvent, now: int) -> tuple[Alert, Reason, list[Transition]]:
        grade = final_grade(event)
        level = self._escalation.start_level(grade)
        alert = Alert(
            id=f"al-{secrets.token_hex(8)}",
            key=event.key,
            community=event.community,
            grid=event.grid,
            grade=grade,
            state=AlertState.OPEN,
            revision=1,
            first_event=event,
            last_event=event,
            opened_at_ms=now,
            updated_at_ms=now,
            level=level,
            escalate_at_ms=now + self._escalation.deadline_ms(grade),
        )
        note = f"opened at grade {grade.name} ({event.rule}, {event.source})"
        if level:
            note += f"; every level of the chain paged at once (up to {self._level_name(alert, level)})"
        transition = Transition(
            alert_id=alert.id,
            from_state=None,
            to_state=AlertState.OPEN,
            by=SYSTEM,
            channel="event",
            time_ms=now,
            note=note,
        )
        return alert, Reason.OPENED, [transition]

    def _update(self, current: Alert, event: RiskEvent, now: int) -> tuple[Alert, Reason | None, list[Transition]]:
        alert = dataclasses.replace(current, last_event=event, updated_at_ms=now)
        reason: Reason | None = None
        note = ""
        if event.status == "cleared":
            if current.cleared_at_ms is None:
                alert = dataclasses.replace(alert, cleared_at_ms=event.time_ms, revision=current.revision + 1)
                reason, note = Reason.CLEARED, "condition cleared 已恢复"
        else:
            grade = final_grade(event, current.grade)
            if grade.more_severe_than(current.grade):
                alert = dataclasses.replace(alert, grade=grade, revision=current.revision + 1, cleared_at_ms=None)
                reason, note = Reason.UPGRADED, f"grade {current.grade.name} → {grade.name}"
                if alert.state is AlertState.OPEN and alert.escalate_at_ms is not None:  # unacknowledged: sooner
                    deadline = now + self._escalation.deadline_ms(grade)
                    level = max(alert.level, self._escalation.start_level(grade))
                    alert = dataclasses.replace(alert, level=level, escalate_at_ms=min(alert.escalate_at_ms, deadline))
            elif current.cleared_at_ms is not None:
                alert = dataclasses.replace(alert, revision=current.revision + 1, cleared_at_ms=None)
                reason, note = Reason.REFIRED, "fired again after clearing 再次触发"
        transitions = [self._audit_row(alert, SYSTEM, "event", now, note)] if reason is not None else []
        return alert, reason, transitions

    def _level_name(self, alert: Alert, level: int) -> str:
        grid = self._directory.grid(alert.grid)
        return self._escalation.level_name(level, grid.name if grid is not None else alert.grid)

    def _outbox(
        self,
        alert: Alert,
        reason: Reason,
        now: int,
        *,
        also: Sequence[str] = (),
        only: Sequence[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> list[Notification]:
        """Notifications of ``alert``'s latest revision for everyone its escalation has reached and the people
        ``also`` names (``only``: just those people), each body with ``extra`` fields (a work order)."""
        rows: list[Notification] = []
        first = None
        if alert.last_event.maintenance and self._maintenance:
            first = [p for p in map(self._directory.person, self._maintenance) if p is not None]
        reached = (
            []
            if only is not None
            else list(self._escalation.reached(self._directory, alert.grid, alert.level, now, first=first))
        )
        for person_id in [*(only or ()), *also]:
            person = self._directory.person(person_id)
            if person is not None and all(person.id != p.id for p in reached):
                reached.append(person)
        group = group_of(alert) if self._windows is not None and not extra else ""
        graded = alert.last_event  # the event at the alert's final grade, for the mutes that ask about a person
        if graded.grade is not alert.grade:
            graded = dataclasses.replace(graded, grade=alert.grade)
        for person in reached:
            send_at = now
            if person.quiet is not None and person.quiet.muted_by(graded, now) is not None:
                send_at = person.quiet.until_ms(now) or now
            for index, target in enumerate(person.targets):
                if not person.takes(index, int(alert.grade)):
                    continue
                lane_group, page_ms = group, send_at
                if self._windows is not None and group:
                    lane_group, page_ms = self._windows.schedule(
                        person.id,
                        index,
                        group,
                        alert.grade,
                        send_at,
                        cap=person.max_pages_per_hour,
                        min_interval_ms=VOICE_INTERVAL_MS if isinstance(target, VoiceTarget) else 0,
                    )
                key = Notification.idempotency_key(alert.id, alert.revision, person.id, index)
                body = notification_body(
                    alert, reason=reason, idempotency_key=key, recipient_id=person.id, recipient_name=person.name
                )
                if extra:
                    body.update(extra)
                    if isinstance(order := extra.get("work_order"), dict):
                        with_work_order(body, order)
                rows.append(
                    Notification(
                        key=key,
                        alert_id=alert.id,
                        revision=alert.revision,
                        reason=reason.value,
                        person_id=person.id,
                        target_index=index,
                        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                        next_attempt_ms=page_ms,
                        created_ms=now,
                        group_key=lane_group,
                        page_ms=page_ms if lane_group else None,
                    )
                )
        if not rows:
            self._counters.unrouted_total += 1
            log.warning(
                "alert %s (%s) is unrouted: grid %r and its escalation up to level %d have nobody with a target",
                alert.id,
                alert.key,
                alert.grid,
                alert.level,
            )
        return rows

    # --- people -------------------------------------------------------------------------------------------

    async def acknowledge(self, alert_id: str, *, by: str, channel: str) -> Alert:
        """A person takes the alert (接单, open → acknowledged); the on-site deadline starts. Raises
        :class:`TransitionError` from any other state, :class:`AlertNotFoundError` for an unknown id."""
        return await self._move(alert_id, AlertState.ACKNOWLEDGED, by=by, channel=channel, note="")

    async def assign(self, alert_id: str, *, person: str, by: str, channel: str, note: str = "") -> Alert:
        """Hand an open alert to ``person`` (指派: a committee member sends it to a colleague who is closer, a grid
        manager to the property company's technician): audited, and ``person`` is paged with it at once. The state
        does not change; the person takes it (接单) themselves. Raises ValueError for a person the directory does
        not list, :class:`TransitionError` for an alert no longer open."""
        return await self._annotate(
            alert_id, by=by, channel=channel, note=f"指派给 / assigned to {person}" + (f"：{note}" if note else ""),
            page=person, extra={"assignment": {"to": person, "by": by, "note": note}},
        )  # fmt: skip

    async def comment(self, alert_id: str, *, by: str, channel: str, text: str) -> Alert:
        """A note on the alert's record (a call made, what a neighbour said): audited, nobody paged, state unchanged.
        Raises :class:`AlertNotFoundError` for an unknown id."""
        return await self._annotate(alert_id, by=by, channel=channel, note=f"备注 / comment：{text}", page=None)

    async def _annotate(
        self, alert_id: str, *, by: str, channel: str, note: str, page: str | None, extra: dict[str, Any] | None = None
    ) -> Alert:
        """An audit row on the alert with its state unchanged; with ``page``, that person is notified of it (the
        notification carrying ``extra``)."""
        if not by or not channel:
            raise ValueError("by and channel must name who acted and how")
        if page is not None and self._directory.person(page) is None:
            raise ValueError(f"no person {page!r} in the directory")
        async with self._mutex:
            current = await asyncio.to_thread(self._store.get, alert_id)
            if current is None:
                raise AlertNotFoundError(alert_id)
            if page is not None and not current.state.is_open:
                raise TransitionError(alert_id, current.state, current.state, "only an open alert is assigned")
            now = self._clock()
            transition = Transition(alert_id=alert_id, from_state=current.state, to_state=current.state, by=by,
                                    channel=channel, time_ms=now, note=note)  # fmt: skip
            if page is None:
                alert, notifications = dataclasses.replace(current, updated_at_ms=now), []
            else:  # a new revision: a page of its own, never folded into a digest (an assignment is not routine)
                assigned = current.assigned_to if page in current.assigned_to else (*current.assigned_to, page)
                alert = dataclasses.replace(
                    current, revision=current.revision + 1, updated_at_ms=now, assigned_to=assigned
                )
                notifications = self._outbox(alert, Reason.ASSIGNED, now, only=[page], extra=extra or {"page": page})
            await asyncio.to_thread(self._store.commit, alert, transitions=[transition], notifications=notifications)
        if notifications:
            self._courier.wake()
        log.info("alert %s annotated by %s via %s: %s", alert_id, by, channel, note)
        return alert

    async def en_route(self, alert_id: str, *, by: str, channel: str, note: str = "") -> Alert:
        """The person who took it is on the way (acknowledged → en route)."""
        return await self._move(alert_id, AlertState.EN_ROUTE, by=by, channel=channel, note=note)

    async def on_site(self, alert_id: str, *, by: str, channel: str, note: str = "") -> Alert:
        """Someone is on site (acknowledged or en route → on site): the on-site deadline is met."""
        return await self._move(alert_id, AlertState.ON_SITE, by=by, channel=channel, note=note)

    async def resolve(self, alert_id: str, *, by: str, note: str = "", channel: str) -> Alert:
        """A person reports the hazard handled (acknowledged, en route or on site → resolved), with a note of what
        was found and done (and evidence links in it). If the condition is still in alarm, the alert reopens
        unless it clears within the policy's ``reopen_after_ms``."""
        return await self._move(alert_id, AlertState.RESOLVED, by=by, channel=channel, note=note)

    async def verify(self, alert_id: str, *, by: str, channel: str, note: str = "") -> Alert:
        """The community committee or property company confirms the fix (resolved → verified)."""
        return await self._move(alert_id, AlertState.VERIFIED, by=by, channel=channel, note=note)

    async def close(self, alert_id: str, *, by: str, channel: str, note: str = "") -> Alert:
        """The record is complete (verified → closed)."""
        return await self._move(alert_id, AlertState.CLOSED, by=by, channel=channel, note=note)

    async def reopen(self, alert_id: str, *, by: str, channel: str, note: str) -> Alert:
        """The fix did not hold (resolved or verified → open): everyone reached is paged again and the
        acknowledgement deadline runs again. ``note`` says why."""
        if not note:
            raise ValueError("reopening needs a note saying why")
        return await self._move(alert_id, AlertState.OPEN, by=by, channel=channel, note=note)

    async def _move(self, alert_id: str, to: AlertState, *, by: str, channel: str, note: str) -> Alert:
        if not by or not channel:
            raise ValueError("by and channel must name who acted and how")
        async with self._mutex:
            current = await asyncio.to_thread(self._store.get, alert_id)
            if current is None:
                raise AlertNotFoundError(alert_id)
            if to not in _ALLOWED[current.state]:
                raise TransitionError(alert_id, current.state, to)
            if to is AlertState.OPEN:
                existing = await asyncio.to_thread(self._store.open_alert, current.key)
                if existing is not None:  # the condition came back meanwhile and has its own alert
                    raise TransitionError(alert_id, current.state, to)
            if to is AlertState.CLOSED:
                orders = await asyncio.to_thread(self._store.work_orders, alert_id)
                unfinished = [o.id for o in orders if not o.state.finished]
                if unfinished:
                    why = f"work orders {', '.join(unfinished)} are not verified or cancelled"
                    raise TransitionError(alert_id, current.state, to, why)
            now = self._clock()
            alert = self._moved(current, to, by=by, note=note, now=now)
            transition = Transition(
                alert_id=alert_id,
                from_state=current.state,
                to_state=to,
                by=by,
                channel=channel,
                time_ms=now,
                note=note,
            )
            notifications = self._outbox(alert, Reason.REOPENED, now) if to is AlertState.OPEN else []
            await asyncio.to_thread(self._store.commit, alert, transitions=[transition], notifications=notifications)
            self._inhibitions.follow(alert)
        if notifications:
            self._courier.wake()
        log.info("alert %s %s by %s via %s", alert_id, to.value, by, channel)
        return alert

    def _moved(self, current: Alert, to: AlertState, *, by: str, note: str, now: int) -> Alert:
        """``current`` after a person's step to ``to``, with the timer that state runs (or none)."""
        policy = self._escalation
        alert = dataclasses.replace(current, state=to, updated_at_ms=now, escalate_at_ms=None)
        if to is AlertState.ACKNOWLEDGED:
            return dataclasses.replace(
                alert,
                acknowledged_by=by,
                acknowledged_at_ms=now,
                escalate_at_ms=now + policy.on_site_ms(current.grade),
            )
        if to is AlertState.EN_ROUTE:
            return dataclasses.replace(alert, escalate_at_ms=current.escalate_at_ms)
        if to is AlertState.RESOLVED:
            still_alarming = current.cleared_at_ms is None
            return dataclasses.replace(
                alert,
                resolved_by=by,
                resolved_at_ms=now,
                resolved_note=note,
                escalate_at_ms=now + policy.reopen_after_ms if still_alarming else None,
            )
        if to is AlertState.OPEN:
            return self._reopened(current, now)
        return alert

    def _reopened(self, current: Alert, now: int) -> Alert:
        return dataclasses.replace(
            current,
            state=AlertState.OPEN,
            revision=current.revision + 1,
            updated_at_ms=now,
            acknowledged_by=None,
            acknowledged_at_ms=None,
            resolved_by=None,
            resolved_at_ms=None,
            resolved_note=None,
            escalate_at_ms=now + self._escalation.deadline_ms(current.grade),
        )

    async def get(self, alert_id: str) -> Alert | None:
        """The alert with ``alert_id``, or None."""
        return await asyncio.to_thread(self._store.get, alert_id)

    async def list_alerts(
        self,
        state: AlertState | None = None,
        limit: int = 100,
        matching: Callable[[Alert], bool] | None = None,
        *,
        states: Collection[AlertState] | None = None,
        after: tuple[int, str] | None = None,
    ) -> list[Alert]:
        """Alerts newest first, optionally only those in ``state`` and those ``matching`` accepts (the caller's
        scope: the API filters what a grid manager or a property company may see), after the position ``after``
        (``(opened_at_ms, id)`` of the last one seen: a keyset page), at most ``limit`` (1..11000)."""
        if not 1 <= limit <= 11_000:
            raise ValueError(f"limit must be 1..11000, got {limit!r}")
        return await asyncio.to_thread(
            self._store.list_alerts, state=state, states=states, limit=limit, matching=matching, after=after
        )

    async def work_order(self, order_id: str) -> WorkOrder | None:
        """The work order ``order_id`` with its evidence, or None."""
        return await asyncio.to_thread(self._store.work_order, order_id)

    async def every_alert_in(self, state: AlertState) -> list[Alert]:
        """Every alert in ``state``, newest first, however many (restoring state after a restart; not for the API)."""
        return await asyncio.to_thread(self._store.list_alerts, state=state, limit=-1)

    async def response_stats(self, *, since_ms: int, until_ms: int, by: GroupBy) -> list[ResponseStats]:
        """Response times of the alerts opened in the window, grouped ``by`` person, grid or community."""
        times = await asyncio.to_thread(self._store.alert_times, since_ms=since_ms, until_ms=until_ms)
        return response_stats(times, by)

    async def audit_rows(self, *, after: int, limit: int) -> list[AuditRow]:
        """The audit log after seq ``after``, oldest first (every subject), at most ``limit`` rows."""
        return await asyncio.to_thread(self._store.audit_rows, after=after, limit=limit)

    async def verify_audit(self) -> AuditReport:
        """Check every link of the audit log's hash chain (a full scan: an on-demand check, not per request)."""
        return await asyncio.to_thread(self._store.verify_audit)

    async def transitions(self, alert_id: str) -> list[Transition]:
        """The audit trail of ``alert_id``, oldest first."""
        return await asyncio.to_thread(self._store.transitions, alert_id)

    # --- emergency mode (Art. 25) --------------------------------------------------------------------------

    async def declare_incident(
        self,
        *,
        community: str,
        kind: IncidentKind,
        title: str,
        by: str,
        grids: Sequence[str] = (),
        buildings: Sequence[str] = (),
        fields: Sequence[str] = (),
        incident_id: str | None = None,
    ) -> Incident:
        """Declare an incident for ``grids`` of ``community`` (none: all of it), or only ``buildings`` of them; the
        area's open alerts attach to it now, and every alert opened in the area while it is active as it opens.
        ``incident_id``: the caller's id for it (the district node declares one incident under one id in several
        communities); None: a new random one."""
        for grid in grids:
            if self._directory.grid(grid) is None:
                raise ValueError(f"no grid {grid!r}")
        now = self._clock()
        incident = Incident(community=community, kind=kind, title=title, grids=tuple(grids),
                            buildings=tuple(buildings), fields=tuple(fields), declared_by=by,
                            declared_ms=now)  # fmt: skip
        if incident_id is not None:
            incident = dataclasses.replace(incident, id=incident_id)
        open_alerts = [a for state in OPEN_STATES for a in await self.every_alert_in(state)]
        incident = dataclasses.replace(
            incident,
            alerts=tuple(a.id for a in open_alerts if incident.covers(a.community, a.grid, a.last_event.place)),
        )
        area = ", ".join(grids) or f"all of {community}"
        if buildings:
            area += f", buildings {', '.join(buildings)}"
        note = f"incident declared ({kind}): {title}; area {area}; {len(incident.alerts)} open alerts attached"
        await asyncio.to_thread(
            self._store.save_incident, incident, (incident.id, None, "active", by, "api", now, note)
        )
        self._incidents = [*self._incidents, incident]
        log.warning("incident %s declared by %s (%s): %s; area %s", incident.id, by, kind, title, area)
        return incident

    async def close_incident(self, incident_id: str, *, by: str, note: str = "") -> Incident:
        incident = await self._incident(incident_id)
        if not incident.active:
            raise TransitionError(incident_id, "closed", "closed")
        now = self._clock()
        closed = dataclasses.replace(incident, closed_by=by, closed_ms=now)
        audit = (incident_id, "active", "closed", by, "api", now, f"incident closed{': ' + note if note else ''}")
        await asyncio.to_thread(self._store.save_incident, closed, audit)
        self._incidents = [i for i in self._incidents if i.id != incident_id]
        log.warning("incident %s closed by %s", incident_id, by)
        return closed

    async def report_household(
        self,
        incident_id: str,
        *,
        household: str,
        status: HouseholdStatus,
        by: str,
        note: str = "",
        values: Mapping[str, str] | None = None,
    ) -> ResidentReport:
        """Record a household's status (the latest replaces the one before, unverified again), audited."""
        incident = await self._incident(incident_id)
        if not incident.active:
            raise TransitionError(incident_id, "closed", "reported")
        check_values(incident, values or {})
        now = self._clock()
        report = ResidentReport(incident_id=incident_id, household=household, status=status, note=note,
                                values=dict(values or {}), reported_by=by, reported_ms=now)  # fmt: skip
        text = f"household {household}: {status.value}" + (f" ({note})" if note else "")
        await asyncio.to_thread(self._store.save_report, report, (incident_id, None, "report", by, "api", now, text))
        return report

    async def verify_household(self, incident_id: str, *, household: str, by: str) -> ResidentReport:
        """A second person confirms a household's latest report (not the one who made it)."""
        found = [r for r in await asyncio.to_thread(self._store.reports, incident_id) if r.household == household]
        if not found:
            raise ValueError(f"no report for household {household!r} in incident {incident_id!r}")
        report = found[0]
        if report.reported_by == by:
            raise ValueError("a report is verified by someone other than who made it")
        now = self._clock()
        verified = dataclasses.replace(report, verified_by=by, verified_ms=now)
        text = f"household {household}: {report.status.value} verified"
        await asyncio.to_thread(self._store.save_report, verified, (incident_id, None, "verify", by, "api", now, text))
        return verified

    async def incident_register(self, incident_id: str) -> tuple[Incident, list[ResidentReport]]:
        """The incident (with its attached alerts) and its households' latest reports."""
        incident = await self._incident(incident_id)
        return incident, await asyncio.to_thread(self._store.reports, incident_id)

    async def incidents(self, *, active_only: bool = False) -> list[Incident]:
        return await asyncio.to_thread(self._store.incidents, active_only=active_only)

    async def incident(self, incident_id: str) -> Incident | None:
        """The incident ``incident_id``, or None."""
        return await asyncio.to_thread(self._store.incident, incident_id)

    async def _incident(self, incident_id: str) -> Incident:
        incident = await asyncio.to_thread(self._store.incident, incident_id)
        if incident is None:
            raise IncidentNotFoundError(incident_id)
        return incident

    async def _attach_to_incidents(self, opened: Sequence[Alert]) -> None:
        """Attach newly opened alerts to the active incidents covering their area."""
        for incident in self._incidents:
            new = [a.id for a in opened if incident.covers(a.community, a.grid, a.last_event.place)]
            if new:
                current = await asyncio.to_thread(self._store.incident, incident.id)
                if current is not None and current.active:
                    await asyncio.to_thread(
                        self._store.save_incident, dataclasses.replace(current, alerts=(*current.alerts, *new))
                    )

    # --- disclosure (Art. 43) ------------------------------------------------------------------------------

    async def publish(
        self, *, subject_kind: SubjectKind, subject_id: str, title: str, text: str, by: str
    ) -> Disclosure:
        """Publish an item to the residents' feed (audited). ValueError for personal data in the text or an unknown
        subject."""
        if subject_kind == "alert" and await self.get(subject_id) is None:
            raise AlertNotFoundError(subject_id)
        if subject_kind == "hazard" and await asyncio.to_thread(self._store.hazard, subject_id) is None:
            raise HazardNotFoundError(subject_id)
        item = Disclosure(
            subject_kind=subject_kind,
            subject_id=subject_id,
            title=title,
            text=text,
            published_by=by,
            published_ms=self._clock(),
        )
        await asyncio.to_thread(self._store.publish, item)
        log.info("disclosure %s published by %s about %s %s: %s", item.id, by, subject_kind, subject_id, title)
        return item

    async def withdraw(self, item_id: str, *, by: str) -> Disclosure | None:
        """Take an item off the feed (audited); None when no published item has that id."""
        item = await asyncio.to_thread(self._store.withdraw, item_id, by=by, now_ms=self._clock())
        if item is not None:
            log.info("disclosure %s withdrawn by %s", item_id, by)
        return item

    async def subject_of(self, item: Disclosure) -> Alert | Hazard | None:
        """The alert or hazard a published item is about (None for a notice, or one no longer on record)."""
        if item.subject_kind == "alert":
            return await self.get(item.subject_id)
        if item.subject_kind == "hazard":
            return await asyncio.to_thread(self._store.hazard, item.subject_id)
        return None

    async def public_feed(self) -> tuple[list[tuple[Disclosure, Alert | Hazard | None]], dict[str, int]]:
        """The published items with their subjects, and the open hazards counted by grade (no names)."""
        items = await asyncio.to_thread(self._store.disclosures, published_only=True)
        out = [(item, await self.subject_of(item)) for item in items]
        counts = {grade.name: 0 for grade in Grade}
        for hazard in await self.hazards(open_only=True):
            counts[hazard.grade.name] += 1
        return out, counts

    # --- hazard register (隐患台账) --------------------------------------------------------------------------

    async def register_hazard(
        self,
        *,
        grid: str,
        place: str,
        title: str,
        grade: Grade,
        owner: str,
        by: str,
        channel: str,
        community: str,
        alerts: Sequence[str] = (),
    ) -> Hazard:
        """Put a recurring hazard in the register; its first review is due one grade interval from now."""
        if self._directory.grid(grid) is None:
            raise ValueError(f"no grid {grid!r}")
        if self._directory.person(owner) is None:
            raise ValueError(f"no person {owner!r} to own the hazard")
        for alert_id in alerts:
            if await self.get(alert_id) is None:
                raise AlertNotFoundError(alert_id)
        now = self._clock()
        hazard = Hazard(
            community=community,
            grid=grid,
            place=place,
            title=title,
            grade=grade,
            owner=owner,
            created_by=by,
            created_ms=now,
            next_review_ms=now + REVIEW_EVERY_MS[grade],
            alerts=tuple(alerts),
        )
        note = (
            f"hazard registered: {title} at {place}, grade {grade.name}, owner {owner}, "
            f"first review {iso8601(hazard.next_review_ms)}"
        )
        await asyncio.to_thread(self._store.save_hazard, hazard, (hazard.id, None, "open", by, channel, now, note))
        return hazard

    async def review_hazard(
        self, hazard_id: str, *, by: str, channel: str, finding: str, close: bool = False
    ) -> Hazard:
        """Record a review (who, what was found); the next is due one grade interval later, or the entry closes.
        Clears the hazard's overdue-review alert if one is open."""
        if not finding:
            raise ValueError("a review needs what was found")
        current = await asyncio.to_thread(self._store.hazard, hazard_id)
        if current is None:
            raise HazardNotFoundError(hazard_id)
        if current.state is HazardState.CLOSED:
            raise TransitionError(hazard_id, "closed", "reviewed")
        now = self._clock()
        hazard = dataclasses.replace(
            current,
            last_review_ms=now,
            last_finding=finding,
            next_review_ms=now + REVIEW_EVERY_MS[current.grade],
            state=HazardState.CLOSED if close else HazardState.OPEN,
        )
        to = "closed" if close else "open"
        note = f"hazard reviewed: {finding}" + (
            "; closed" if close else f"; next review {iso8601(hazard.next_review_ms)}"
        )
        await asyncio.to_thread(
            self._store.save_hazard, hazard, (hazard_id, current.state.value, to, by, channel, now, note)
        )
        if current.overdue_ms is not None:
            await self.submit(self._review_event(hazard, now, "cleared"))
        return hazard

    async def hazards(self, *, open_only: bool = False) -> list[Hazard]:
        """The register, soonest review first."""
        return await asyncio.to_thread(self._store.hazards, state=HazardState.OPEN if open_only else None)

    async def _raise_overdue_reviews(self, now: int) -> None:
        """An alert for each open hazard whose review date passed (once per date)."""
        for hazard in await asyncio.to_thread(self._store.overdue_hazards, now_ms=now):
            marked = dataclasses.replace(hazard, overdue_ms=hazard.next_review_ms)
            note = f"review overdue since {iso8601(hazard.next_review_ms)}: alert {hazard.review_key}"
            await asyncio.to_thread(
                self._store.save_hazard, marked, (hazard.id, "open", "open", SYSTEM, "timer", now, note)
            )
            await self.submit(self._review_event(hazard, now, "firing"))

    def _review_event(self, hazard: Hazard, now: int, status: EventStatus) -> RiskEvent:
        grade = Grade.III if hazard.grade in (Grade.I, Grade.II) else Grade.IV
        return RiskEvent(
            key=hazard.review_key,
            community=hazard.community,
            grid=hazard.grid,
            sensor=hazard.id,
            kind="hazard",
            location_zh=hazard.place,
            rule="review overdue",
            rule_zh="隐患复查逾期",
            grade=grade,
            value=max(0, now - hazard.next_review_ms) / 86_400_000,
            unit="d",
            time_ms=now,
            status=status,
            source=f"Anju hazard register: {hazard.title} (grade {hazard.grade.name}), owner {hazard.owner}",
        )

    # --- work orders (协同整治) -----------------------------------------------------------------------------

    async def dispatch(
        self, alert_id: str, *, department: str, task: str, due_ms: int, by: str, channel: str
    ) -> WorkOrder:
        """Dispatch a work order for ``alert_id`` to ``department`` (its people are paged with it, audited)."""
        target = self._departments.get(department)
        if target is None:
            raise ValueError(f"no department {department!r} (known: {', '.join(sorted(self._departments))})")
        async with self._mutex:
            current = await asyncio.to_thread(self._store.get, alert_id)
            if current is None:
                raise AlertNotFoundError(alert_id)
            if current.state is AlertState.CLOSED:
                raise TransitionError(alert_id, current.state, "dispatched", "the alert is closed")
            now = self._clock()
            order = WorkOrder(
                alert_id=alert_id,
                department=department,
                task=task,
                due_ms=due_ms,
                created_by=by,
                created_ms=now,
                updated_ms=now,
            )
            alert = dataclasses.replace(current, revision=current.revision + 1, updated_at_ms=now)
            note = f"work order {order.id} to {target.name}: {task} (due {iso8601(due_ms)})"
            transition = self._audit_row(alert, by, channel, now, note)
            extra = {"work_order": _order_json(order, target)}
            notifications = self._outbox(alert, Reason.DISPATCHED, now, only=target.people, extra=extra)
            await asyncio.to_thread(
                self._store.save_work_order,
                order,
                alert=alert,
                transitions=[transition],
                notifications=notifications,
            )
        self._courier.wake()
        log.info("work order %s for alert %s dispatched to %s by %s, due %s", order.id, alert_id, department, by,
                 iso8601(order.due_ms))  # fmt: skip
        return order

    async def work_order_step(
        self,
        order_id: str,
        to: WorkOrderState,
        *,
        by: str,
        channel: str,
        note: str = "",
        evidence: Sequence[Evidence] = (),
    ) -> WorkOrder:
        """Move a work order (accept, done, verify, reject back to dispatched, cancel), adding evidence links.
        Done needs "after" evidence; verifying the last open order of a verified alert closes the alert."""
        async with self._mutex:
            current = await asyncio.to_thread(self._store.work_order, order_id)
            if current is None:
                raise WorkOrderNotFoundError(order_id)
            if to not in WORK_ORDER_STEPS[current.state]:
                raise TransitionError(order_id, current.state, to)
            if to is WorkOrderState.DONE and not any(e.phase == "after" for e in (*current.evidence, *evidence)):
                raise TransitionError(order_id, current.state, to, "done needs evidence of the work (an 'after' link)")
            now = self._clock()
            order = dataclasses.replace(current, state=to, updated_ms=now, evidence=(*current.evidence, *evidence))
            alert = await asyncio.to_thread(self._store.get, current.alert_id)
            assert alert is not None  # work orders reference alerts
            step = (
                "rejected, back to the department"
                if (current.state, to) == (WorkOrderState.DONE, WorkOrderState.DISPATCHED)
                else to.value
            )
            text = f"work order {order_id} {step}" + (f": {note}" if note else "")
            rows = [self._audit_row(alert, by, channel, now, text)]
            closing = None
            if to is WorkOrderState.VERIFIED and alert.state is AlertState.VERIFIED:
                others = await asyncio.to_thread(self._store.work_orders, alert.id)
                if all(o.state.finished for o in others if o.id != order_id):
                    closing = dataclasses.replace(alert, state=AlertState.CLOSED, updated_at_ms=now)
                    rows.append(
                        Transition(
                            alert_id=alert.id,
                            from_state=alert.state,
                            to_state=AlertState.CLOSED,
                            by=SYSTEM,
                            channel="work-order",
                            time_ms=now,
                            note="closed: every work order verified",
                        )
                    )
            await asyncio.to_thread(
                self._store.save_work_order,
                order,
                alert=closing or alert,
                transitions=rows,
                new_evidence=evidence,
            )
            if closing is not None:
                self._inhibitions.follow(closing)
        log.info("work order %s: %s by %s%s", order_id, order.state.value, by,
                 f"; alert {closing.id} closed (every work order verified)" if closing is not None else "")  # fmt: skip
        return order

    async def list_work_orders(
        self,
        *,
        departments: Collection[str] | None = None,
        open_only: bool = False,
        limit: int = 200,
        after: tuple[int, str] | None = None,
    ) -> list[tuple[WorkOrder, Alert]]:
        """Work orders with their alerts, newest first, after the position ``after`` (``(created_ms, id)``)
        (``AlertStore.list_work_orders``)."""
        return await asyncio.to_thread(
            self._store.list_work_orders, departments=departments, open_only=open_only, limit=limit, after=after
        )

    async def work_orders(self, alert_id: str) -> list[WorkOrder]:
        """The alert's work orders with their evidence, oldest first."""
        return await asyncio.to_thread(self._store.work_orders, alert_id)

    async def _remind_overdue_orders(self, now: int) -> int:
        """Page the department and everyone reached again for each order past its deadline (once per deadline)."""
        reminded = 0
        for order in await asyncio.to_thread(self._store.overdue_work_orders, now_ms=now, limit=100):
            current = await asyncio.to_thread(self._store.get, order.alert_id)
            if current is None:
                continue
            department = self._departments.get(order.department)
            alert = dataclasses.replace(current, revision=current.revision + 1, updated_at_ms=now)
            late = dataclasses.replace(order, reminded_due_ms=order.due_ms, updated_ms=now)
            note = f"work order {order.id} overdue: not done by {iso8601(order.due_ms)} ({order.state.value})"
            extra = {"work_order": _order_json(late, department)}
            notifications = self._outbox(
                alert, Reason.WORK_ORDER_OVERDUE, now, also=department.people if department else (), extra=extra
            )
            await asyncio.to_thread(
                self._store.save_work_order,
                late,
                alert=alert,
                transitions=[self._audit_row(alert, SYSTEM, "timer", now, note)],
                notifications=notifications,
            )
            self._counters.work_orders_overdue_total += 1
            reminded += 1
        return reminded

    @staticmethod
    def _audit_row(alert: Alert, by: str, channel: str, now: int, note: str) -> Transition:
        return Transition(
            alert_id=alert.id,
            from_state=alert.state,
            to_state=alert.state,
            by=by,
            channel=channel,
            time_ms=now,
            note=note,
        )

    # --- escalation ---------------------------------------------------------------------------------------

    async def escalate_due(self, *, limit: int = 100) -> list[Alert]:
        """Fire every alert timer that is due (``Alert.escalate_at_ms``) and return the alerts changed: an
        unacknowledged alert climbs a level (everyone reached is paged again at the top), an acknowledged one nobody
        reported on site for pages everyone reached again, a resolved one still in alarm reopens. The background
        task calls this; after a restart it catches up at once, and each timer fires once however often it is
        called (the next deadline is written in the same commit as the pages)."""
        changed: list[Alert] = []
        async with self._mutex:
            now = self._clock()
            due = await asyncio.to_thread(self._store.due_escalations, now_ms=now, limit=limit)
            for current in due:
                fired = await self._timer_fired(current, now)
                if fired is None:
                    continue
                alert, transition, reason = fired
                notifications = self._outbox(alert, reason, now) if reason is not None else []
                await asyncio.to_thread(
                    self._store.commit, alert, transitions=[transition], notifications=notifications
                )
                self._inhibitions.follow(alert)
                changed.append(alert)
                if reason is Reason.ESCALATED:
                    self._counters.escalations_total += 1
                elif reason is Reason.REMINDER:
                    self._counters.reminders_total += 1
                elif reason is Reason.OVERDUE:
                    self._counters.overdue_total += 1
                elif reason is Reason.REOPENED:
                    self._counters.reopened_total += 1
                log.warning("alert %s %s: %s", alert.id, reason.value if reason else "timer", transition.note)
            if await self._remind_overdue_orders(now):
                self._courier.wake()
        if changed:
            self._courier.wake()
        await self._raise_overdue_reviews(now)  # outside the mutex: it submits events
        return changed

    async def _timer_fired(self, current: Alert, now: int) -> tuple[Alert, Transition, Reason | None] | None:
        """What the alert's timer does in its state (None: nothing, the timer is dropped)."""
        state = current.state
        if state is AlertState.OPEN:
            alert, note, reason = self._escalated(current, now)
        elif state in (AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE):
            on_site_ms = self._escalation.on_site_ms(current.grade)
            alert = dataclasses.replace(
                current, revision=current.revision + 1, updated_at_ms=now, escalate_at_ms=now + on_site_ms
            )
            reason = Reason.OVERDUE
            note = (
                f"acknowledged by {current.acknowledged_by} but nobody on site within {on_site_ms / 1000:g} s at "
                f"grade {current.grade.name}: everyone up to level {current.level} paged again"
            )
        elif state is AlertState.RESOLVED and current.cleared_at_ms is None:
            if await asyncio.to_thread(self._store.open_alert, current.key) is not None:
                await asyncio.to_thread(
                    self._store.commit, dataclasses.replace(current, escalate_at_ms=None, updated_at_ms=now)
                )
                return None  # the condition has a newer alert of its own
            alert, reason = self._reopened(current, now), Reason.REOPENED
            waited = self._escalation.reopen_after_ms / 1000
            note = f"reopened: still in alarm {waited:g} s after it was resolved 处置后仍在报警"
        else:
            await asyncio.to_thread(
                self._store.commit, dataclasses.replace(current, escalate_at_ms=None, updated_at_ms=now)
            )
            return None
        transition = Transition(
            alert_id=alert.id,
            from_state=current.state,
            to_state=alert.state,
            by=SYSTEM,
            channel="timer",
            time_ms=now,
            note=note,
        )
        return alert, transition, reason

    def _escalated(self, current: Alert, now: int) -> tuple[Alert, str, Reason]:
        deadline_ms = self._escalation.deadline_ms(current.grade)
        waited = f"not acknowledged within {deadline_ms / 1000:g} s at grade {current.grade.name}"
        if current.level < self._escalation.top:
            level = current.level + 1
            reason = Reason.ESCALATED
            note = f"escalated to level {level} ({self._level_name(current, level)}): {waited}"
        else:
            level = current.level
            reason = Reason.REMINDER
            note = f"everyone up to level {level} ({self._level_name(current, level)}) paged again: {waited}"
        alert = dataclasses.replace(
            current,
            level=level,
            revision=current.revision + 1,
            updated_at_ms=now,
            escalate_at_ms=now + deadline_ms,
        )
        return alert, note, reason

    async def _escalate_forever(self) -> None:
        while True:
            await self.escalate_due()
            await self._write_muted_counts()
            if self._windows is not None:
                self._windows.forget_before(self._clock())
            wait_s = 1.0  # poll at least this often: alerts opened meanwhile, another clock
            next_ms = await asyncio.to_thread(self._store.next_escalation_ms)
            if next_ms is not None:
                wait_s = min(wait_s, max(0.0, (next_ms - self._clock()) / 1000))
            await asyncio.sleep(wait_s)
