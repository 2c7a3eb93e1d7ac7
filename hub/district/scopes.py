"""Who sees which communities on the district node: the shard map's sub-districts, as ``ScopeRules``."""

from __future__ import annotations

from hub.identity.roles import Role
from hub.identity.scope import Scope
from hub.shards import ShardMap

__all__ = ["DISTRICT_ROLES", "DistrictScopes"]

DISTRICT_ROLES = frozenset({Role.ADMIN, Role.SUB_DISTRICT, Role.EMERGENCY_OFFICE})
"""The roles with a user on the district node; the others work inside one community, on its hub."""


class DistrictScopes:
    """A sub-district's user stands for a sub-district of the shard map (its id as the user's person) and sees its
    communities, each whole; an admin or the emergency office sees every community."""

    def __init__(self, shards: ShardMap) -> None:
        self._of = {key: frozenset(entry.communities) for key, entry in shards.sub_districts.items()}

    def person_problem(self, role: Role, person: str | None) -> str | None:
        if role not in DISTRICT_ROLES:
            return (
                f"a {role.value} works in one community: give them a user on that community's hub; the district "
                f"node has {', '.join(sorted(r.value for r in DISTRICT_ROLES))}"
            )
        if role is Role.SUB_DISTRICT:
            if person is None or person not in self._of:
                known = ", ".join(sorted(self._of)) or "none in the shard map"
                return f"a sub-district user must be linked to a sub-district of the shard map ({known})"
            return None
        if person is not None:
            return f"a {role.value} sees every community; link no person"
        return None

    def scope(self, role: Role, person: str | None) -> Scope:
        if role in (Role.ADMIN, Role.EMERGENCY_OFFICE):
            return Scope(community_wide=True)
        if role is Role.SUB_DISTRICT and person is not None:
            return Scope(community_wide=True, communities=self._of.get(person, frozenset()))
        return Scope(community_wide=False, sees_incidents=False, communities=frozenset())
