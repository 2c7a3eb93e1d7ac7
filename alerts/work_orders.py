"""Work orders: coordinated remediation (协同整治) dispatched from an alert to the departments that fix it (issue 6).

A gas alarm's fix belongs to the gas company, a tripped residual-current breaker to the power supply, a blocked
fire lane to urban management. From an alert, a person dispatches a work order to a department with a task and a
deadline; the department's people are paged with it. The order goes dispatched → accepted → done (with after
evidence) → verified (by the committee or the property company), or is rejected back to dispatched, or
cancelled. Evidence (photo or document links, before and after) is kept with the order. An alert closes only when
every one of its work orders is verified or cancelled; verifying the last one of a verified alert closes it.
An order not done by its deadline pages the alert's people and the department again (once per deadline).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

__all__ = ["DEPARTMENT_KINDS", "Department", "Evidence", "WorkOrder", "WorkOrderState"]

DEPARTMENT_KINDS = ("property", "gas", "power", "fire", "urban-management", "water", "other")
"""The departments a community works with (issue 6): property company, gas company, power supply, fire, urban
management, water supply; ``other`` for the rest."""


class WorkOrderState(enum.StrEnum):
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    DONE = "done"
    VERIFIED = "verified"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """No more work expected: verified or cancelled."""
        return self in (WorkOrderState.VERIFIED, WorkOrderState.CANCELLED)


_W = WorkOrderState
STEPS: dict[WorkOrderState, frozenset[WorkOrderState]] = {
    _W.DISPATCHED: frozenset({_W.ACCEPTED, _W.CANCELLED}),
    _W.ACCEPTED: frozenset({_W.DONE, _W.CANCELLED}),
    _W.DONE: frozenset({_W.VERIFIED, _W.DISPATCHED}),  # verified, or rejected: back to the department
    _W.VERIFIED: frozenset(),
    _W.CANCELLED: frozenset(),
}
"""Steps people may take (DONE → DISPATCHED is a rejection: the fix did not hold, the department goes again)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Department:
    """A department of the deployment: ``kind`` one of ``DEPARTMENT_KINDS``, ``people`` paged with its orders."""

    id: str
    name: str
    kind: str
    people: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in DEPARTMENT_KINDS:
            raise ValueError(f"department {self.id!r}: kind must be one of {', '.join(DEPARTMENT_KINDS)}")
        if not self.people:
            raise ValueError(f"department {self.id!r} names nobody to page")


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """A link to a photo or document, ``before`` or ``after`` the work, added by ``by`` at ``time_ms``."""

    phase: str
    url: str
    by: str
    time_ms: int
    note: str = ""

    def __post_init__(self) -> None:
        if self.phase not in ("before", "after"):
            raise ValueError("evidence phase must be 'before' or 'after'")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"evidence must be an http(s) link, got {self.url!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkOrder:
    """One task for one department, from one alert."""

    id: str = field(default_factory=lambda: f"wo-{secrets.token_hex(8)}")
    alert_id: str
    department: str
    task: str
    state: WorkOrderState = WorkOrderState.DISPATCHED
    due_ms: int
    created_by: str
    created_ms: int
    updated_ms: int
    reminded_due_ms: int | None = None
    """The deadline already reminded of (so an overdue order pages once per deadline, restarts included)."""
    evidence: tuple[Evidence, ...] = ()

    def __post_init__(self) -> None:
        if not self.task or not self.created_by:
            raise ValueError("a work order needs a task and who dispatched it")
        if self.due_ms <= self.created_ms:
            raise ValueError("a work order's deadline must be after it is dispatched")
