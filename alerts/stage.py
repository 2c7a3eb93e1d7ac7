"""Stages in front of dedup and grading (Prometheus Alertmanager's pipeline shape, kept small).

A stage takes a risk event and returns it (possibly enriched) or None to stop it — a silence, an
inhibition by a wider alert, a maintenance window. :class:`alerts.service.AlertService` runs its stages in
order; the first None ends the event's path (and is counted as muted). Routing to people stays with the
directory (later: duty rosters and escalation chains), delivery with the receivers.
"""

from __future__ import annotations

from typing import Protocol

from alerts.model import RiskEvent

__all__ = ["Stage"]


class Stage(Protocol):
    """One step on the event path: pass the event on (or a changed copy), or return None to stop it."""

    async def __call__(self, event: RiskEvent, /) -> RiskEvent | None: ...
