"""Response-time statistics per grid manager, grid and community (issue 6; Articles 4 and 45: the residents'
satisfaction and the performance assessment of grid management ask how fast alerts were answered).

From the alert database, for alerts opened in a window: how many, how long until acknowledged (接单), until someone
was on site and until resolved (median and 90th percentile, seconds), how many had to be escalated past the grid and
how many were never acknowledged. Grouped by the person who acknowledged (``person``), the grid or the community.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["AlertTimes", "GroupBy", "ResponseStats", "response_stats"]

GroupBy = Literal["person", "grid", "community"]


@dataclass(frozen=True, slots=True)
class AlertTimes:
    """One alert's milestones (Unix ms; None when not reached)."""

    community: str
    grid: str
    grade: int
    opened_ms: int
    acknowledged_by: str | None
    acknowledged_ms: int | None
    on_site_ms: int | None
    resolved_ms: int | None
    level: int


@dataclass(frozen=True, slots=True)
class ResponseStats:
    """One group's figures; times in seconds (None when no alert of the group reached that step)."""

    group: str
    alerts: int
    unacknowledged: int
    escalated: int
    acknowledge_p50_s: float | None
    acknowledge_p90_s: float | None
    on_site_p50_s: float | None
    on_site_p90_s: float | None
    resolve_p50_s: float | None
    resolve_p90_s: float | None


def _quantiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    if len(values) == 1:
        return values[0], values[0]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), cuts[8]


def _since(opened: int, moment: int | None) -> float | None:
    return None if moment is None else max(0, moment - opened) / 1000


def _group_of(alert: AlertTimes, by: GroupBy) -> str:
    if by == "person":
        return alert.acknowledged_by or "-"
    return alert.grid if by == "grid" else alert.community


def response_stats(times: Iterable[AlertTimes], by: GroupBy) -> list[ResponseStats]:
    """The figures of each group, largest group first. By ``person``, unacknowledged alerts form the group "-"."""
    groups: dict[str, list[AlertTimes]] = {}
    for alert in times:
        groups.setdefault(_group_of(alert, by), []).append(alert)
    out = []
    for key, members in groups.items():
        ack = [s for a in members if (s := _since(a.opened_ms, a.acknowledged_ms)) is not None]
        site = [s for a in members if (s := _since(a.opened_ms, a.on_site_ms)) is not None]
        done = [s for a in members if (s := _since(a.opened_ms, a.resolved_ms)) is not None]
        out.append(
            ResponseStats(
                group=key,
                alerts=len(members),
                unacknowledged=sum(1 for a in members if a.acknowledged_ms is None),
                escalated=sum(1 for a in members if a.level > 0),
                acknowledge_p50_s=_quantiles(ack)[0],
                acknowledge_p90_s=_quantiles(ack)[1],
                on_site_p50_s=_quantiles(site)[0],
                on_site_p90_s=_quantiles(site)[1],
                resolve_p50_s=_quantiles(done)[0],
                resolve_p90_s=_quantiles(done)[1],
            )
        )
    return sorted(out, key=lambda s: (-s.alerts, s.group))
