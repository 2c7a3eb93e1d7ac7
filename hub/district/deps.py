"""What the district node's routes share: its runtime, and the communities a caller sees or asks for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response

from hub.api.problems import ParameterProblem
from hub.district.declarations import FanOut
from hub.district.reader import DistrictReader, Unavailable
from hub.identity import Identity, Principal
from hub.shards import ShardMap

__all__ = ["UNAVAILABLE_HEADER", "DistrictRuntime", "RuntimeDep", "chosen", "in_view", "say_unavailable"]

UNAVAILABLE_HEADER = "Anju-Unavailable"


@dataclass(frozen=True, slots=True)
class DistrictRuntime:
    shards: ShardMap
    identity: Identity
    reader: DistrictReader
    fan_out: FanOut

    def sub_district_of(self, community: str) -> tuple[str, str] | tuple[None, None]:
        for key, entry in self.shards.sub_districts.items():
            if community in entry.communities:
                return key, entry.name
        return None, None


def _runtime(request: Request) -> DistrictRuntime:
    runtime: DistrictRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[DistrictRuntime, Depends(_runtime)]


def in_view(runtime: DistrictRuntime, principal: Principal) -> list[str]:
    return [c for c in runtime.reader.communities if principal.scope.sees_community(c)]


def chosen(runtime: DistrictRuntime, principal: Principal, community: Sequence[str] | None) -> list[str]:
    """The communities a list covers: those asked for (repeatable ``community``), each of which must be in view —
    one that is not is answered like one that does not exist — or every one in view."""
    seen = in_view(runtime, principal)
    if not community:
        return seen
    for name in community:
        if name not in seen:
            raise ParameterProblem(404, "community", name, f"没有社区 {name} / no community {name!r}")
    return [c for c in seen if c in community]


def say_unavailable(response: Response, missing: Sequence[Unavailable]) -> None:
    if missing:
        response.headers[UNAVAILABLE_HEADER] = ", ".join(m.community for m in missing)
