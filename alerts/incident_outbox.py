"""Delivery of incident messages (notices, volunteer call-outs, measures) from their durable outbox (issue 6).

The steps of :class:`alerts.emergency.EmergencyDesk` write their messages (``incident_messages``, one row per
recipient and target, keyed by idempotency key) in the same transaction as the step; this task sends the due ones
through the alerts' receivers — at once, then after each retryable failure with capped, jittered exponential backoff
(``alerts.delivery.RetryPolicy``, the alert service's) until ``max_attempts`` — and records each delivery or final
failure in the audit log under the incident's id. A message is marked sent only after the receiver took it: a crash
in between sends it again with the same key, which receivers deduplicate. Messages in flight when the hub stops stay
pending and go out after the restart.

Why not the alert service's outbox: ``notifications`` rows belong to an alert (a foreign key) and go to a person of
the directory, whose target the delivery finds there; incident messages belong to an incident and go to broadcast
receivers and volunteers too. ``resolve`` finds a message's target among them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any

from alerts.delivery import RetryPolicy, send, wait_until_due
from alerts.directory import Target
from alerts.mobilisation import IncidentMessage
from alerts.receivers.base import Receiver
from alerts.service import SYSTEM
from alerts.store import AlertStore

__all__ = ["IncidentOutbox", "OutboxCounters"]

log = logging.getLogger("anju.alerts.emergency")


@dataclasses.dataclass(slots=True)
class OutboxCounters:
    """Monotonic counters; failure kinds as the alert service counts them: ``retryable`` (each failed attempt that
    will be retried), ``permanent`` (receiver refused), ``exhausted`` (gave up after ``max_attempts``),
    ``no_target`` (the recipient left the deployment before delivery). Each is counted once its outcome is on record,
    so a reader who sees the count finds the message's state in the store."""

    sent_total: int = 0
    failures_total: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(("retryable", "permanent", "exhausted", "no_target"), 0)
    )

    def snapshot(self) -> OutboxCounters:
        return dataclasses.replace(self, failures_total=dict(self.failures_total))


class IncidentOutbox:
    """The delivery task of the incident outbox; use as ``async with`` and call :meth:`wake` after a step wrote
    messages."""

    def __init__(
        self,
        *,
        store: AlertStore,
        receiver: Receiver,
        resolve: Callable[[IncidentMessage], Target | None],
        clock: Callable[[], int],
        max_attempts: int = 10,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        max_in_flight: int = 16,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self._store = store
        self._receiver = receiver
        self._resolve = resolve
        self._clock = clock
        self._retry = RetryPolicy(max_attempts=max_attempts, base_s=retry_base_s, max_s=retry_max_s)
        self._max_in_flight = max_in_flight
        self._counters = OutboxCounters()
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None

    async def __aenter__(self) -> IncidentOutbox:
        if self._group is not None:
            raise RuntimeError("IncidentOutbox is already running")
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._spawn(self._deliver_forever(), name="anju-emergency-delivery")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        for task in list(self._tasks):
            task.cancel()  # messages in flight stay pending and go out after a restart
        await group.__aexit__(None, None, None)

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        assert self._group is not None
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def counters(self) -> OutboxCounters:
        return self._counters.snapshot()

    def wake(self) -> None:
        """Look for due messages now (a step just wrote some)."""
        self._wake.set()

    async def _deliver_forever(self) -> None:
        while True:
            self._wake.clear()
            free = self._max_in_flight - len(self._in_flight)
            if free > 0:
                busy = frozenset(self._in_flight)
                now = self._clock()
                for message in await asyncio.to_thread(
                    self._store.due_incident_messages, now_ms=now, limit=free, exclude=busy
                ):
                    self._in_flight.add(message.key)
                    self._spawn(self._deliver(message), name=f"anju-emergency-deliver-{message.key}")
            next_ms = await asyncio.to_thread(self._store.next_incident_message_ms, exclude=frozenset(self._in_flight))
            await wait_until_due(self._wake, next_ms, self._clock)

    async def _deliver(self, message: IncidentMessage) -> None:
        key = message.key
        try:
            target = self._resolve(message)
            if target is None:
                log.error("incident message %s: recipient or target no longer in the deployment", key)
                await self._finish(message, "outbox", sent=False, error="recipient not in the deployment")
                self._counters.failures_total["no_target"] += 1
                return
            channel = type(target).__name__.removesuffix("Target").lower()
            failure = await send(self._receiver, target=target, key=key, body=message.body.encode())
            if failure is not None and failure.permanent:
                log.error("incident message %s refused, giving up: %s", key, failure.error)
                await self._finish(message, channel, sent=False, error=failure.error)
                self._counters.failures_total["permanent"] += 1
                return
            if failure is not None:
                await self._retry_later(message, channel, failure.error)
                return
            await self._finish(message, channel, sent=True, error=None)
            self._counters.sent_total += 1
            log.info("incident message sent: %s", key)
        finally:
            self._in_flight.discard(key)
            self._wake.set()

    async def _finish(self, message: IncidentMessage, channel: str, *, sent: bool, error: str | None) -> None:
        now = self._clock()
        outcome = "delivered" if sent else f"not delivered, gave up: {error}"
        who = f"{message.recipient_kind} {message.recipient_id} (target {message.target_index})"
        audit = (message.incident_id, None, "delivered" if sent else "failed", SYSTEM, channel, now,
                 f"{message.reason} to {who}: {outcome}")  # fmt: skip
        await asyncio.to_thread(
            self._store.finish_incident_message, message.key, sent=sent, now_ms=now, error=error, audit=audit
        )

    async def _retry_later(self, message: IncidentMessage, channel: str, error: str) -> None:
        attempts = message.attempts + 1
        if attempts >= self._retry.max_attempts:
            log.error("incident message %s: giving up after %d attempts: %s", message.key, attempts, error)
            await self._finish(message, channel, sent=False, error=error)
            self._counters.failures_total["exhausted"] += 1
            return
        delay_s = self._retry.delay_s(attempts)
        if error != message.last_error:  # log when the error changes, not every retry
            log.warning(
                "incident message %s failed (attempt %d), retrying in %.1f s: %s", message.key, attempts, delay_s, error
            )
        next_ms = self._clock() + round(delay_s * 1000)
        await asyncio.to_thread(self._store.retry_incident_message, message.key, next_attempt_ms=next_ms, error=error)
        self._counters.failures_total["retryable"] += 1
