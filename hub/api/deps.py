"""Dependencies shared by the routers: the runtime, and who is calling (``CurrentPrincipal``) with their scope.

A request is authenticated by ``Authorization: Bearer <token>`` (an access token, an API token or the settings'
static token) or by the browser session cookie. A state-changing request (anything but GET, HEAD, OPTIONS) made with
the cookie must also carry the session's CSRF token in ``X-CSRF-Token``, equal to the ``anju_csrf`` cookie (double
submit) and to the token issued with the session: a page on another site can make the browser send the cookie, but
cannot read the CSRF cookie to copy it into a header.
"""

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from hub.identity import COMMUNITY_WIDE, Identity, Principal, Role
from hub.runtime import Runtime

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "AdminOnly",
    "Authorized",
    "CommunityWide",
    "CurrentPrincipal",
    "IdentityDep",
    "RuntimeDep",
    "acting_as",
    "client_address",
    "requires",
]

SESSION_COOKIE = "anju_session"
CSRF_COOKIE = "anju_csrf"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False)
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _identity(request: Request) -> Identity:
    """The server's logins and scopes: ``app.state.runtime.identity`` on a hub and on the district node alike."""
    identity: Identity = request.app.state.runtime.identity
    return identity


IdentityDep = Annotated[Identity, Depends(_identity)]


def client_address(request: Request) -> str:
    """The peer's address (behind a reverse proxy: the proxy's — see the report's note on forwarded headers)."""
    return request.client.host if request.client is not None else "unknown"


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


async def _principal(
    request: Request,
    identity: IdentityDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    if credentials is not None:
        principal = await identity.authenticate(credentials.credentials)
        if principal is None or principal.via == "cookie":
            raise _unauthorized("令牌无效、已过期或已撤销 / the bearer token is unknown, expired or revoked")
        return principal
    if cookie is not None:
        principal = await identity.authenticate(cookie)
        if principal is None or principal.via != "cookie":
            raise _unauthorized("会话无效或已过期，请重新登录 / the session is unknown or expired; log in again")
        if request.method not in _SAFE_METHODS:
            header = request.headers.get(CSRF_HEADER, "")
            echoed = request.cookies.get(CSRF_COOKIE, "")
            issued = principal.csrf_hash or ""
            digest = hashlib.sha256(header.encode()).hexdigest()
            if not header or not hmac.compare_digest(header, echoed) or not hmac.compare_digest(digest, issued):
                detail = f"缺少或错误的 CSRF 令牌 / missing or wrong {CSRF_HEADER} header (the {CSRF_COOKIE} cookie)"
                raise HTTPException(403, detail)
        return principal
    raise _unauthorized("需要登录或令牌 / log in, or send a bearer token")


CurrentPrincipal = Annotated[Principal, Depends(_principal)]


def acting_as(principal: Principal, by: str) -> str:
    """Who a step is recorded as (the audit's ``by``). An integration (an API token, the static token) relays the
    person who acted, and says who; a user acts as themself — their deployment person, or their user name when not
    linked to one — and naming anyone else is refused (403), so nobody takes an alert or closes an incident in
    another's name."""
    if principal.via in ("api-token", "static-token"):
        return by
    own = principal.person or principal.name
    if by != own:
        raise HTTPException(403, f"只能以本人身份操作 / a user acts as themself ({own!r}), not as {by!r}")
    return own


RuntimeDep = Annotated[Runtime, Depends(_runtime)]


def requires(*roles: Role) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency admitting only ``roles`` (403 to the others: the whole route is not theirs, so no record's
    existence is told)."""
    allowed = frozenset(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(403, f"角色 {principal.role.title_zh} 无权访问 / the role {principal.role.value} may "
                                "not use this")  # fmt: skip
        return principal

    return check


Authorized = Depends(_principal)
"""Any authenticated principal; routes that read data narrow it with ``CurrentPrincipal``'s scope."""
CommunityWide = Depends(requires(*COMMUNITY_WIDE))
"""Roles that see the whole community: for routes not yet narrowed per scope (silences, hazards, gateways…)."""
AdminOnly = Depends(requires(Role.ADMIN))
