"""Escalation of unacknowledged alerts (issue 6): real SQLite, real signed HTTP deliveries to the sink on loopback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, Grade, WebhookReceiver
from alerts.escalation import EscalationLevel, EscalationPolicy
from alerts.model import AlertState
from alerts.sink import RunningSink
from tests.alerts.support import (
    CHAIN,
    MINUTE_MS,
    T0,
    Clock,
    chain_directory,
    event,
    open_alert_store,
    pages,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock, **policy: object) -> AlertService:
    return AlertService(
        store=store,
        directory=chain_directory(url),
        receiver=receiver,
        clock=clock,
        escalation=EscalationPolicy(CHAIN, **policy),  # type: ignore[arg-type]
        retry_base_s=0.05,
        retry_max_s=0.2,
    )


async def test_an_unanswered_alert_climbs_the_chain_then_reminds_everyone_until_acknowledged(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None and alert.level == 0 and alert.escalate_at_ms == T0 + 5 * MINUTE_MS
            await wait_until(lambda: len(sink.sink.received) == 1)
            clock.now_ms += 5 * MINUTE_MS - 1
            assert await alerts.escalate_due() == [], "the grade III deadline is 5 min (SENSORS.md)"
            clock.now_ms += 1
            [up] = await alerts.escalate_due()
            assert (up.level, up.revision, up.escalate_at_ms) == (1, 2, clock.now_ms + 5 * MINUTE_MS)
            assert await alerts.escalate_due() == [], "one escalation per deadline"
            await wait_until(lambda: len(sink.sink.received) == 4)
            assert pages(sink, "escalated") == ["li-property", "zhang-wei", "zhao-committee"]
            for _ in range(2):
                clock.now_ms += 5 * MINUTE_MS
                await alerts.escalate_due()
            clock.now_ms += 5 * MINUTE_MS
            [top] = await alerts.escalate_due()
            assert (top.level, top.revision) == (3, 5)
            await wait_until(lambda: len(sink.sink.received) == 1 + 3 + 4 + 5 + 5)
            assert pages(sink, "reminder") == sorted(["zhang-wei", "li-property", "zhao-committee",
                                                      "chen-subdistrict", "wu-district"])  # fmt: skip
            reminder = next(b for b in sink.sink.received if b["reason"] == "reminder")
            assert (
                reminder["message_zh"].startswith("【仍未接单 III级 黄色 较大】") and reminder["escalation_level"] == 3
            )
            acked = await alerts.acknowledge(alert.id, by="chen-subdistrict", channel="app")
            assert acked.level == 3 and acked.escalate_at_ms == clock.now_ms + 15 * MINUTE_MS, "now: on site"
            await alerts.on_site(alert.id, by="chen-subdistrict", channel="app")
            clock.now_ms += 60 * MINUTE_MS
            assert await alerts.escalate_due() == []
            counters = alerts.counters
            assert (counters.escalations_total, counters.reminders_total) == (3, 1)
            trail = [t.note for t in await alerts.transitions(alert.id) if t.channel == "timer"]
            assert trail[0] == "escalated to level 1 (物业服务中心): not acknowledged within 300 s at grade III"
            assert trail[-1].startswith("everyone up to level 3 (区应急管理局) paged again")


async def test_grade_i_pages_every_level_at_once(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event(grade=Grade.I, confirmed_by_person=True))
            assert alert is not None and alert.grade is Grade.I and alert.level == 3
            await wait_until(lambda: len(sink.sink.received) == 5)
            assert len(set(pages(sink, "opened"))) == 5


async def test_an_upgrade_before_anyone_answers_brings_the_deadline_forward(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            await alerts.submit(event())
            clock.now_ms += 30_000
            upgraded = await alerts.submit(event(grade=Grade.II, rule="level-2 alarm", value=55.0))
            assert upgraded is not None and upgraded.escalate_at_ms == clock.now_ms + MINUTE_MS  # II: 1 min
            clock.now_ms += MINUTE_MS
            [up] = await alerts.escalate_due()
            assert up.level == 1


async def test_escalation_survives_a_restart_once_and_only_once(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            await wait_until(lambda: len(sink.sink.received) == 1)
    clock.now_ms += 6 * MINUTE_MS  # the hub was down past the deadline
    for _ in range(2):  # the first start catches up at once, by itself; the second finds nothing to do
        with open_alert_store(path) as store:
            async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock):
                await wait_until(lambda: len(sink.sink.received) == 4)
            stored = store.get(alert.id)
            assert stored is not None and (stored.level, stored.revision) == (1, 2)
    assert len(sink.sink.received) == 4, "no duplicate page after the second restart"


async def test_the_background_task_escalates_on_its_own_at_the_deadline(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        directory = chain_directory(sink.url)
        policy = EscalationPolicy(CHAIN, {Grade.III: 300})
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory, receiver=receiver, escalation=policy) as alerts,
        ):
            alert = await alerts.submit(event())
            assert alert is not None
            await wait_until(lambda: alerts.counters.escalations_total >= 1, timeout_s=3.0)
            await alerts.acknowledge(alert.id, by="li-property", channel="app")
            escalations = alerts.counters.escalations_total
            stored = store.get(alert.id)
            assert stored is not None and stored.state is AlertState.ACKNOWLEDGED and stored.level == escalations
            assert stored.escalate_at_ms is not None and stored.escalate_at_ms > stored.acknowledged_at_ms
        assert escalations <= 3 and alerts.counters.escalations_total == escalations


def test_a_chain_naming_an_unknown_person_or_a_bad_deadline_is_refused(tmp_path: Path) -> None:
    bad = EscalationPolicy([EscalationLevel(id="property", name="物业", people=("nobody",))])
    with pytest.raises(ValueError, match="'property' names unknown person 'nobody'"):
        bad.check(chain_directory("http://127.0.0.1:9/notify"))
    with pytest.raises(ValueError, match="repeat"):
        EscalationPolicy([CHAIN[0], CHAIN[0]])
    with pytest.raises(ValueError, match="at least 1 ms"):
        EscalationPolicy(CHAIN, {Grade.II: 0})
    with pytest.raises(ValueError, match="names nobody"):
        EscalationLevel(id="x", name="x", people=())


def test_a_database_from_before_escalation_gains_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE alerts (id TEXT PRIMARY KEY, key TEXT NOT NULL, community TEXT NOT NULL, grid TEXT NOT NULL, "
            "grade INTEGER NOT NULL, state TEXT NOT NULL, revision INTEGER NOT NULL, first_event TEXT NOT NULL, "
            "last_event TEXT NOT NULL, opened_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL, "
            "notified_at_ms INTEGER, acknowledged_by TEXT, acknowledged_at_ms INTEGER, resolved_by TEXT, "
            "resolved_at_ms INTEGER, resolved_note TEXT, cleared_at_ms INTEGER)"
        )
    with AlertStore(path) as store:
        assert store.next_escalation_ms() is None
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
    assert {"level", "escalate_at_ms"} <= columns
