"""Silences (issue 6): maintenance windows that mute matching firing events, audited, with an end."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, Grade, RiskEvent, WebhookReceiver
from alerts.silence import MAX_SILENCE_MS, Silence, SilenceMatch
from alerts.sink import RunningSink
from tests.alerts.support import MINUTE_MS, Clock, directory_for, event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

B2_SMOKE = SilenceMatch(sensors=("smoke-b2-f1", "smoke-b2-f2"))


def smoke(sensor: str, grade: Grade = Grade.III, status: str = "firing") -> RiskEvent:
    return event(
        key=f"hongxing/{sensor}/smoke/level", sensor=sensor, kind="smoke", rule="alarm", grade=grade, status=status,
        unit="dB/m", value=0.2, threshold=0.15, source="GB 4715-2024: alarm",
    )  # fmt: skip


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock) -> AlertService:
    return AlertService(store=store, directory=directory_for(url), receiver=receiver, clock=clock)


async def test_a_detector_test_window_mutes_its_detectors_only_and_ends(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            window = await alerts.silence(
                B2_SMOKE, by="li-property", reason="2栋烟感年度测试", ends_at_ms=clock.now_ms + 60 * MINUTE_MS
            )
            assert await alerts.submit(smoke("smoke-b2-f1")) is None
            assert await alerts.submit(smoke("smoke-b2-f2")) is None
            other = await alerts.submit(smoke("smoke-b1-f1"))
            assert other is not None, "a detector the window does not name still pages"
            fire = await alerts.submit(smoke("smoke-b2-f1", grade=Grade.II))
            assert fire is not None, "grade II is not muted by a test window unless it says so"
            assert alerts.counters.muted_total == 2
            [running] = await alerts.list_silences(running=True)
            assert (running.id, running.muted) == (window.id, 2)
            clock.now_ms += 60 * MINUTE_MS
            assert await alerts.submit(smoke("smoke-b2-f2")) is not None, "the window ended"
            assert await alerts.list_silences(running=True) == []
            await wait_until(lambda: len(sink.sink.received) == 3)
    with open_alert_store(path) as store:
        report = store.verify_audit()
        [kept] = store.silences()
        notes = [row.note for row in store.audit_rows(after=0, limit=10_000) if row.subject == window.id]
    assert report.intact and kept.muted == 2
    assert notes == [f"silence set: sensors smoke-b2-f1, smoke-b2-f2; from {window.starts_at_ms} to "
                     f"{window.ends_at_ms} ms; 2栋烟感年度测试"]  # fmt: skip


async def test_a_silence_survives_a_restart_and_can_be_lifted(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            window = await alerts.silence(
                SilenceMatch(kinds=("smoke",), grids=("hongxing-01",)),
                by="li-property",
                reason="消防检测",
                ends_at_ms=clock.now_ms + 120 * MINUTE_MS,
            )
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            assert await alerts.submit(smoke("smoke-b1-f3")) is None, "the silence holds after a restart"
            lifted = await alerts.lift_silence(window.id, by="wang-li")
            assert lifted is not None and lifted.cancelled_by == "wang-li" and lifted.muted == 1
            assert await alerts.lift_silence(window.id, by="wang-li") is None
            assert await alerts.submit(smoke("smoke-b1-f3")) is not None


async def test_an_alert_opened_before_a_silence_still_gets_its_cleared_notice(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            opened = await alerts.submit(smoke("smoke-b2-f1"))
            assert opened is not None
            await alerts.silence(B2_SMOKE, by="li-property", reason="测试", ends_at_ms=clock.now_ms + MINUTE_MS)
            cleared = await alerts.submit(smoke("smoke-b2-f1", status="cleared"))
            assert cleared is not None and cleared.cleared_at_ms is not None
            await wait_until(lambda: [b["reason"] for b in sink.sink.received] == ["opened", "cleared"])


def test_a_silence_must_name_something_end_after_it_starts_and_not_last_for_ever() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SilenceMatch()
    with pytest.raises(ValueError, match="non-empty"):
        SilenceMatch(sensors=("",))
    base = {"match": B2_SMOKE, "created_by": "li", "created_ms": 0, "reason": "x"}
    with pytest.raises(ValueError, match="end after"):
        Silence(starts_at_ms=10, ends_at_ms=10, **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 168 h"):
        Silence(starts_at_ms=0, ends_at_ms=MAX_SILENCE_MS + 1, **base)  # type: ignore[arg-type]
    grade_i = smoke("smoke-b2-f1", grade=Grade.I)
    assert not SilenceMatch(sensors=("smoke-b2-f1",), include_grade_ii=True).matches(grade_i)
