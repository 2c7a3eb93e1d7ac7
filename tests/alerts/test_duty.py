"""Duty changes at run time (alerts/duty.py): checked, stored with an audit row, replayed after a restart — and a
stored change that no longer fits the deployment is left out, not a reason to fail at start."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts import Directory, Grid, Person, WebhookTarget
from alerts.duty import DutyChanges, RosterNotFoundError
from alerts.roster import Roster, Shift
from tests.alerts.support import open_alert_store

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]
SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = round(dt.datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI).timestamp() * 1000)
TODAY = dt.date(2026, 12, 1)


def person(person_id: str, *, reachable: bool = True) -> Person:
    target = WebhookTarget(url="http://127.0.0.1:1/notify", secret="s" * 32)
    return Person(id=person_id, name=person_id, targets=(target,) if reachable else ())


def directory(*people: str, unreachable: tuple[str, ...] = ()) -> Directory:
    roster = Roster(
        id="duty",
        grids=("g1",),
        team=("a",),
        shifts=(
            Shift(name="day", start=dt.time(8), end=dt.time(20)),
            Shift(name="night", start=dt.time(20), end=dt.time(8)),
        ),
        fallback=("a",),
    )
    everyone = [person(p) for p in people] + [person(p, reachable=False) for p in unreachable]
    return Directory(grids=[Grid(id="g1", name="一网格", managers=("a",))], people=everyone, rosters=[roster])


def on_duty(found: Directory) -> list[str]:
    return [p.id for p in found.on_duty("g1", NOW)]


async def test_a_swap_routes_at_once_is_audited_and_outlives_a_restart(tmp_path: Path) -> None:
    store = open_alert_store(tmp_path / "alerts.sqlite3")
    first = directory("a", "b")
    duty = DutyChanges(store=store, directory=first, clock=lambda: NOW)
    assert on_duty(first) == ["a"]
    await duty.change("duty", day=TODAY, shift="day", people=["b"], by="committee", note="a 病假")
    assert on_duty(first) == ["b"], "the directory the alert service holds routes by it at once"
    [row] = store.audit_rows(after=0, limit=10)
    assert (row.subject, row.to_state, row.by) == ("duty", "roster-changed", "committee")
    assert "2026-12-01 day shift → b" in row.note and "a 病假" in row.note
    store.close()

    reopened = open_alert_store(tmp_path / "alerts.sqlite3")
    again = directory("a", "b")
    assert await DutyChanges(store=reopened, directory=again, clock=lambda: NOW).load() == 1
    assert on_duty(again) == ["b"]
    reopened.close()


async def test_a_stored_change_that_no_longer_fits_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_alert_store(tmp_path / "alerts.sqlite3")
    await DutyChanges(store=store, directory=directory("a", "b"), clock=lambda: NOW).change(
        "duty", day=TODAY, shift="day", people=["b"], by="committee"
    )
    without_b = directory("a")
    with caplog.at_level(logging.WARNING, logger="anju.alerts.duty"):
        assert await DutyChanges(store=store, directory=without_b, clock=lambda: NOW).load() == 0
    assert on_duty(without_b) == ["a"] and "no person 'b'" in caplog.text
    store.close()


async def test_refusals_name_the_field_and_change_nothing(tmp_path: Path) -> None:
    store = open_alert_store(tmp_path / "alerts.sqlite3")
    found = directory("a", "b", unreachable=("mute",))
    duty = DutyChanges(store=store, directory=found, clock=lambda: NOW)
    for kwargs, start in (
        ({"shift": "day", "people": ["ghost"]}, "person: no person 'ghost'"),
        ({"shift": "day", "people": ["mute"]}, "person: 'mute' has no channel"),
        ({"shift": "evening", "people": ["b"]}, "shift: roster 'duty' has no shift 'evening'"),
        ({"shift": None, "people": []}, "people: "),
        ({"shift": "day", "people": ["a", "b"]}, "people: one shift"),
        ({"shift": "day", "people": ["b"], "day": TODAY - dt.timedelta(days=2)}, "day: 2026-11-29 is past"),
        ({"shift": "day", "people": ["b"], "day": TODAY + dt.timedelta(days=400)}, "day: "),
    ):
        with pytest.raises(ValueError) as refused:
            await duty.change("duty", **{"day": TODAY, "by": "committee", **kwargs})  # type: ignore[arg-type]
        assert str(refused.value).startswith(start), (kwargs, str(refused.value))
    yesterday_night = await duty.change("duty", day=TODAY - dt.timedelta(days=1), shift="night", people=["b"], by="c")
    assert yesterday_night.overrides[(TODAY - dt.timedelta(days=1), "night")] == "b", "last night's shift still runs"
    with pytest.raises(RosterNotFoundError):
        await duty.change("nope", day=TODAY, shift="day", people=["b"], by="committee")
    with pytest.raises(LookupError):
        await duty.undo("duty", day=TODAY, shift="day", by="committee")
    assert on_duty(found) == ["a"] and len(store.audit_rows(after=0, limit=10)) == 1
    store.close()
