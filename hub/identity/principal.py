"""Who is calling: a user's session, an API token, or the hub's static token, with the scope they see."""

from dataclasses import dataclass, field
from typing import Literal

from hub.identity.roles import Role
from hub.identity.scope import Scope

__all__ = ["Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    """A user name, ``token:<name>`` for an API token, ``static-token`` for the settings' token."""
    role: Role
    person: str | None
    """The deployment person (or volunteer) the principal stands for, when there is one."""
    via: Literal["bearer", "cookie", "api-token", "static-token"]
    scope: Scope
    session_id: str | None = None
    csrf_hash: str | None = field(default=None, repr=False)
    """For a cookie session: SHA-256 of its CSRF token, which state-changing requests must echo in a header."""
