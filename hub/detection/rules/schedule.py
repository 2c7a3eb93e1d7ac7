"""Schedules: a level rule's limits by local time of day and day of week (lower limits at night).

Times are the community's wall-clock time (``RuleSet.timezone``, Asia/Shanghai by default: UTC+8 all year,
no daylight saving since 1991), because people write "22:00–06:00", not UTC. A window whose end is before its
start wraps midnight and belongs to the day it starts on (Friday 22:00 → Saturday 06:00 is Friday's window).
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, tzinfo

from hub.detection.rules.model import DAYS, ScheduleWindow

__all__ = ["LocalClock", "active_window"]


@dataclass(frozen=True, slots=True)
class LocalClock:
    """Unix milliseconds → (weekday 0 = Monday, minute of the day) in the community's time zone."""

    zone: tzinfo

    @classmethod
    def named(cls, name: str) -> LocalClock:
        return cls(zoneinfo.ZoneInfo(name))

    def weekday_minute(self, time_ms: int) -> tuple[int, int]:
        moment = datetime.fromtimestamp(time_ms / 1000, tz=self.zone)
        return moment.weekday(), moment.hour * 60 + moment.minute


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def active_window(windows: tuple[ScheduleWindow, ...], weekday: int, minute: int) -> ScheduleWindow | None:
    """The first window covering ``minute`` (0…1439) of ``weekday`` (0 = Monday), or None."""
    for window in windows:
        start, end = _minutes(window.start), _minutes(window.end)
        if start < end:
            if start <= minute < end and DAYS[weekday] in window.days:
                return window
        elif minute >= start:
            if DAYS[weekday] in window.days:
                return window
        elif minute < end and DAYS[(weekday - 1) % 7] in window.days:
            return window
    return None
