"""Stateful property test of the alert lifecycle (issue 6): whatever events, people's steps and passing time come in
any order, no alert is left un-owned and every deadline is either met or acted on.

Hypothesis drives one real AlertService (real SQLite, real signed webhooks to the real sink on loopback, the clock
moved by hand) through random sequences of firing and cleared events, every person's step on any alert, and time
passing with the timers fired. After every step:

- one open alert per key at most;
- an open alert has been paged to someone and has a running timer (answer deadline), never one already past;
- an acknowledged or en-route alert has its on-site deadline running; on site, verified and closed have none;
- a resolved alert waits to reopen exactly when its condition has not cleared;
- the audit log's hash chain is intact.
"""

from __future__ import annotations

import asyncio
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from alerts import AlertService, AlertState, AlertStore, Grade, WebhookReceiver
from alerts.escalation import EscalationPolicy
from alerts.service import TransitionError
from alerts.sink import Sink, start_sink
from tests.alerts.support import CHAIN, MINUTE_MS, SECRET, Clock, chain_directory, event

KEYS = ("k/gas-301", "k/smoke-f2", "k/water-b1")
STEPS = ("acknowledge", "en_route", "on_site", "resolve", "verify", "close", "reopen")


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.tmp = tempfile.TemporaryDirectory(prefix="anju-lifecycle-")
        self.store = AlertStore(Path(self.tmp.name) / "alerts.db")
        self.stack = AsyncExitStack()
        self.service = self.loop.run_until_complete(self._start())

    async def _start(self) -> AlertService:
        sink = await self.stack.enter_async_context(start_sink(Sink(secret=SECRET)))
        receiver = await self.stack.enter_async_context(WebhookReceiver())
        service = AlertService(
            store=self.store,
            directory=chain_directory(sink.url),
            receiver=receiver,
            clock=self.clock,
            escalation=EscalationPolicy(CHAIN),
            retry_base_s=0.05,
            retry_max_s=0.1,
        )
        return await self.stack.enter_async_context(service)

    def teardown(self) -> None:
        self.loop.run_until_complete(self.stack.aclose())
        leftover = asyncio.all_tasks(self.loop)  # the sink's handlers of connections the client just closed
        for task in leftover:
            task.cancel()
        self.loop.run_until_complete(_settled(leftover))
        self.loop.close()
        self.store.close()
        self.tmp.cleanup()

    # -- what can happen ------------------------------------------------------------------------------------

    @rule(key=st.sampled_from(KEYS), grade=st.sampled_from([Grade.IV, Grade.III, Grade.II]))
    def fire(self, key: str, grade: Grade) -> None:
        self.loop.run_until_complete(self.service.submit(event(key=key, grade=grade, time_ms=self.clock.now_ms)))

    @rule(key=st.sampled_from(KEYS))
    def clear(self, key: str) -> None:
        cleared = event(key=key, status="cleared", value=1.0, time_ms=self.clock.now_ms)
        self.loop.run_until_complete(self.service.submit(cleared))

    @rule(key=st.sampled_from(KEYS), step=st.sampled_from(STEPS))
    def person(self, key: str, step: str) -> None:
        alerts = [a for a in self.store.list_alerts(limit=-1) if a.key == key]
        if not alerts:
            return
        alert = alerts[0]  # the newest of the key
        action = getattr(self.service, step)
        kwargs = {"by": "zhang-wei", "channel": "app"}
        if step in ("resolve", "reopen"):
            kwargs["note"] = "处理记录"
        try:
            self.loop.run_until_complete(action(alert.id, **kwargs))
        except TransitionError:
            after = self.store.get(alert.id)
            assert after is not None and after.state is alert.state, "a refused step changed nothing"

    @rule(minutes=st.integers(min_value=0, max_value=30))
    def time_passes(self, minutes: int) -> None:
        self.clock.now_ms += minutes * MINUTE_MS
        while self.loop.run_until_complete(self.service.escalate_due()):
            pass  # bounded: each call moves every fired timer past now
        late = [a.id for a in self.store.list_alerts(limit=-1) if (a.escalate_at_ms or 1 << 62) <= self.clock.now_ms]
        assert late == [], "every deadline that passed was acted on"

    # -- what must always hold ------------------------------------------------------------------------------

    @invariant()
    def one_open_alert_per_key(self) -> None:
        open_keys = [a.key for a in self.store.list_alerts(limit=-1) if a.state.is_open]
        assert len(open_keys) == len(set(open_keys))

    @invariant()
    def nobody_left_without_an_owner_or_a_deadline(self) -> None:
        alerts = self.store.list_alerts(limit=-1)
        for alert in alerts:
            timer = alert.escalate_at_ms
            if alert.state is AlertState.OPEN:
                assert timer is not None, alert
                assert self.store.notifications(alert.id), f"{alert.id} was never paged"
            elif alert.state in (AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE):
                assert timer is not None and alert.acknowledged_by, alert
            elif alert.state is AlertState.RESOLVED:
                # still in alarm: it waits to reopen, unless the condition fired into a newer alert that owns it now
                # (its timer, when it fires, is then dropped)
                newer = any(a.key == alert.key and a.opened_at_ms >= alert.opened_at_ms and a.id != alert.id
                            for a in alerts)  # fmt: skip
                assert newer or (timer is not None) == (alert.cleared_at_ms is None), alert
            else:
                assert timer is None, alert

    @invariant()
    def audit_chain_intact(self) -> None:
        assert self.store.verify_audit().intact


async def _settled(tasks: set[asyncio.Task[object]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


Lifecycle.TestCase.settings = settings(max_examples=20, stateful_step_count=25, deadline=None)
TestLifecycle = Lifecycle.TestCase
