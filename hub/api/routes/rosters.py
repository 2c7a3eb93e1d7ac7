"""``/api/v1/rosters/{id}``: one duty roster, and the duty changes made on top of the deployment file's plan.

``POST /rosters/{id}/changes`` gives one shift of one day to someone else (a swap, a sick day: ``shift`` named,
``people`` one person) or puts ``people`` on duty for every shift of a day (a holiday rota: ``shift`` null); it replaces
an earlier change of the same day and shift. ``POST /rosters/{id}/changes/undo`` drops one, so the file's plan holds
again. Each is stored in the alert store with a row in the hash-chained audit log (``GET /audit``, subject: the
roster's id) and routes the next page at once (``alerts.duty``). Admins and the community committee make them; every
other role reads the rosters of its grids only.

A change is refused as a problem naming the field: ``person``/``people`` (not in the deployment, no channel to be
paged on, nobody on duty), ``shift`` (not one of the roster's), ``day`` (past, or more than a year ahead).
"""

import datetime as dt
import time

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from alerts.duty import RosterNotFoundError
from hub.api.deps import Authorized, CurrentPrincipal, RuntimeDep, acting_as, requires
from hub.api.problems import ParameterProblem
from hub.api.routes.community import RosterPublic, roster_public
from hub.identity import Principal, Role
from hub.runtime import Runtime

router = APIRouter(tags=["rosters"], dependencies=[Authorized])

_EDITORS = Depends(requires(Role.ADMIN, Role.COMMUNITY_COMMITTEE))
"""Who may change a roster: the admin, and the community committee (its community: one per hub)."""

Id = str


class ChangeIn(BaseModel):
    by: str = Field(min_length=1, max_length=64, description="person id of who makes the change")
    day: dt.date = Field(description="the date the shift starts on (the roster's time zone)")
    shift: str | None = Field(
        default=None, min_length=1, max_length=64, description="the shift's name; null: a holiday (the whole day)"
    )
    people: list[Id] = Field(min_length=1, max_length=20, description="who is on duty instead (one person for a shift)")
    note: str = Field(default="", max_length=500, description="why, e.g. 王丽病假 / sick leave")


class UndoIn(BaseModel):
    by: str = Field(min_length=1, max_length=64)
    day: dt.date
    shift: str | None = Field(default=None, min_length=1, max_length=64, description="null: the holiday")
    note: str = Field(default="", max_length=500)


def _in_view(runtime: Runtime, principal: Principal, roster_id: str) -> None:
    roster = runtime.directory.roster(roster_id)
    scope = principal.scope
    if roster is None or not (
        scope.community_wide or any(g in scope.grids or scope.sees_grid_sensors(g) for g in roster.grids)
    ):
        raise HTTPException(404, f"no roster {roster_id!r}")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _refused(exc: ValueError, body: BaseModel) -> ParameterProblem:
    """The service's refusal (its message starts with the field at fault) as a 422 naming that body field."""
    field, _, why = str(exc).partition(": ")
    field = "people" if field == "person" else field
    if not why or field not in type(body).model_fields:
        return ParameterProblem(422, "body", "", str(exc), where="body")
    return ParameterProblem(422, field, str(getattr(body, field)), why, where="body")


@router.get("/rosters/{roster_id}")
async def get_roster(runtime: RuntimeDep, principal: CurrentPrincipal, roster_id: str) -> RosterPublic:
    """The roster with who is on duty now, and the changes made to it (404 for a roster of grids out of view)."""
    _in_view(runtime, principal, roster_id)
    roster = runtime.directory.roster(roster_id)
    assert roster is not None
    return roster_public(runtime, roster, _now_ms())


@router.post("/rosters/{roster_id}/changes", dependencies=[_EDITORS])
async def change_roster(
    runtime: RuntimeDep, principal: CurrentPrincipal, roster_id: str, body: ChangeIn
) -> RosterPublic:
    """A swap (``shift`` and one person) or a holiday rota (``shift`` null), in force for the next page."""
    _in_view(runtime, principal, roster_id)
    by = acting_as(principal, body.by)
    try:
        roster = await runtime.duty.change(
            roster_id, day=body.day, shift=body.shift, people=body.people, by=by, note=body.note
        )
    except RosterNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise _refused(exc, body) from None
    return roster_public(runtime, roster, _now_ms())


@router.post("/rosters/{roster_id}/changes/undo", dependencies=[_EDITORS])
async def undo_change(runtime: RuntimeDep, principal: CurrentPrincipal, roster_id: str, body: UndoIn) -> RosterPublic:
    """Drop the change of ``day`` and ``shift`` (null: the holiday): the file's plan holds again (404: no such
    change)."""
    _in_view(runtime, principal, roster_id)
    by = acting_as(principal, body.by)
    try:
        roster = await runtime.duty.undo(roster_id, day=body.day, shift=body.shift, by=by, note=body.note)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ValueError as exc:
        raise _refused(exc, body) from None
    return roster_public(runtime, roster, _now_ms())
