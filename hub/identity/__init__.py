"""Identity, roles and scopes: users with roles, password logins, sessions and API tokens, and what each principal
may see of the community (``Scope``). The API resolves a ``Principal`` per request (hub/api/deps.py)."""

from hub.identity.principal import Principal
from hub.identity.roles import COMMUNITY_WIDE, Role
from hub.identity.scope import Scope, Scopes
from hub.identity.service import AccessRules, Identity, Issued, LoginRefused, UserProblem
from hub.identity.store import ApiToken, IdentityStore, User

__all__ = [
    "COMMUNITY_WIDE",
    "AccessRules",
    "ApiToken",
    "Identity",
    "IdentityStore",
    "Issued",
    "LoginRefused",
    "Principal",
    "Role",
    "Scope",
    "Scopes",
    "User",
    "UserProblem",
]
