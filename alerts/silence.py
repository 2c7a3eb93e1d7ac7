"""Silences: maintenance windows that mute matching risk events for a set time (issue 6).

A property company testing the smoke detectors of building 2 this afternoon sets a silence for them: their alarms
during the window page nobody. A silence names what it mutes — sensor ids, kinds, grids, key prefixes; every field
given must match, an empty field matches all — and always has an end (at most ``MAX_SILENCE_MS`` after its start:
a silence nobody remembers must not hide a fire next month). Grades I and II are never muted by a silence unless
it says so (``include_grade_ii``): a test window is for test alarms, not for a real fire that happens during it.
Setting and lifting a silence are audited in the alerts' hash-chained log, and each silence counts what it muted.

Silences, inhibitions and (later) quiet hours answer one question, :class:`Mute` — "is this event muted now, and
why?" — so the service treats them alike.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from alerts.model import Grade, RiskEvent

__all__ = ["MAX_SILENCE_MS", "Mute", "Silence", "SilenceMatch"]

MAX_SILENCE_MS = 7 * 24 * 3_600_000
"""The longest silence: a week [D] (a renovation or a detector replacement round; anything longer is a fault to fix,
reported as such, not an alarm to hide)."""


class Mute(Protocol):
    """Something that can mute risk events: silences and inhibitions (the event is dropped), and a person's quiet
    hours (``alerts.directory.QuietHours``: that person's page is held until they end)."""

    def muted_by(self, event: RiskEvent, now_ms: int) -> str | None:
        """Why ``event`` is muted at ``now_ms`` (a short text naming the silence or rule), or None."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class SilenceMatch:
    """What a silence mutes: each non-empty field must match (sensor id, event kind, grid, key prefix)."""

    sensors: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    grids: tuple[str, ...] = ()
    key_prefixes: tuple[str, ...] = ()
    include_grade_ii: bool = False
    """Mute grade II events too (never grade I): for a test of corroborating detectors, say."""

    def __post_init__(self) -> None:
        if not (self.sensors or self.kinds or self.grids or self.key_prefixes):
            raise ValueError("a silence must name at least one sensor, kind, grid or key prefix")
        for name in ("sensors", "kinds", "grids", "key_prefixes"):
            values = getattr(self, name)
            if any(not isinstance(v, str) or not v for v in values):
                raise ValueError(f"silence {name} must be non-empty strings, got {values!r}")

    def matches(self, event: RiskEvent) -> bool:
        if event.grade is Grade.I or (event.grade is Grade.II and not self.include_grade_ii):
            return False
        return (
            (not self.sensors or event.sensor in self.sensors)
            and (not self.kinds or event.kind in self.kinds)
            and (not self.grids or event.grid in self.grids)
            and (not self.key_prefixes or event.key.startswith(self.key_prefixes))
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "sensors": list(self.sensors),
                "kinds": list(self.kinds),
                "grids": list(self.grids),
                "key_prefixes": list(self.key_prefixes),
                "include_grade_ii": self.include_grade_ii,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> SilenceMatch:
        data = json.loads(text)
        return cls(
            sensors=tuple(data.get("sensors", ())),
            kinds=tuple(data.get("kinds", ())),
            grids=tuple(data.get("grids", ())),
            key_prefixes=tuple(data.get("key_prefixes", ())),
            include_grade_ii=bool(data.get("include_grade_ii", False)),
        )

    def describe(self) -> str:
        parts = [
            f"{name} {', '.join(values)}"
            for name, values in (
                ("sensors", self.sensors),
                ("kinds", self.kinds),
                ("grids", self.grids),
                ("keys starting", self.key_prefixes),
            )
            if values
        ]
        return "; ".join(parts) + ("; grade II included" if self.include_grade_ii else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """A maintenance window: ``match`` is muted from ``starts_at_ms`` until ``ends_at_ms`` (Unix ms)."""

    id: str = field(default_factory=lambda: f"si-{secrets.token_hex(8)}")
    match: SilenceMatch
    starts_at_ms: int
    ends_at_ms: int
    created_by: str
    created_ms: int
    reason: str
    cancelled_by: str | None = None
    cancelled_ms: int | None = None
    muted: int = 0
    """Events muted so far."""

    def __post_init__(self) -> None:
        if not self.created_by or not self.reason:
            raise ValueError("a silence needs who set it and why")
        if self.ends_at_ms <= self.starts_at_ms:
            raise ValueError("a silence must end after it starts")
        if self.ends_at_ms - self.starts_at_ms > MAX_SILENCE_MS:
            raise ValueError(f"a silence may last at most {MAX_SILENCE_MS // 3_600_000} h")

    def active(self, now_ms: int) -> bool:
        return self.cancelled_ms is None and self.starts_at_ms <= now_ms < self.ends_at_ms

    def muted_by(self, event: RiskEvent, now_ms: int) -> str | None:
        if self.active(now_ms) and self.match.matches(event):
            return f"silence {self.id} by {self.created_by}: {self.reason}"
        return None


def first_mute(mutes: Iterable[Mute], event: RiskEvent, now_ms: int) -> str | None:
    """The reason of the first of ``mutes`` that mutes ``event``, or None."""
    for mute in mutes:
        why = mute.muted_by(event, now_ms)
        if why is not None:
            return why
    return None
