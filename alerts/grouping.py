"""Grouping and volume caps: how many pages one person gets when many alerts change at once.

A building on fire makes hundreds of alerts (every smoke, heat and CO detector, each rule, clearing and
firing again) — thousands of changes a minute. Paging each one would bury the fire under its own echo and hit
the channels' own limits (a WeCom robot takes 20 messages a minute). Alertmanager's answer, kept here:
notifications of one *group* to one person's target are sent together, at most one page per group interval.

* A group is the place and the grade: ``{grade}:{community}/{place}`` (the building, else the grid). Pages of one
  grade never wait for another grade's window — an alert upgraded from IV to III is paged at once, not held in the
  IV window — and another building's alerts are another group: a second incident elsewhere is paged at once.
* The first page of a group goes at once (after ``group_wait_s``, default 0: a safety system does not hold the
  first alarm); changes within the next group interval wait for its end and go as one digest, and so on. For
  grades I–III the interval is at most 14 s (default 10 s), so every change still reaches a person within
  GB/T 45839's 15 s; grade IV waits up to 5 min (Alertmanager's default group interval).
* A per-person cap (``max_pages_per_hour``) holds grade IV pages beyond it until the hour of the oldest counted
  page is over, then sends them as one digest. Grades I–III are grouped but never capped: they must reach a person
  within 15 s. Their pages count towards the cap, so a storm of them holds the maintenance pages back.

The windows live in memory and are rebuilt at start from the outbox (``page_ms`` of recent notifications), so a
restart neither repeats nor loses a window.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from alerts.model import Alert, Grade

__all__ = ["GroupingPolicy", "PageWindows", "group_of"]

HOUR_MS = 3_600_000

DEFAULT_INTERVAL_S: Mapping[Grade, float] = {Grade.I: 10.0, Grade.II: 10.0, Grade.III: 10.0, Grade.IV: 300.0}
MAX_PUSH_S = 14.0
"""The longest group interval allowed for grades I–III: GB/T 45839-2025 gives the platform 15 s to reach the people
responsible for an alarm (SENSORS.md: III "push ≤ 15 s"), and a change held for a window must still make it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupingPolicy:
    """How notifications are grouped (seconds; ``max_pages_per_hour`` per person and target, None: no cap)."""

    group_wait_s: float = 0.0
    interval_s: Mapping[Grade, float] = field(default_factory=lambda: dict(DEFAULT_INTERVAL_S))
    """Between two pages of one group, per grade (missing grades: the default): at most ``MAX_PUSH_S`` for I–III,
    whose every change must reach a person within GB/T 45839's 15 s; IV has Alertmanager's default 5 min."""
    max_pages_per_hour: int | None = 30

    def __post_init__(self) -> None:
        if not 0 <= self.group_wait_s <= MAX_PUSH_S:
            raise ValueError(
                f"group_wait_s must be in [0, {MAX_PUSH_S:g}] (GB/T 45839's 15 s), got {self.group_wait_s!r}"
            )
        for grade, value in self.interval_s.items():
            if not isinstance(grade, Grade) or not 0 <= value <= 86_400:
                raise ValueError(f"interval_s[{grade!r}] must be seconds in [0, 86400], got {value!r}")
            if grade <= Grade.III and value > MAX_PUSH_S:
                raise ValueError(
                    f"interval_s[{grade.name}] must be at most {MAX_PUSH_S:g} s (GB/T 45839: an alarm reaches the "
                    f"people responsible within 15 s), got {value!r}"
                )
        if self.max_pages_per_hour is not None and self.max_pages_per_hour < 1:
            raise ValueError(f"max_pages_per_hour must be >= 1, got {self.max_pages_per_hour!r}")

    def interval_ms(self, grade: Grade) -> int:
        """The group interval of a grade's group (ms)."""
        return round(1000 * self.interval_s.get(grade, DEFAULT_INTERVAL_S[grade]))

    @property
    def longest_ms(self) -> int:
        """How far back a window or a counted page can matter (ms): windows to rebuild at start."""
        return max(*(self.interval_ms(g) for g in Grade), HOUR_MS)


def group_of(alert: Alert) -> str:
    """The notification group of ``alert``: grade, community and place (the building; the grid when the producer
    did not name a place)."""
    place = alert.last_event.place or f"grid:{alert.grid}"
    return f"{alert.grade.name}:{alert.community}/{place}"


OVER_CAP = "over-cap"
"""The group of a person's grade IV pages held back by their cap: one digest when the cap's hour is over."""


class PageWindows:
    """When each new notification may be sent, per (person, target, group): the group windows and the caps.

    ``schedule`` is called once per new notification, in order, by one writer (the service's mutex).
    """

    def __init__(self, policy: GroupingPolicy) -> None:
        self.policy = policy
        self._latest: dict[tuple[str, int, str], int] = {}
        """The page time of each lane's newest window (ms)."""
        self._pages: dict[tuple[str, int], list[int]] = {}
        """Each person and target's page times (new windows, sorted) within the last hour."""

    def load(self, pages: Iterable[tuple[str, int, str, int]]) -> None:
        """Rebuild from the outbox's recent (person, target, group, page_ms) rows."""
        for person, target, group, page_ms in pages:
            lane = (person, target, group)
            if page_ms > self._latest.get(lane, -1):
                self._latest[lane] = page_ms
            times = self._pages.setdefault((person, target), [])
            if page_ms not in times:
                bisect.insort(times, page_ms)

    def schedule(
        self,
        person: str,
        target: int,
        group: str,
        grade: Grade,
        ready_ms: int,
        *,
        cap: int | None = None,
        min_interval_ms: int = 0,
    ) -> tuple[str, int]:
        """The (group, page time in ms) of a notification ready to go at ``ready_ms`` (now, or when quiet hours
        end). It joins its group's pending page when there is one, else opens the next window; a grade IV
        page over the person's cap (``cap``, else the policy's) joins their over-cap digest instead.
        ``min_interval_ms`` lengthens the group interval for a channel that cannot take pages faster (a voice call
        provider: one call a minute to a number)."""
        lane = (person, target, group)
        latest = self._latest.get(lane)
        if latest is not None and latest > ready_ms:
            return group, latest  # a page of the group is still to come: ride along (one due now may be gone)
        interval = max(self.policy.interval_ms(grade), min_interval_ms)
        if latest is not None and ready_ms < latest + interval:
            page_ms = latest + interval
        else:
            page_ms = ready_ms + round(self.policy.group_wait_s * 1000)
        cap = cap if cap is not None else self.policy.max_pages_per_hour
        times = self._pages.setdefault((person, target), [])
        del times[: bisect.bisect_left(times, page_ms - HOUR_MS)]
        if cap is not None and grade is Grade.IV and len(times) >= cap:
            over = (person, target, OVER_CAP)
            held = self._latest.get(over)
            if held is None or held <= ready_ms:
                held = max(page_ms, times[-cap] + HOUR_MS)
                self._latest[over] = held
                bisect.insort(times, held)
            return OVER_CAP, held
        self._latest[lane] = page_ms
        bisect.insort(times, page_ms)
        return group, page_ms

    def forget_before(self, now_ms: int) -> None:
        """Drop windows that can no longer matter (older than the longest interval and the cap's hour)."""
        horizon = now_ms - self.policy.longest_ms
        self._latest = {lane: t for lane, t in self._latest.items() if t >= horizon}
        for key in [k for k, times in self._pages.items() if not times or times[-1] < horizon]:
            del self._pages[key]
