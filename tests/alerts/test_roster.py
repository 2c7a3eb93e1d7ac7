"""Duty rosters (issue 6): shifts, round-robin, holidays, overrides, fallback — and pages go to who is on duty."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts import AlertService, Directory, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.roster import Roster, Shift
from alerts.sink import RunningSink
from tests.alerts.support import SECRET, Clock, event, open_alert_store, pages, wait_until

pytestmark = pytest.mark.usefixtures("alerts_engine")

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = Shift(name="day", start=dt.time(8), end=dt.time(20))
NIGHT = Shift(name="night", start=dt.time(20), end=dt.time(8))


def at(text: str) -> int:
    """Unix ms of a Shanghai local time ``YYYY-MM-DD HH:MM``."""
    return round(dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI).timestamp() * 1000)


ROSTER = Roster(
    id="grid-1-duty",
    grids=("hongxing-01",),
    team=("a", "b", "c"),
    shifts=(DAY, NIGHT),
    epoch=dt.date(2026, 1, 5),
    holidays={dt.date(2026, 1, 8): ("h",)},
    overrides={(dt.date(2026, 1, 7), "night"): "d"},
    fallback=("f",),
)


@pytest.mark.parametrize(
    ("moment", "who", "why"),
    [
        ("2026-01-05 10:00", "a", "day shift of 2026-01-05"),
        ("2026-01-05 21:00", "b", "night shift of 2026-01-05"),
        ("2026-01-06 03:00", "b", "night shift of 2026-01-05"),  # past midnight: still the night that began before
        ("2026-01-06 09:00", "c", "day shift of 2026-01-06"),
        ("2026-01-07 09:00", "b", "day shift of 2026-01-07"),  # occurrence 4: round-robin past the team's end
        ("2026-01-07 22:00", "d", "night shift of 2026-01-07"),  # a swap
        ("2026-01-08 09:00", "h", "day shift of 2026-01-08"),  # a holiday
        ("2026-01-09 02:00", "h", "night shift of 2026-01-08"),
        ("2026-01-05 08:00", "a", "day shift of 2026-01-05"),  # the handover instant belongs to the incoming shift
        ("2026-01-05 07:59", "c", "night shift of 2026-01-04"),
    ],
)
def test_who_is_on_duty(moment: str, who: str, why: str) -> None:
    assert ROSTER.on_duty(at(moment)) == ((who,), why)


def test_a_gap_between_shifts_pages_the_fallback() -> None:
    office = Roster(
        id="office",
        grids=("g",),
        team=("a",),
        shifts=(Shift(name="office", start=dt.time(9), end=dt.time(17)),),
        fallback=("f",),
    )
    assert office.on_duty(at("2026-03-02 18:00")) == (("f",), "no shift now: fallback")


def test_overlapping_shifts_unknown_override_shifts_and_unknown_people_are_refused() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        Roster(id="r", grids=("g",), team=("a",), shifts=(DAY, Shift(name="late", start=dt.time(19), end=dt.time(23))))
    with pytest.raises(ValueError, match="unknown shift 'evening'"):
        Roster(id="r", grids=("g",), team=("a",), shifts=(DAY,), overrides={(dt.date(2026, 1, 1), "evening"): "a"})
    with pytest.raises(ValueError, match="names unknown person 'h'"):
        Directory(
            grids=[Grid(id="hongxing-01", name="g")],
            people=[Person(id=p, name=p) for p in "abcdf"],
            rosters=[ROSTER],
        )


@pytest.mark.anyio
async def test_pages_go_to_who_is_on_duty_and_after_the_handover_to_the_incoming_one(
    sink: RunningSink, tmp_path: Path
) -> None:
    target = (WebhookTarget(url=sink.url, secret=SECRET),)
    directory = Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("a", "b", "c"))],
        people=[Person(id=p, name=p.upper(), targets=target) for p in "abcdhf"],
        rosters=[ROSTER],
    )
    clock = Clock(at("2026-01-05 19:58"))
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory, receiver=receiver, clock=clock) as alerts,
        ):
            await alerts.submit(event())
            await wait_until(lambda: pages(sink, "opened") == ["a"])
            clock.now_ms = at("2026-01-05 20:03")  # unacknowledged past the 5 min deadline, after the shift change
            await alerts.escalate_due()
            await wait_until(lambda: pages(sink, "reminder") == ["b"])
