"""The hazard register (issue 6, 隐患台账): recurring hazards reviewed at their grade's interval; a missed review
raises an alert of its own, which the next review clears."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, AlertState, AlertStore, Grade, WebhookReceiver
from alerts.hazards import REVIEW_EVERY_MS, HazardState
from alerts.service import AlertNotFoundError, HazardNotFoundError, TransitionError
from alerts.sink import RunningSink
from tests.alerts.support import Clock, directory_for, event, open_alert_store, pages, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

DAY_MS = 86_400_000


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock) -> AlertService:
    return AlertService(store=store, directory=directory_for(url), receiver=receiver, clock=clock)


async def test_a_missed_review_raises_an_alert_that_the_review_clears(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            smoke = await alerts.submit(event(key="hongxing/smoke-b2-f1/smoke/level"))
            assert smoke is not None
            hazard = await alerts.register_hazard(
                community="hongxing", grid="hongxing-01", place="2栋1层电动车充电走廊", title="电动车违规充电",
                grade=Grade.II, owner="zhang-wei", by="zhang-wei", channel="app", alerts=[smoke.id],
            )  # fmt: skip
            assert hazard.next_review_ms == clock.now_ms + REVIEW_EVERY_MS[Grade.II] == clock.now_ms + 7 * DAY_MS
            clock.now_ms += 7 * DAY_MS - 1
            await alerts.escalate_due()
            assert [a.key for a in await alerts.list_alerts(AlertState.OPEN, limit=10)] == [smoke.key], "not due yet"
            clock.now_ms += 1
            await alerts.escalate_due()
            await alerts.escalate_due()
            overdue = [a for a in await alerts.list_alerts(limit=10) if a.key == hazard.review_key]
            assert [(a.grade, a.last_event.rule_zh) for a in overdue] == [(Grade.III, "隐患复查逾期")], "once"
            await wait_until(lambda: any(b["alert_key"] == hazard.review_key for b in sink.sink.received))
    with open_alert_store(path) as store:  # restart: the same missed date does not raise a second alert
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            await alerts.escalate_due()
            assert len([a for a in await alerts.list_alerts(limit=10) if a.key == hazard.review_key]) == 1
            reviewed = await alerts.review_hazard(hazard.id, by="zhang-wei", channel="app", finding="已加装充电桩")
            assert reviewed.next_review_ms == clock.now_ms + 7 * DAY_MS and reviewed.last_finding == "已加装充电桩"
            [review_alert] = [a for a in await alerts.list_alerts(limit=10) if a.key == hazard.review_key]
            assert review_alert.cleared_at_ms is not None, "the review clears the overdue alert"
            closed = await alerts.review_hazard(hazard.id, by="zhang-wei", channel="app", finding="已整改", close=True)
            assert closed.state is HazardState.CLOSED
            with pytest.raises(TransitionError):
                await alerts.review_hazard(hazard.id, by="zhang-wei", channel="app", finding="x")
            assert [h.id for h in await alerts.hazards(open_only=True)] == []
        assert store.verify_audit().intact
    assert "zhang-wei" in pages(sink, "opened")


async def test_bad_register_entries_are_refused(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            base = {"community": "hongxing", "place": "p", "title": "t", "grade": Grade.IV, "by": "x", "channel": "app"}
            with pytest.raises(ValueError, match="no grid"):
                await alerts.register_hazard(grid="nowhere", owner="zhang-wei", **base)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="no person"):
                await alerts.register_hazard(grid="hongxing-01", owner="nobody", **base)  # type: ignore[arg-type]
            with pytest.raises(AlertNotFoundError):
                await alerts.register_hazard(grid="hongxing-01", owner="zhang-wei", alerts=["al-x"], **base)  # type: ignore[arg-type]
            with pytest.raises(HazardNotFoundError):
                await alerts.review_hazard("hz-nope", by="x", channel="app", finding="x")
            with pytest.raises(ValueError, match="found"):
                await alerts.review_hazard("hz-nope", by="x", channel="app", finding="")
