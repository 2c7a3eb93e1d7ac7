"""Who is paged when nobody answers: the escalation chain and the answer deadline of each grade (issue 6).

Level 0 of every chain is the alert's grid: its managers (the grid manager on duty answers first). The levels after
it come from the deployment, in order — typically the property company's duty desk and the community committee,
then the sub-district, then the district emergency office (SENSORS.md "Grades": who acts first at each grade).
An alert nobody acknowledges within its grade's answer deadline climbs one level, and everyone reached so far is
paged again; past the top, the whole chain is paged again at every deadline until someone answers. Grade I pages
every level at once (SENSORS.md: grade I needs everyone, at once). An acknowledged alert nobody reports on site
for within the grade's on-site deadline pages everyone reached again, at every such deadline; a resolved alert
whose condition is still in alarm ``reopen_after_ms`` later reopens.

Plain values, checked against the :class:`alerts.directory.Directory` when the service starts (a level naming an
unknown person must fail at start, not at the first escalation at night).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from alerts.directory import Directory, Person
from alerts.model import Grade

__all__ = [
    "DEFAULT_ANSWER_WITHIN_MS",
    "DEFAULT_ON_SITE_WITHIN_MS",
    "DEFAULT_REOPEN_AFTER_MS",
    "EscalationLevel",
    "EscalationPolicy",
]

MINUTE_MS = 60_000

DEFAULT_ANSWER_WITHIN_MS: Mapping[Grade, int] = {
    Grade.IV: 24 * 60 * MINUTE_MS,
    Grade.III: 5 * MINUTE_MS,
    Grade.II: MINUTE_MS,
    Grade.I: MINUTE_MS,
}
"""SENSORS.md "Grades", answer target: IV acknowledged within 24 h (GB/T 45839 allows 24 h for a communication
fault), III within 5 min, II within 1 min [D]; grade I is paged to every level at once and reminded as often as II."""

DEFAULT_ON_SITE_WITHIN_MS: Mapping[Grade, int] = {
    Grade.IV: 24 * 60 * MINUTE_MS,
    Grade.III: 15 * MINUTE_MS,
    Grade.II: 3 * MINUTE_MS,
    Grade.I: 3 * MINUTE_MS,
}
"""SENSORS.md "Grades": III on site within 15 min [D]; II the micro fire station on scene within 3 min
[S: 社区微型消防站建设标准], I the same; IV a maintenance visit within the 24 h answer target. An acknowledged
alert nobody reported on site for by then pages everyone reached again: an acknowledgement is not forever."""

DEFAULT_REOPEN_AFTER_MS = 10 * MINUTE_MS
"""A resolved alert whose condition is still in alarm this long after it was resolved reopens [D]: the rules clear
within their hold and delay-off times (seconds to minutes), so a condition still firing 10 min later was not fixed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EscalationLevel:
    """One step of the chain after the grid: ``people`` are person ids of the directory, paged together."""

    id: str
    name: str
    people: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise ValueError("an escalation level needs an id and a name")
        if not self.people:
            raise ValueError(f"escalation level {self.id!r} names nobody")


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """The chain after the grid (``levels``, lowest first) and each grade's answer deadline in ms."""

    levels: tuple[EscalationLevel, ...]
    answer_within_ms: Mapping[Grade, int]
    on_site_within_ms: Mapping[Grade, int]
    reopen_after_ms: int

    def __init__(
        self,
        levels: Iterable[EscalationLevel] = (),
        answer_within_ms: Mapping[Grade, int] | None = None,
        *,
        on_site_within_ms: Mapping[Grade, int] | None = None,
        reopen_after_ms: int = DEFAULT_REOPEN_AFTER_MS,
    ) -> None:
        answer = _per_grade("answer", DEFAULT_ANSWER_WITHIN_MS, answer_within_ms)
        on_site = _per_grade("on-site", DEFAULT_ON_SITE_WITHIN_MS, on_site_within_ms)
        if reopen_after_ms < 1:
            raise ValueError(f"reopen_after_ms must be at least 1 ms, got {reopen_after_ms!r}")
        levels = tuple(levels)
        ids = [level.id for level in levels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"escalation level ids repeat: {ids}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "answer_within_ms", answer)
        object.__setattr__(self, "on_site_within_ms", on_site)
        object.__setattr__(self, "reopen_after_ms", reopen_after_ms)

    @property
    def top(self) -> int:
        """The highest level number (0 when the chain is the grid alone)."""
        return len(self.levels)

    def check(self, directory: Directory) -> None:
        """Raise ValueError naming a level whose person the directory does not know."""
        for level in self.levels:
            for person in level.people:
                if directory.person(person) is None:
                    raise ValueError(f"escalation level {level.id!r} names unknown person {person!r}")

    def start_level(self, grade: Grade) -> int:
        """The level an alert of ``grade`` starts at: the grid, or every level at once for grade I."""
        return self.top if grade is Grade.I else 0

    def deadline_ms(self, grade: Grade) -> int:
        """How long an alert of ``grade`` may wait for an acknowledgement (ms)."""
        return self.answer_within_ms[grade]

    def on_site_ms(self, grade: Grade) -> int:
        """How long after the acknowledgement someone must report on site (ms)."""
        return self.on_site_within_ms[grade]

    def level_name(self, level: int, grid_name: str) -> str:
        """What level ``level`` is called: the grid's name for 0."""
        return grid_name if level == 0 else self.levels[level - 1].name

    def reached(
        self, directory: Directory, grid: str, level: int, now_ms: int, *, first: Sequence[Person] | None = None
    ) -> tuple[Person, ...]:
        """Everyone paged once an alert of ``grid`` has reached ``level`` at ``now_ms``: ``first`` (default the
        grid's person on duty, its managers without a roster), then each level's people up to ``level``, each
        person once, in order."""
        head = directory.on_duty(grid, now_ms) if first is None else first
        people: dict[str, Person] = {p.id: p for p in head}
        for step in self.levels[: max(0, level)]:
            for person_id in step.people:
                person = directory.person(person_id)
                if person is not None:
                    people.setdefault(person_id, person)
        return tuple(people.values())


def _per_grade(what: str, defaults: Mapping[Grade, int], given: Mapping[Grade, int] | None) -> dict[Grade, int]:
    chosen = dict(defaults)
    chosen.update(given or {})
    for grade, ms in chosen.items():
        if not isinstance(grade, Grade) or ms < 1:
            raise ValueError(f"{what} deadline of grade {grade!r} must be at least 1 ms, got {ms!r}")
    return chosen
