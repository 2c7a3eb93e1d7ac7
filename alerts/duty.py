"""Duty changes made while the hub runs: swaps, sick days and holiday rotas on top of the deployment file's rosters.

The deployment file plans each grid's rotation (alerts/roster.py); life changes it — a grid manager swaps a night
with a colleague, falls ill, or the committee sets who covers the Spring Festival. :class:`DutyChanges` takes those
changes from the people allowed to make them, checks them (a known roster, shift and person, someone reachable on
duty), stores them in the alert store with a row in its hash-chained audit log (one transaction), and has the
directory route by them at once: the next page about the grid goes to the new person. At start it replays the stored
changes, so they outlive a restart; one that no longer fits the deployment file (a person removed since) is logged
and left out, never a reason not to start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from alerts.directory import Directory
from alerts.roster import Roster, RosterChange, changes_of
from alerts.store import AlertStore

__all__ = ["DAYS_AHEAD", "DutyChanges", "RosterNotFoundError"]

log = logging.getLogger("anju.alerts.duty")

DAYS_AHEAD = 366
"""How far ahead (days) a change may be planned: a year's holidays, not a typo's year 2062."""


class RosterNotFoundError(LookupError):
    """No roster has this id (the API answers 404)."""

    def __init__(self, roster_id: str) -> None:
        super().__init__(f"no roster {roster_id!r}")
        self.roster_id = roster_id


class DutyChanges:
    """The run-time changes of the directory's rosters (see the module docstring)."""

    def __init__(self, *, store: AlertStore, directory: Directory, clock: Callable[[], int] | None = None) -> None:
        self._store = store
        self._directory = directory
        self._clock = clock or (lambda: round(dt.datetime.now().timestamp() * 1000))
        self._changes: dict[str, dict[tuple[dt.date, str | None], RosterChange]] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> int:
        """Route by the stored changes (at start); how many were taken. A change that no longer fits the deployment
        (a person, shift or roster gone from the file) is logged and skipped."""
        taken = 0
        for change in await asyncio.to_thread(self._store.roster_changes):
            mine = {**self._changes.get(change.roster_id, {}), (change.day, change.shift): change}
            try:
                roster = self._amended(change.roster_id, mine.values())
            except ValueError as exc:
                log.warning("duty change %s of roster %s left out: %s", change.describe(), change.roster_id, exc)
                continue
            self._changes[change.roster_id] = mine
            self._directory.route_by(roster)
            taken += 1
        return taken

    def changes(self, roster_id: str) -> list[RosterChange]:
        """The changes of ``roster_id`` in force, by day (a holiday before that day's shift swaps)."""
        found = self._changes.get(roster_id, {}).values()
        return sorted(found, key=lambda c: (c.day, c.shift or ""))

    async def change(
        self, roster_id: str, *, day: dt.date, shift: str | None, people: Sequence[str], by: str, note: str = ""
    ) -> Roster:
        """Give ``shift`` of ``day`` to ``people[0]`` (a swap), or with ``shift`` None put ``people`` on duty for the
        shifts of ``day`` (a holiday); replaces an earlier change of the same day and shift. Audited, stored, and in
        force for the next page. The roster as it now routes.

        RosterNotFoundError for an unknown roster; ValueError (the message starts with the field at fault: ``day``,
        ``shift``, ``person``, ``people``) for a day in the past or too far ahead, an unknown shift or person, a
        person with no channel, or nobody on duty."""
        planned = self._planned(roster_id)
        self._check_day(planned, day)
        change = RosterChange(
            roster_id=roster_id, day=day, shift=shift, people=tuple(people), by=by, time_ms=self._clock(), note=note
        )
        async with self._lock:
            mine = {**self._changes.get(roster_id, {}), (day, shift): change}
            roster = self._amended(roster_id, mine.values())
            await asyncio.to_thread(self._store.save_roster_change, change)
            self._changes[roster_id] = mine
            self._directory.route_by(roster)
        log.warning("duty change by %s: roster %s %s", by, roster_id, change.describe())
        return roster

    async def undo(self, roster_id: str, *, day: dt.date, shift: str | None, by: str, note: str = "") -> Roster:
        """Drop the change of ``day`` and ``shift`` (None: the holiday): the file's plan holds again. Audited.
        RosterNotFoundError for an unknown roster, LookupError when no such change is in force."""
        self._planned(roster_id)
        async with self._lock:
            mine = dict(self._changes.get(roster_id, {}))
            if mine.pop((day, shift), None) is None:
                what = "holiday" if shift is None else f"{shift} shift"
                raise LookupError(f"no duty change of roster {roster_id!r} for the {what} of {day}")
            roster = self._amended(roster_id, mine.values())
            await asyncio.to_thread(
                self._store.remove_roster_change, roster_id, day, shift, by=by, now_ms=self._clock(), note=note
            )
            self._changes[roster_id] = mine
            self._directory.route_by(roster)
        log.warning("duty change undone by %s: roster %s %s %s", by, roster_id, day, shift or "holiday")
        return roster

    def _planned(self, roster_id: str) -> Roster:
        planned = self._directory.planned_roster(roster_id)
        if planned is None:
            raise RosterNotFoundError(roster_id)
        return planned

    def _amended(self, roster_id: str, changes: Iterable[RosterChange]) -> Roster:
        holidays, overrides = changes_of(changes)
        return self._directory.amended(roster_id, holidays=holidays, overrides=overrides)

    def _check_day(self, roster: Roster, day: dt.date) -> None:
        """A change may be for yesterday (a night shift that began then still runs) up to ``DAYS_AHEAD`` days on, in
        the roster's own time zone: the duty of the past is history, kept as the audit log tells it."""
        today = dt.datetime.fromtimestamp(self._clock() / 1000, ZoneInfo(roster.timezone)).date()
        if day < today - dt.timedelta(days=1):
            raise ValueError(f"day: {day} is past ({roster.timezone} today is {today}); the past is not rewritten")
        if day > today + dt.timedelta(days=DAYS_AHEAD):
            raise ValueError(f"day: {day} is more than {DAYS_AHEAD} days ahead")
