"""The hazard register (隐患台账): recurring hazards under review, for tiered investigation (分级排查, issue 6).

The same e-bike charging corridor that smokes every winter, the same gas main that leaks after every frost: a
person registers such a hazard — where, what, its grade, its owner, the alerts that showed it — and it is then
reviewed at an interval set by its grade (``REVIEW_EVERY_MS``). A review records who looked, what they found and
moves the next due date; a hazard that is fixed for good is closed. A review that is not done in time raises an
alert of its own (key ``{community}/hazard/{id}/review``, to the hazard's grid), which the next review clears.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from alerts.model import Grade

__all__ = ["REVIEW_EVERY_MS", "Hazard", "HazardState"]

DAY_MS = 86_400_000

REVIEW_EVERY_MS: Mapping[Grade, int] = {
    Grade.I: DAY_MS,
    Grade.II: 7 * DAY_MS,
    Grade.III: 30 * DAY_MS,
    Grade.IV: 90 * DAY_MS,
}
"""Review interval by grade [D]: grade I every day until it is removed, II weekly, III monthly, IV quarterly — the
cadence of the tiered investigation rounds (分级排查) communities run, sharpest for the worst."""


class HazardState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Hazard:
    """One register entry; ``next_review_ms`` is when the next review is due (Unix ms)."""

    id: str = field(default_factory=lambda: f"hz-{secrets.token_hex(8)}")
    community: str
    grid: str
    place: str
    title: str
    grade: Grade
    owner: str
    created_by: str
    created_ms: int
    next_review_ms: int
    state: HazardState = HazardState.OPEN
    last_review_ms: int | None = None
    last_finding: str = ""
    alerts: tuple[str, ...] = ()
    """Ids of the alerts that showed this hazard."""
    overdue_ms: int | None = None
    """The due date whose overdue alert was raised (so one alert per missed review, restarts included)."""

    def __post_init__(self) -> None:
        if not self.title or not self.place or not self.owner or not self.created_by:
            raise ValueError("a hazard needs a title, a place, an owner and who registered it")

    @property
    def review_key(self) -> str:
        """The key of the alert a missed review raises."""
        return f"{self.community}/hazard/{self.id}/review"
