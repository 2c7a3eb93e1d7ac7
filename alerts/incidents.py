"""Emergency mode (Art. 25): an incident declared for an area, the alerts in it, and who is safe (issue 6).

When a fire, a flood or an epidemic strikes, the community committee declares an incident for an area — grids of the
community, or all of it. While it is active, every alert of the area (those open when it is declared, and every one
opened after) is attached to it, so the incident board shows them together. Staff and volunteers collect each
household's status — safe, needs help, unreachable — with a note and, for an epidemic, the fields the health
authorities ask for (the incident's ``fields``: each report must give them); a second person verifies a report. The
register exports as CSV and as counts for the sub-district's report. Declaring, each report, each verification and
closing are audited.
"""

from __future__ import annotations

import csv
import enum
import io
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "HouseholdStatus",
    "Incident",
    "IncidentKind",
    "ResidentReport",
    "check_values",
    "export_csv",
    "register_csv",
    "summary",
]

IncidentKind = Literal["fire", "flood", "gas", "earthquake", "epidemic", "power-outage", "other"]


class HouseholdStatus(enum.StrEnum):
    SAFE = "safe"
    NEEDS_HELP = "needs-help"
    UNREACHABLE = "unreachable"

    @property
    def label_zh(self) -> str:
        return {"safe": "平安", "needs-help": "需要帮助", "unreachable": "联系不上"}[self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Incident:
    """A declared incident for an area: ``grids`` (empty: the whole community), narrowed to ``buildings`` when given
    (the buildings alerts name as ``RiskEvent.place``: a fire in one building, not its whole grid)."""

    id: str = field(default_factory=lambda: f"inc-{secrets.token_hex(8)}")
    community: str
    kind: IncidentKind
    title: str
    grids: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()
    """Fields every household report must give (an epidemic's: e.g. ``temperature``, ``symptoms``)."""
    declared_by: str
    declared_ms: int
    closed_by: str | None = None
    closed_ms: int | None = None
    alerts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.title or not self.declared_by:
            raise ValueError("an incident needs a title and who declared it")

    @property
    def active(self) -> bool:
        return self.closed_ms is None

    def covers(self, community: str, grid: str, place: str = "") -> bool:
        """Whether an alert of ``community``, ``grid`` and ``place`` (its building) is in the incident's area."""
        return (
            community == self.community
            and (not self.grids or grid in self.grids)
            and (not self.buildings or place in self.buildings)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResidentReport:
    """The latest status of one household (``household``: building and flat, e.g. ``2栋502``)."""

    incident_id: str
    household: str
    status: HouseholdStatus
    note: str = ""
    values: Mapping[str, str] = field(default_factory=dict)
    reported_by: str
    reported_ms: int
    verified_by: str | None = None
    verified_ms: int | None = None

    def __post_init__(self) -> None:
        if not self.household or not self.reported_by:
            raise ValueError("a report needs the household and who reported it")


def check_values(incident: Incident, values: Mapping[str, str]) -> None:
    """ValueError naming the fields an epidemic's report lacks or does not know."""
    missing = [name for name in incident.fields if not values.get(name)]
    unknown = [name for name in values if name not in incident.fields]
    if missing:
        raise ValueError(f"the report lacks {', '.join(missing)} (the incident's fields)")
    if unknown:
        raise ValueError(f"the incident collects no {', '.join(unknown)}")


def summary(reports: Iterable[ResidentReport]) -> dict[str, int]:
    """Households by status, and how many reports are verified."""
    counts = {status.value: 0 for status in HouseholdStatus}
    verified = total = 0
    for report in reports:
        counts[report.status.value] += 1
        total += 1
        verified += report.verified_ms is not None
    return {**counts, "households": total, "verified": verified}


def export_csv(incident: Incident, reports: Sequence[ResidentReport], time_text: Callable[[int], str]) -> str:
    """The register as CSV (UTF-8 with a BOM so spreadsheet programs read the Chinese), one row per household."""
    return register_csv(incident.fields, [("", r) for r in reports], time_text, with_community=False)


def register_csv(
    fields: Sequence[str],
    reports: Iterable[tuple[str, ResidentReport]],
    time_text: Callable[[int], str],
    *,
    with_community: bool,
) -> str:
    """``(community, report)`` rows as the register's CSV, sorted by community and household; ``with_community``
    adds the community as the first column (one incident declared in several communities, hub/district/)."""
    out = io.StringIO()
    writer = csv.writer(out)
    first = ["community"] if with_community else []
    writer.writerow([*first, "household", "status", "status_zh", "note", *fields, "reported_by", "reported_at",
                     "verified_by", "verified_at"])  # fmt: skip
    for community, r in sorted(reports, key=lambda row: (row[0], row[1].household)):
        writer.writerow([
            *([community] if with_community else []),
            r.household, r.status.value, r.status.label_zh, r.note, *(r.values.get(f, "") for f in fields),
            r.reported_by, time_text(r.reported_ms), r.verified_by or "",
            time_text(r.verified_ms) if r.verified_ms is not None else "",
        ])  # fmt: skip
    return "\ufeff" + out.getvalue()
