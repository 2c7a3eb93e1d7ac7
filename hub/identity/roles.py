"""The roles a user or an API token holds, and what each may see at all (hub/identity/scope.py narrows it)."""

from enum import StrEnum

__all__ = ["COMMUNITY_WIDE", "Role"]


class Role(StrEnum):
    """Who someone is in community safety work (DESIGN.md "Who uses it"); the value is the wire and CLI name."""

    ADMIN = "admin"
    """系统管理员: everything, users and tokens included."""
    GRID_MANAGER = "grid_manager"
    """网格员: their grids (as manager or on the grid's duty roster) and the alerts escalated to them."""
    PROPERTY_COMPANY = "property_company"
    """物业: the buildings their property department ``manages`` and the work orders sent to it."""
    COMMUNITY_COMMITTEE = "community_committee"
    """社区居委会: the whole community."""
    SUB_DISTRICT = "sub_district"
    """街道: on a hub, the whole community; on the district node (hub/district/), the communities of its sub-district
    (the person it stands for is the sub-district's id in the shard map)."""
    EMERGENCY_OFFICE = "emergency_office"
    """区应急办: the whole community; on the district node, every community."""
    VOLUNTEER = "volunteer"
    """志愿者: the incidents of the area they cover, nothing of sensors or alerts."""

    @property
    def title_zh(self) -> str:
        return _TITLES_ZH[self]


_TITLES_ZH = {
    Role.ADMIN: "系统管理员",
    Role.GRID_MANAGER: "网格员",
    Role.PROPERTY_COMPANY: "物业公司",
    Role.COMMUNITY_COMMITTEE: "社区居委会",
    Role.SUB_DISTRICT: "街道办事处",
    Role.EMERGENCY_OFFICE: "区应急管理办公室",
    Role.VOLUNTEER: "志愿者",
}

COMMUNITY_WIDE = frozenset({Role.ADMIN, Role.COMMUNITY_COMMITTEE, Role.SUB_DISTRICT, Role.EMERGENCY_OFFICE})
"""Roles that see the whole community: one community per hub, so a sub-district's view of its communities is this
hub's community."""
