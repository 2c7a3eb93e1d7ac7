"""Quiet hours (issue 6): a person's grade IV pages (III if they ask) wait until morning; I–II never wait."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts import AlertService, Directory, Grade, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.directory import QuietHours
from alerts.silence import Mute
from alerts.sink import RunningSink
from tests.alerts.support import SECRET, Clock, event, open_alert_store

pytestmark = pytest.mark.usefixtures("alerts_engine")

SHANGHAI = ZoneInfo("Asia/Shanghai")
NIGHT = QuietHours(start=dt.time(22), end=dt.time(7))


def at(text: str) -> int:
    return round(dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


@pytest.mark.parametrize(
    ("moment", "until"),
    [("2026-03-02 23:30", "2026-03-03 07:00"), ("2026-03-03 06:59", "2026-03-03 07:00"), ("2026-03-03 07:00", None),
     ("2026-03-02 21:59", None), ("2026-03-02 22:00", "2026-03-03 07:00")],
)  # fmt: skip
def test_quiet_hours_run_past_midnight(moment: str, until: str | None) -> None:
    assert NIGHT.until_ms(at(moment)) == (None if until is None else at(until))


def test_quiet_hours_must_have_a_length() -> None:
    with pytest.raises(ValueError, match="same time"):
        QuietHours(start=dt.time(7), end=dt.time(7))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("grade", "include_iii", "waits"),
    [(Grade.IV, False, True), (Grade.III, False, False), (Grade.III, True, True), (Grade.II, True, False)],
)
async def test_pages_wait_for_the_morning_by_grade(
    sink: RunningSink, tmp_path: Path, grade: Grade, include_iii: bool, waits: bool
) -> None:
    quiet = QuietHours(start=dt.time(22), end=dt.time(7), include_grade_iii=include_iii)
    directory = Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[
            Person(id="zhang-wei", name="张伟", targets=(WebhookTarget(url=sink.url, secret=SECRET),), quiet=quiet)
        ],
    )
    clock = Clock(at("2026-03-02 23:30"))
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory, receiver=receiver, clock=clock) as alerts,
        ):
            alert = await alerts.submit(event(grade=grade))
            assert alert is not None
        [row] = store.notifications(alert.id)
    assert row.next_attempt_ms == (at("2026-03-03 07:00") if waits else clock.now_ms)


@pytest.mark.anyio
async def test_a_channel_kept_for_some_grades_gets_only_those(sink: RunningSink, tmp_path: Path) -> None:
    work_robot, phone = WebhookTarget(url=sink.url, secret=SECRET), WebhookTarget(url=sink.url, secret=SECRET)
    person = Person(
        id="zhang-wei", name="张伟", targets=(work_robot, phone), target_grades=(frozenset({4}), frozenset({1, 2, 3}))
    )
    directory = Directory(grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))], people=[person])
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory, receiver=receiver) as alerts,
        ):
            alarm = await alerts.submit(event(grade=Grade.III))
            fault = await alerts.submit(event(key="hongxing/gas-b1-301/health/drift", grade=Grade.IV))
            assert alarm is not None and fault is not None
        targets = {(n.alert_id, n.target_index) for n in store.notifications()}
    assert targets == {(alarm.id, 1), (fault.id, 0)}


def test_every_grade_needs_a_channel() -> None:
    target = WebhookTarget(url="http://127.0.0.1:9/", secret=SECRET)
    with pytest.raises(ValueError, match="no channel for grade III"):
        Person(id="p", name="p", targets=(target, target), target_grades=(frozenset({4}), frozenset({1, 2})))


def test_quiet_hours_answer_the_same_mute_question_as_silences() -> None:
    mutes: list[Mute] = [NIGHT]  # the one "muted?" protocol (issue 6)
    night = at("2026-03-02 23:30")
    assert mutes[0].muted_by(event(grade=Grade.IV), night) == "quiet hours until 07:00 (Asia/Shanghai)"
    assert mutes[0].muted_by(event(grade=Grade.II), night) is None, "never grades I–II"
    assert mutes[0].muted_by(event(grade=Grade.IV), at("2026-03-03 09:00")) is None
