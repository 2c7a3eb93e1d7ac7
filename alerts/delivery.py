"""Delivery from the durable outboxes: the retry policy and send outcome shared by the alert service's and the
incident outbox's delivery tasks, and the :class:`Courier` that sends the alert service's notifications.

A notification is committed with its alert before anything is sent (alert persisted first). The courier sends the
committed ones due now at once (``send_now``: no outbox query on the latency-critical path), the rest from the outbox
query of its loop, each page at most once at a time per alert and target, at most ``max_in_flight`` pages at once.
A page is recorded sent only after the receiver took it: a crash in between sends it again with the same idempotency
key, which receivers drop. Retryable failures come back after capped, jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from alerts.directory import Directory, Target
from alerts.message import digest_body
from alerts.receivers.base import PermanentDeliveryError, Receiver, RetryableDeliveryError
from alerts.store import AlertStore, Notification

if TYPE_CHECKING:
    from alerts.service import Counters

__all__ = ["MAX_DIGEST", "Courier", "Failure", "RetryPolicy", "send", "wait_until_due"]

log = logging.getLogger("anju.alerts")

MAX_DIGEST = 1000
"""The most notifications one digest carries (the rest follow in the next): bounds a page's work and size."""


class RetryPolicy:
    """How often and when a failed delivery is tried again: at most ``max_attempts`` attempts in all, the n-th retry
    after ``base_s`` × 2ⁿ⁻¹ seconds, capped at ``max_s``, ±20 % jitter — so the deliveries that failed together when a
    receiver restarted do not all return in the same instant."""

    def __init__(self, *, max_attempts: int = 10, base_s: float = 1.0, max_s: float = 60.0) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        if not 0 < base_s <= max_s:
            raise ValueError(f"need 0 < retry_base_s <= retry_max_s, got {base_s!r}, {max_s!r}")
        self.max_attempts = max_attempts
        self._base_s = base_s
        self._max_s = max_s
        self._random = random.Random()

    def delay_s(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failures."""
        delay = min(self._max_s, self._base_s * 2.0 ** max(0, attempts - 1))
        return min(self._max_s, delay * self._random.uniform(0.8, 1.2))


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """Why a send failed, and whether trying again can help."""

    error: str
    permanent: bool


async def send(receiver: Receiver, *, target: Target, key: str, body: bytes) -> Failure | None:
    """Hand ``body`` to ``receiver`` for ``target``; None when it took it. A receiver's unexpected exception is a
    retryable failure (logged with its traceback): one receiver's bug must not stop every other delivery."""
    try:
        await receiver.deliver(target=target, idempotency_key=key, body=body)
    except PermanentDeliveryError as exc:
        return Failure(str(exc), permanent=True)
    except RetryableDeliveryError as exc:
        return Failure(str(exc), permanent=False)
    except Exception as exc:
        log.exception("delivery %s: receiver raised unexpectedly", key)
        return Failure(f"{type(exc).__name__}: {exc}", permanent=False)
    return None


async def wait_until_due(wake: asyncio.Event, next_ms: int | None, clock: Callable[[], int]) -> None:
    """Sleep until ``next_ms`` (Unix ms; None: nothing due), ``wake`` is set, or 1 s has passed — a delivery loop polls
    at least that often: another clock, another writer of the outbox."""
    wait_s = 1.0
    if next_ms is not None:
        wait_s = min(wait_s, max(0.0, (next_ms - clock()) / 1000))
    if wait_s > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await wake.wait()


class Courier:
    """Sends the alert service's committed notifications (``notifications`` outbox). ``spawn`` starts a task under
    the service's TaskGroup; ``counters`` are the service's."""

    def __init__(
        self,
        *,
        store: AlertStore,
        directory: Directory,
        receiver: Receiver,
        clock: Callable[[], int],
        counters: Counters,
        retry: RetryPolicy,
        max_in_flight: int,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        self._store = store
        self._directory = directory
        self._receiver = receiver
        self._clock = clock
        self._counters = counters
        self.retry = retry
        self._max_in_flight = max_in_flight
        self._spawn = spawn
        self._sent: list[tuple[str, int]] = []
        """Delivered notification keys (and when) waiting for the next batched ``mark_sent``."""
        self._sent_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._waiting = False
        """Due notifications were left for the loop (no free slot, a busy lane): a finished delivery wakes it.
        Otherwise a delivery that went well does not: the loop's outbox queries cost as much as a page."""
        self._in_flight: set[str] = set()
        """Keys of the notifications being delivered (a digest's members all count)."""
        self._pages_in_flight = 0
        """Deliveries under way (each a notification or a digest): at most ``max_in_flight``."""
        self._lanes: set[tuple[str, str, int]] = set()
        """(alert, person, target) with a delivery in flight."""
        self._taken_while_reading: set[str] = set()
        """Keys taken since the loop's outbox read began: that read may show them pending still, although they were
        sent (and left ``_in_flight``) meanwhile, and they must not go out twice."""

    def wake(self) -> None:
        """Look at the outbox now (notifications were committed that ``send_now`` did not start)."""
        self._wake.set()

    def send_now(self, notifications: Sequence[Notification], now: int) -> None:
        """Start the just-committed notifications that are due now, each as its own page, without the round trip
        through the outbox query (the loop takes any left over, and every retry)."""
        for notification in notifications:
            if notification.next_attempt_ms <= now and not self._take([notification]):
                self._waiting = True
                self._wake.set()

    async def run(self) -> None:
        """The delivery loop: forever, take the due notifications the free slots allow."""
        while True:
            self._wake.clear()
            self._waiting = False
            now = self._clock()
            free = self._max_in_flight - self._pages_in_flight
            if free > 0:
                self._taken_while_reading.clear()
                due = await asyncio.to_thread(
                    self._store.due, now_ms=now, limit=free, exclude=frozenset(self._in_flight)
                )
                self._waiting = len(due) >= free
                for notification in due:
                    if self._taken(notification.key):
                        continue
                    if not self._take(await self._page_of(notification, now)):
                        self._waiting = True
            else:
                self._waiting = True
            next_ms = await asyncio.to_thread(self._store.next_due_ms, exclude=frozenset(self._in_flight))
            await wait_until_due(self._wake, next_ms, self._clock)

    def _take(self, page: list[Notification]) -> bool:
        """Start delivering ``page`` unless one of its alerts is already on its way to the same target, a member is
        in flight, or every slot is busy; whether it started."""
        # One delivery at a time per alert and target, so a person's phone gets an alert's changes in the order they
        # happened ("cleared" never before the "upgraded" that came first); the next one follows when this one is
        # done (_deliver wakes the loop).
        lanes = {(n.alert_id, n.person_id, n.target_index) for n in page}
        if self._pages_in_flight >= self._max_in_flight or lanes & self._lanes or any(self._taken(n.key) for n in page):
            return False
        self._lanes |= lanes
        self._in_flight.update(n.key for n in page)
        self._taken_while_reading.update(n.key for n in page)
        self._pages_in_flight += 1
        self._spawn(self._deliver(page), f"anju-alerts-deliver-{page[0].key}")
        return True

    def _taken(self, key: str) -> bool:
        """Whether ``key`` is being delivered, or was taken since the outbox read that shows it began."""
        return key in self._in_flight or key in self._taken_while_reading

    async def _page_of(self, notification: Notification, now: int) -> list[Notification]:
        """What goes out with ``notification`` as one page: itself, or every due notification of its group to the
        same target (a digest) that is not already in flight."""
        if not notification.group_key:
            return [notification]
        members = await asyncio.to_thread(
            self._store.due_in_group,
            notification.person_id,
            notification.target_index,
            notification.group_key,
            now_ms=now,
            limit=MAX_DIGEST,
        )
        page = [n for n in members if not self._taken(n.key)]
        return page if any(n.key == notification.key for n in page) else [notification, *page][:MAX_DIGEST]

    def _target(self, notification: Notification) -> Target | None:
        person = self._directory.person(notification.person_id)
        if person is None or notification.target_index >= len(person.targets):
            return None
        return person.targets[notification.target_index]

    async def _deliver(self, page: list[Notification]) -> None:
        """Send one page — a notification, or several of one group as a digest — and record the outcome of each."""
        first = page[0]
        keys = [n.key for n in page]
        released = False
        try:
            target = self._target(first)
            if target is None:
                log.error("notification %s: recipient or target no longer in the directory", first.key)
                await asyncio.to_thread(
                    self._store.mark_failed, keys, error="recipient not in directory", now_ms=self._clock()
                )
                self._counters.notification_failures_total["no_target"] += len(page)  # counted once on record
                return
            key, body = first.key, first.body.encode()
            if len(page) > 1:
                key = "digest:" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:32]
                members = [json.loads(n.body) for n in page]
                body = json.dumps(digest_body(members, idempotency_key=key), ensure_ascii=False).encode()
            failure = await send(self._receiver, target=target, key=key, body=body)
            if failure is not None and failure.permanent:
                log.error("notification %s refused, giving up: %s", key, failure.error)
                await asyncio.to_thread(self._store.mark_failed, keys, error=failure.error, now_ms=self._clock())
                self._counters.notification_failures_total["permanent"] += len(page)  # counted once on record
                return
            if failure is not None:
                await self._retry_later(page, key, failure.error)
                return
            now = self._clock()
            # The receiver has it: the slot goes to the next delivery now; the keys and lanes stay taken until the
            # delivery is on record, so nothing is sent twice and an alert's next change waits its turn.
            self._pages_in_flight -= 1
            released = True
            if self._waiting:
                self._wake.set()
            await self._mark_sent(keys, now)
            self._counters.notifications_sent_total += len(page)
            self._counters.pages_sent_total += 1
            if len(page) > 1:
                self._counters.digests_sent_total += 1
                log.info("digest sent: %s (%d notifications, group %s)", key, len(page), first.group_key)
            else:
                log.info("notification sent: %s (%d ms after commit)", key, now - first.created_ms)
        finally:
            self._in_flight.difference_update(keys)
            self._lanes.difference_update((n.alert_id, n.person_id, n.target_index) for n in page)
            if not released:
                self._pages_in_flight -= 1
            if self._waiting or not released:  # a failure moved a notification's next attempt: the loop re-reads
                self._wake.set()

    async def _mark_sent(self, keys: Sequence[str], now: int) -> None:
        """Record a delivery; deliveries that finish meanwhile are recorded in the same transaction (a crash
        before it resends them: receivers deduplicate by the idempotency key)."""
        self._sent.extend((key, now) for key in keys)
        async with self._sent_lock:
            if self._sent:
                batch, self._sent = self._sent, []
                await asyncio.to_thread(self._store.mark_sent_many, batch)

    async def _retry_later(self, page: Sequence[Notification], key: str, error: str) -> None:
        """Schedule the page's next attempt (its members together, so they go out as one page again), or give
        up on it after ``max_attempts``."""
        keys = [n.key for n in page]
        attempts = max(n.attempts for n in page) + 1
        if attempts >= self.retry.max_attempts:
            log.error("notification %s: giving up after %d attempts: %s", key, attempts, error)
            await asyncio.to_thread(self._store.mark_failed, keys, error=error, now_ms=self._clock())
            self._counters.notification_failures_total["exhausted"] += len(page)  # counted once it is on record
            return
        delay_s = self.retry.delay_s(attempts)
        if error != page[0].last_error:  # log when the error changes, not every retry
            log.warning("notification %s failed (attempt %d), retrying in %.1f s: %s", key, attempts, delay_s, error)
        next_ms = self._clock() + round(delay_s * 1000)
        await asyncio.to_thread(self._store.mark_retry, keys, next_attempt_ms=next_ms, error=error)
        self._counters.notification_failures_total["retryable"] += len(page)  # counted once it is on record
