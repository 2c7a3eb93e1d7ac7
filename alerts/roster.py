"""Duty rosters: who of a grid's team is on duty now, and so is paged first (issue 6).

A grid's managers do not all carry the phone at once: a community runs shifts (day 08:00–20:00, night 20:00–08:00)
and rotates its team through them. A :class:`Roster` answers "who is on duty at this moment?":

- ``shifts`` are local times of day (the community's time zone); a shift whose end is not after its start runs past
  midnight and belongs to the day it starts on. Shifts may leave gaps (nobody on duty) but must not overlap.
- Round-robin: the shift occurrences since ``epoch`` (a date), counted day by day and shift by shift, go to the
  ``team`` in turn — occurrence k to ``team[k % len(team)]`` — so every member takes every kind of shift.
- ``holidays``: on those dates (a shift starting on that date) the listed people are on duty instead.
- ``overrides``: one shift of one date given to someone else (a swap, a sick day) — the handover a person arranges.
- ``fallback``: who is paged when no shift covers the moment (better someone than nobody).

Pages always go to whoever is on duty when they are sent: an unacknowledged alert reminded or escalated after a
shift change reaches the incoming person (the handover); an acknowledged one stays with the person who took it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

__all__ = ["Roster", "RosterChange", "Shift", "changes_of"]

_DAY = dt.timedelta(days=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Shift:
    """A daily shift from ``start`` to ``end`` (local times; an end not after the start means the next day)."""

    name: str
    start: dt.time
    end: dt.time

    def span(self, day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
        """When this shift starting on ``day`` begins and ends (aware datetimes)."""
        begins = dt.datetime.combine(day, self.start, zone)
        ends_day = day if self.end > self.start else day + _DAY
        return begins, dt.datetime.combine(ends_day, self.end, zone)

    @property
    def hours(self) -> float:
        minutes = (self.end.hour * 60 + self.end.minute) - (self.start.hour * 60 + self.start.minute)
        return (minutes if minutes > 0 else minutes + 24 * 60) / 60


@dataclass(frozen=True, slots=True, kw_only=True)
class Roster:
    """One team's rotation over the grids it covers (see the module docstring)."""

    id: str
    grids: tuple[str, ...]
    team: tuple[str, ...]
    shifts: tuple[Shift, ...]
    timezone: str = "Asia/Shanghai"
    epoch: dt.date = dt.date(2026, 1, 5)
    holidays: Mapping[dt.date, tuple[str, ...]] = field(default_factory=dict)
    overrides: Mapping[tuple[dt.date, str], str] = field(default_factory=dict)
    fallback: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.grids or not self.team or not self.shifts:
            raise ValueError(f"roster {self.id!r} needs grids, a team and shifts")
        names = [shift.name for shift in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"roster {self.id!r}: shift names repeat: {names}")
        if sum(shift.hours for shift in self.shifts) > 24:
            raise ValueError(f"roster {self.id!r}: shifts overlap (more than 24 h a day)")
        ordered = sorted(self.shifts, key=lambda s: (s.start.hour, s.start.minute))
        for before, after in zip(ordered, [*ordered[1:], ordered[0]], strict=True):
            gap = (after.start.hour * 60 + after.start.minute) - (before.start.hour * 60 + before.start.minute)
            if len(ordered) > 1 and before.hours * 60 > (gap if gap > 0 else gap + 24 * 60):
                raise ValueError(f"roster {self.id!r}: shift {before.name!r} overlaps {after.name!r}")
        for day, shift_name in self.overrides:
            if shift_name not in names:
                raise ValueError(f"roster {self.id!r}: override on {day} names unknown shift {shift_name!r}")
        ZoneInfo(self.timezone)  # raises for an unknown zone

    def people(self) -> Iterable[str]:
        """Everyone the roster may page (for checking against the directory)."""
        yield from self.team
        for people in self.holidays.values():
            yield from people
        yield from self.overrides.values()
        yield from self.fallback

    def on_duty(self, now_ms: int) -> tuple[tuple[str, ...], str]:
        """Who is on duty at ``now_ms`` (Unix ms) and why (the shift, holiday, override or fallback)."""
        zone = ZoneInfo(self.timezone)
        now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
        for day in (now.date() - _DAY, now.date()):  # a night shift that began yesterday may still run
            for index, shift in enumerate(self.shifts):
                begins, ends = shift.span(day, zone)
                if begins <= now < ends:
                    return self._assigned(day, index, shift), f"{shift.name} shift of {day.isoformat()}"
        return self.fallback, "no shift now: fallback"

    def _assigned(self, day: dt.date, index: int, shift: Shift) -> tuple[str, ...]:
        override = self.overrides.get((day, shift.name))
        if override is not None:
            return (override,)
        holiday = self.holidays.get(day)
        if holiday is not None:
            return holiday
        occurrence = (day - self.epoch).days * len(self.shifts) + index
        return (self.team[occurrence % len(self.team)],)


@dataclass(frozen=True, slots=True, kw_only=True)
class RosterChange:
    """A duty change made while the hub runs, on top of the deployment file's roster: ``shift`` of ``day`` given to
    ``people[0]`` (a swap, a sick day — a roster *override*), or, with ``shift`` None, ``people`` on duty for every
    shift starting on ``day`` (a *holiday* rota). Kept in the alert store and in its audit log; ``time_ms`` (Unix ms)
    is when ``by`` made it."""

    roster_id: str
    day: dt.date
    shift: str | None
    people: tuple[str, ...]
    by: str
    time_ms: int
    note: str = ""

    def __post_init__(self) -> None:
        if not self.people:
            raise ValueError(f"people: a change of roster {self.roster_id!r} on {self.day} leaves nobody on duty")
        if self.shift is not None and len(self.people) != 1:
            raise ValueError(f"people: one shift ({self.shift} of {self.day}) goes to one person, not {self.people}")

    def describe(self) -> str:
        """One line for the audit log: ``2026-12-01 day shift → zhang-wei`` / ``2026-12-01 holiday → a, b``."""
        what = "holiday" if self.shift is None else f"{self.shift} shift"
        return f"{self.day.isoformat()} {what} → {', '.join(self.people)}"


def changes_of(
    changes: Iterable[RosterChange],
) -> tuple[dict[dt.date, tuple[str, ...]], dict[tuple[dt.date, str], str]]:
    """``changes`` (of one roster) as the holidays and overrides a :class:`Roster` takes."""
    holidays: dict[dt.date, tuple[str, ...]] = {}
    overrides: dict[tuple[dt.date, str], str] = {}
    for change in changes:
        if change.shift is None:
            holidays[change.day] = change.people
        else:
            overrides[(change.day, change.shift)] = change.people[0]
    return holidays, overrides
