"""Call response (issue 6): the lifecycle's steps, acknowledgement that is not forever, reopening, restart safety.

Real SQLite, real signed HTTP deliveries to the sink on loopback; the clock is moved by hand.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts import AlertService, AlertState, AlertStore, Grade, TransitionError, WebhookReceiver
from alerts.escalation import EscalationPolicy
from alerts.sink import RunningSink
from tests.alerts.support import CHAIN, MINUTE_MS, Clock, chain_directory, event, open_alert_store, pages, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock) -> AlertService:
    return AlertService(
        store=store,
        directory=chain_directory(url),
        receiver=receiver,
        clock=clock,
        escalation=EscalationPolicy(CHAIN),
        retry_base_s=0.05,
        retry_max_s=0.2,
    )


async def test_every_step_is_taken_in_order_and_audited(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            for step in (alerts.en_route, alerts.on_site, alerts.verify, alerts.close):
                with pytest.raises(TransitionError):
                    await step(alert.id, by="zhang-wei", channel="app")
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            clock.now_ms += 1000
            await alerts.en_route(alert.id, by="zhang-wei", channel="app")
            arrived = await alerts.on_site(alert.id, by="zhang-wei", channel="app", note="到场，闻到燃气味")
            assert arrived.escalate_at_ms is None, "on site: the on-site deadline is met"
            with pytest.raises(TransitionError):
                await alerts.en_route(alert.id, by="zhang-wei", channel="app")
            await alerts.submit(event(status="cleared", value=3.0))
            done = await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="关阀通风 photo: /e/1.jpg")
            assert done.escalate_at_ms is None, "the condition had cleared: nothing to reopen"
            with pytest.raises(TransitionError):
                await alerts.close(alert.id, by="li-property", channel="app")
            await alerts.verify(alert.id, by="li-property", channel="app", note="复查正常")
            closed = await alerts.close(alert.id, by="li-property", channel="app")
            assert closed.state is AlertState.CLOSED and not closed.is_open
            trail = [(t.from_state, t.to_state, t.by) for t in await alerts.transitions(alert.id)]
            people = [step for step in trail if step[0] != step[1]]
            assert people == [
                (None, AlertState.OPEN, "anju"),
                (AlertState.OPEN, AlertState.ACKNOWLEDGED, "zhang-wei"),
                (AlertState.ACKNOWLEDGED, AlertState.EN_ROUTE, "zhang-wei"),
                (AlertState.EN_ROUTE, AlertState.ON_SITE, "zhang-wei"),
                (AlertState.ON_SITE, AlertState.RESOLVED, "zhang-wei"),
                (AlertState.RESOLVED, AlertState.VERIFIED, "li-property"),
                (AlertState.VERIFIED, AlertState.CLOSED, "li-property"),
            ]
            again = await alerts.submit(event())
            assert again is not None and again.id != alert.id, "a closed alert's key opens a new alert"


async def test_an_acknowledgement_is_not_forever(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            acked = await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            assert acked.escalate_at_ms == clock.now_ms + 15 * MINUTE_MS, "III: on site within 15 min (SENSORS.md)"
            await alerts.en_route(alert.id, by="zhang-wei", channel="app")
            clock.now_ms += 15 * MINUTE_MS
            [late] = await alerts.escalate_due()
            assert (late.state, late.revision, late.escalate_at_ms) == (
                AlertState.EN_ROUTE,
                2,
                clock.now_ms + 15 * MINUTE_MS,
            )
            await wait_until(lambda: len(pages(sink, "overdue")) == 1)
            body = next(b for b in sink.sink.received if b["reason"] == "overdue")
            assert body["message_zh"].startswith("【已接单未到场 III级 黄色 较大】")
            await alerts.on_site(alert.id, by="zhang-wei", channel="app")
            clock.now_ms += 60 * MINUTE_MS
            assert await alerts.escalate_due() == []
            assert alerts.counters.overdue_total == 1


async def test_a_resolved_alert_still_in_alarm_reopens_unless_it_clears(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            done = await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="已处理")
            assert done.escalate_at_ms == clock.now_ms + 10 * MINUTE_MS
            clock.now_ms += 10 * MINUTE_MS
            [back] = await alerts.escalate_due()
            assert (back.state, back.acknowledged_by, back.escalate_at_ms) == (
                AlertState.OPEN,
                None,
                clock.now_ms + 5 * MINUTE_MS,
            )
            await wait_until(lambda: pages(sink, "reopened") == ["zhang-wei"])
            assert alerts.counters.reopened_total == 1
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="更换阀门")
            quiet = await alerts.submit(event(status="cleared", value=2.0))
            assert quiet is not None and quiet.state is AlertState.RESOLVED and quiet.escalate_at_ms is None
            clock.now_ms += 60 * MINUTE_MS
            assert await alerts.escalate_due() == []
            with pytest.raises(ValueError, match="note"):
                await alerts.reopen(alert.id, by="li-property", channel="app", note="")
            await alerts.verify(alert.id, by="li-property", channel="app")
            reopened = await alerts.reopen(alert.id, by="li-property", channel="app", note="复查仍有燃气味")
            assert reopened.state is AlertState.OPEN and reopened.resolved_by is None
            newer = await alerts.submit(event(key="hongxing/gas-b1-302/gas/level"))
            assert newer is not None


async def test_reopening_yields_to_a_newer_alert_of_the_same_key(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            first = await alerts.submit(event())
            assert first is not None
            await alerts.acknowledge(first.id, by="zhang-wei", channel="app")
            await alerts.submit(event(status="cleared", value=1.0))
            await alerts.resolve(first.id, by="zhang-wei", channel="app", note="ok")
            second = await alerts.submit(event(grade=Grade.II, rule="level-2 alarm", value=55.0))
            assert second is not None and second.id != first.id
            with pytest.raises(TransitionError):
                await alerts.reopen(first.id, by="li-property", channel="app", note="again")


async def test_timers_survive_a_restart_in_every_state(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            acked = await alerts.submit(event(key="k/acked"))
            resolved = await alerts.submit(event(key="k/resolved"))
            assert acked is not None and resolved is not None
            await alerts.acknowledge(acked.id, by="zhang-wei", channel="app")
            await alerts.acknowledge(resolved.id, by="zhang-wei", channel="app")
            await alerts.resolve(resolved.id, by="zhang-wei", channel="app", note="x")
            await wait_until(lambda: len(sink.sink.received) == 2)
    clock.now_ms += 20 * MINUTE_MS  # down past the on-site deadline and the reopening
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock):
            await wait_until(lambda: len(sink.sink.received) == 4)
        assert [a.state for a in (store.get(acked.id), store.get(resolved.id)) if a] == [
            AlertState.ACKNOWLEDGED,
            AlertState.OPEN,
        ]
    assert sorted(b["reason"] for b in sink.sink.received[2:]) == ["overdue", "reopened"]


def test_a_database_with_the_first_release_index_gets_the_lifecycle_one(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with AlertStore(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX alerts_one_open_per_key_v2")
        db.execute("CREATE UNIQUE INDEX alerts_one_open_per_key ON alerts(key) WHERE state != 'resolved'")
    with AlertStore(path):
        pass
    with sqlite3.connect(path) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "alerts_one_open_per_key_v2" in names and "alerts_one_open_per_key" not in names
