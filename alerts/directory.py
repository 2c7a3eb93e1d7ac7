"""Who is responsible for what: grids, their managers, and where to reach each person.

Plain frozen values. The hub builds a :class:`Directory` from its YAML deployment configuration (strict,
secrets from env or ``*_file``); ``alerts`` only reads it — but for the duty rosters' swaps and holidays changed
while the hub runs (``Directory.amended`` and ``route_by``, made by ``alerts.duty``). Later rosters and escalation
chains sit next to these and answer the same question ("who gets this alert now?") with time and escalation in the
answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from alerts.model import RiskEvent
from alerts.roster import Roster

__all__ = [
    "DingTalkTarget",
    "Directory",
    "EmailTarget",
    "Grid",
    "Person",
    "QuietHours",
    "SmsTarget",
    "Target",
    "VoiceTarget",
    "WeComTarget",
    "WebhookTarget",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookTarget:
    """An HTTP endpoint that takes signed notifications for one person (their phone app's gateway).

    ``secret`` keys the HMAC-SHA256 signature; it is excluded from ``repr`` so it never reaches a log.
    """

    url: str
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"WebhookTarget.url must be an http(s) URL with a host, got {self.url!r}")
        if not self.secret:
            raise ValueError(f"WebhookTarget for {self.url!r} needs a non-empty secret")


@dataclass(frozen=True, slots=True, kw_only=True)
class WeComTarget:
    """A WeCom (企业微信) group robot: ``url`` is the robot endpoint, ``key`` the robot's key (a secret)."""

    url: str
    key: str = field(repr=False)

    def __post_init__(self) -> None:
        _http_url(self.url, "WeComTarget")
        if not self.key:
            raise ValueError(f"WeComTarget for {self.url!r} needs the robot's key")


@dataclass(frozen=True, slots=True, kw_only=True)
class DingTalkTarget:
    """A DingTalk (钉钉) custom robot with signing on: ``access_token`` names the robot, ``secret`` (``SEC…``) signs
    each request; both are secrets."""

    url: str
    access_token: str = field(repr=False)
    secret: str = field(repr=False)

    def __post_init__(self) -> None:
        _http_url(self.url, "DingTalkTarget")
        if not self.access_token or not self.secret:
            raise ValueError(f"DingTalkTarget for {self.url!r} needs the access token and the signing secret")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailTarget:
    """An email address, reached through the deployment's SMTP server (``alerts.receivers.email``)."""

    address: str

    def __post_init__(self) -> None:
        local, _, domain = self.address.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in self.address):
            raise ValueError(f"EmailTarget needs an address like name@example.cn, got {self.address!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsTarget:
    """A mobile number, reached through the deployment's SMS gateway (``alerts.receivers.sms``); ``+86…`` or 11
    digits."""

    phone: str

    def __post_init__(self) -> None:
        digits = self.phone.removeprefix("+86")
        if not (digits.isdigit() and len(digits) == 11 and digits.startswith("1")):
            raise ValueError(f"SmsTarget needs a mainland mobile number (+86 and 11 digits), got {self.phone!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceTarget:
    """A phone to call and read grade I–II notifications to, through the deployment's voice gateway
    (``alerts.receivers.voice``): a mainland mobile (``+86…`` or 11 digits) or a fixed line with its area code
    (``028-12345678``: the duty phone of a sub-district or district emergency office)."""

    phone: str

    def __post_init__(self) -> None:
        mobile = self.phone.removeprefix("+86")
        fixed = self.phone.replace("-", "", 1)
        if not (
            (mobile.isdigit() and len(mobile) == 11 and mobile.startswith("1"))
            or (fixed.isdigit() and 10 <= len(fixed) <= 12 and fixed.startswith("0") and not fixed.startswith("00"))
        ):
            raise ValueError(
                f"VoiceTarget needs a mainland mobile (+86 and 11 digits) or a fixed line with its area code "
                f"(028-12345678), got {self.phone!r}"
            )


Target = WebhookTarget | WeComTarget | DingTalkTarget | EmailTarget | SmsTarget | VoiceTarget
"""Where one notification of a person goes: Anju's signed webhook, a WeCom or DingTalk robot, email, SMS or a voice
call."""


def _http_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{what}.url must be an http(s) URL with a host, got {url!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuietHours:
    """A person's quiet hours (local times; an end not after the start runs past midnight): grade IV pages wait
    until they end, and grade III ones too when ``include_grade_iii`` — never grades I–II."""

    start: dt.time
    end: dt.time
    timezone: str = "Asia/Shanghai"
    include_grade_iii: bool = False

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("quiet hours must not start and end at the same time")
        ZoneInfo(self.timezone)

    def until_ms(self, now_ms: int) -> int | None:
        """When the quiet hours around ``now_ms`` end (Unix ms), or None outside them."""
        zone = ZoneInfo(self.timezone)
        now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
        for day in (now.date() - dt.timedelta(days=1), now.date()):
            begins = dt.datetime.combine(day, self.start, zone)
            ends = dt.datetime.combine(day if self.end > self.start else day + dt.timedelta(days=1), self.end, zone)
            if begins <= now < ends:
                return round(ends.timestamp() * 1000)
        return None

    def holds(self, grade_number: int) -> bool:
        """Whether these quiet hours hold back a page of this grade (4 = IV … 1 = I)."""
        return grade_number == 4 or (grade_number == 3 and self.include_grade_iii)

    def muted_by(self, event: RiskEvent, now_ms: int) -> str | None:
        """The ``alerts.silence.Mute`` question, for one person: why a page about ``event`` (at its final grade) is
        held at ``now_ms`` ("quiet hours until 07:00"), or None. Silences and inhibitions drop the event; quiet
        hours hold the page until ``until_ms``."""
        if not self.holds(int(event.grade)) or self.until_ms(now_ms) is None:
            return None
        return f"quiet hours until {self.end.strftime('%H:%M')} ({self.timezone})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """Someone who can be notified: a grid manager, a property company duty desk, an officer."""

    id: str
    name: str
    targets: tuple[Target, ...] = ()
    quiet: QuietHours | None = None
    max_pages_per_hour: int | None = None
    """This person's volume cap for grade IV pages per target and hour (None: the grouping policy's)."""
    target_grades: tuple[frozenset[int] | None, ...] = ()
    """Per target (same order), the grade numbers it is for (4 = IV … 1 = I); None or missing: every grade."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("Person.id must not be empty")
        if len(self.target_grades) > len(self.targets):
            raise ValueError(f"Person {self.id!r}: more target_grades than targets")
        if self.targets and len(self.target_grades) == len(self.targets):
            covered = set().union(*(g if g is not None else {1, 2, 3, 4} for g in self.target_grades))
            if covered != {1, 2, 3, 4}:
                missing = ", ".join(("I", "II", "III", "IV")[n - 1] for n in sorted({1, 2, 3, 4} - covered))
                raise ValueError(f"Person {self.id!r}: no channel for grade {missing}")
        if self.max_pages_per_hour is not None and self.max_pages_per_hour < 1:
            raise ValueError(f"Person {self.id!r}: max_pages_per_hour must be >= 1, got {self.max_pages_per_hour!r}")

    def takes(self, index: int, grade_number: int) -> bool:
        """Whether target ``index`` is for alerts of this grade (4 = IV … 1 = I)."""
        grades = self.target_grades[index] if index < len(self.target_grades) else None
        return grades is None or grade_number in grades


@dataclass(frozen=True, slots=True, kw_only=True)
class Grid:
    """A management grid (网格) and the ids of the people who manage it, first responder first."""

    id: str
    name: str
    managers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Directory:
    """Grids and people, checked for consistency when built.

    Every manager a grid names must be a known person: a typo in the deployment file must fail at start,
    not at three in the morning when the grid's first alert finds nobody to page.
    """

    grids: tuple[Grid, ...]
    people: tuple[Person, ...]
    rosters: tuple[Roster, ...]
    """The rosters as they route now: the deployment file's, with the changes made since (``route_by``)."""
    _grid_index: dict[str, Grid] = field(init=False, repr=False, compare=False)
    _person_index: dict[str, Person] = field(init=False, repr=False, compare=False)
    _roster_of: dict[str, Roster] = field(init=False, repr=False, compare=False)
    _planned: dict[str, Roster] = field(init=False, repr=False, compare=False)

    def __init__(
        self, *, grids: Iterable[Grid] = (), people: Iterable[Person] = (), rosters: Iterable[Roster] = ()
    ) -> None:
        object.__setattr__(self, "grids", tuple(grids))
        object.__setattr__(self, "people", tuple(people))
        object.__setattr__(self, "rosters", tuple(rosters))
        persons: dict[str, Person] = {}
        for person in self.people:
            if person.id in persons:
                raise ValueError(f"Directory: person id {person.id!r} appears twice")
            persons[person.id] = person
        grid_index: dict[str, Grid] = {}
        for grid in self.grids:
            if grid.id in grid_index:
                raise ValueError(f"Directory: grid id {grid.id!r} appears twice")
            for manager in grid.managers:
                if manager not in persons:
                    raise ValueError(f"Directory: grid {grid.id!r} names unknown manager {manager!r}")
            grid_index[grid.id] = grid
        roster_of: dict[str, Roster] = {}
        for roster in self.rosters:
            for person_id in roster.people():
                if person_id not in persons:
                    raise ValueError(f"Directory: roster {roster.id!r} names unknown person {person_id!r}")
            for grid_id in roster.grids:
                if grid_id not in grid_index:
                    raise ValueError(f"Directory: roster {roster.id!r} covers unknown grid {grid_id!r}")
                if grid_id in roster_of:
                    raise ValueError(
                        f"Directory: grid {grid_id!r} is in rosters {roster_of[grid_id].id!r} and {roster.id!r}"
                    )
                roster_of[grid_id] = roster
        object.__setattr__(self, "_grid_index", grid_index)
        object.__setattr__(self, "_person_index", persons)
        object.__setattr__(self, "_roster_of", roster_of)
        object.__setattr__(self, "_planned", {roster.id: roster for roster in self.rosters})

    def roster(self, roster_id: str) -> Roster | None:
        """The roster ``roster_id`` as it routes now, or None."""
        return next((r for r in self.rosters if r.id == roster_id), None)

    def planned_roster(self, roster_id: str) -> Roster | None:
        """The roster ``roster_id`` as the deployment file has it (before any change through the API), or None."""
        return self._planned.get(roster_id)

    def amended(
        self,
        roster_id: str,
        *,
        holidays: Mapping[dt.date, tuple[str, ...]],
        overrides: Mapping[tuple[dt.date, str], str],
    ) -> Roster:
        """The file's roster ``roster_id`` plus ``holidays`` and ``overrides`` (each replacing the file's entry for the
        same date, or date and shift): the duty changes made at run time (a swap, a sick day, a holiday rota). Only
        built and checked here; ``route_by`` puts it to use.

        ValueError, its message starting with the field at fault, for an unknown roster, shift or person, a person
        with no channel to be paged on, or a holiday with nobody on duty."""
        planned = self._planned.get(roster_id)
        if planned is None:
            raise ValueError(f"roster: no roster {roster_id!r}")
        shifts = {shift.name for shift in planned.shifts}
        for (day, shift_name), person in overrides.items():
            if shift_name not in shifts:
                raise ValueError(f"shift: roster {roster_id!r} has no shift {shift_name!r} (it has {sorted(shifts)})")
            self._check_reachable(person, f"the {day} {shift_name} shift")
        for day, people in holidays.items():
            if not people:
                raise ValueError(f"people: the holiday {day} would leave roster {roster_id!r} with nobody on duty")
            for person in people:
                self._check_reachable(person, f"the holiday {day}")
        return dataclasses.replace(
            planned, holidays={**planned.holidays, **holidays}, overrides={**planned.overrides, **overrides}
        )

    def _check_reachable(self, person_id: str, where: str) -> None:
        person = self._person_index.get(person_id)
        if person is None:
            raise ValueError(f"person: no person {person_id!r} in the directory ({where})")
        if not person.targets:
            raise ValueError(f"person: {person_id!r} has no channel to be paged on ({where}): nobody would be reached")

    def route_by(self, roster: Roster) -> None:
        """Route the grids of ``roster`` (one of this directory's, by id, e.g. from ``amended``) by it from now on.
        The one change made to a directory while the hub runs — in place, so the alert service, the emergency desk
        and the API, which share it, page by the new duty at once."""
        if roster.id not in self._planned or roster.grids != self._planned[roster.id].grids:
            raise ValueError(f"roster: {roster.id!r} is not one of the directory's rosters (or covers other grids)")
        object.__setattr__(self, "rosters", tuple(roster if r.id == roster.id else r for r in self.rosters))
        for grid_id in roster.grids:
            self._roster_of[grid_id] = roster

    def managers_for(self, grid_id: str) -> tuple[Person, ...]:
        """The people managing ``grid_id``, in configured order; empty for an unknown grid.

        An empty answer is the caller's to log and count as unrouted (the alert is still recorded).
        """
        grid = self._grid_index.get(grid_id)
        if grid is None:
            return ()
        return tuple(self._person_index[m] for m in grid.managers)

    def on_duty(self, grid_id: str, now_ms: int) -> tuple[Person, ...]:
        """Who answers first for ``grid_id`` at ``now_ms``: its roster's person on duty (or the roster's fallback)
        when a roster covers the grid, else all its managers."""
        roster = self._roster_of.get(grid_id)
        if roster is None:
            return self.managers_for(grid_id)
        people, _ = roster.on_duty(now_ms)
        return tuple(self._person_index[p] for p in people)

    def grid(self, grid_id: str) -> Grid | None:
        """The grid with ``grid_id``, or None."""
        return self._grid_index.get(grid_id)

    def person(self, person_id: str) -> Person | None:
        """The person with ``person_id``, or None when the directory no longer lists them."""
        return self._person_index.get(person_id)
