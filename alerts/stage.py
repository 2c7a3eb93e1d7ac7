"""Stages in front of dedup and grading (Prometheus Alertmanager's pipeline shape, kept small).

A stage takes a risk event and returns it (possibly enriched) or None to stop it — a silence, an
inhibition by a wider alert, a maintenance window. :class:`alerts.service.AlertService` runs its stages in
order; the first None ends the event's path (and is counted as muted). ``sequence``, ``fan_out`` and ``route`` build
one stage out of several. Routing to people stays with the directory, rosters and escalation chains, delivery with
the receivers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from alerts.model import RiskEvent

__all__ = ["Stage", "fan_out", "route", "sequence"]


class Stage(Protocol):
    """One step on the event path: pass the event on (or a changed copy), or return None to stop it."""

    async def __call__(self, event: RiskEvent, /) -> RiskEvent | None: ...


def sequence(*stages: Stage) -> Stage:
    """The stages one after another: each gets what the one before passed on; the first None stops the event."""

    async def run(event: RiskEvent, /) -> RiskEvent | None:
        passed: RiskEvent | None = event
        for stage in stages:
            if passed is None:
                return None
            passed = await stage(passed)
        return passed

    return run


def fan_out(*branches: Stage) -> Stage:
    """Every branch gets the event at the same time (a copy to the city platform, a record to a data lake); the
    event itself goes on unchanged whatever they return. A branch that raises raises here: a branch that must not
    hold up alerts handles its own failures."""

    async def run(event: RiskEvent, /) -> RiskEvent | None:
        async with asyncio.TaskGroup() as group:
            for branch in branches:
                group.create_task(branch(event))
        return event

    return run


def route(*routes: tuple[Callable[[RiskEvent], bool], Stage], default: Stage | None = None) -> Stage:
    """The stage of the first route whose predicate holds for the event (``default``, else pass it on, when none
    does): different handling per kind, grid or grade."""

    async def run(event: RiskEvent, /) -> RiskEvent | None:
        for holds, stage in routes:
            if holds(event):
                return await stage(event)
        return await default(event) if default is not None else event

    return run
