"""``/api/v1/auth``: password login (bearer tokens or a browser cookie session), refresh, logout, who am I.

A bearer login answers an access token (``expires_in`` seconds, 15 min by default) and a refresh token; a cookie
login sets ``anju_session`` (HttpOnly) and ``anju_csrf`` (readable by the page, to echo in ``X-CSRF-Token``), both
Secure and SameSite=Strict, and answers the CSRF token in the body too. Refused logins are problem details: 401 for
wrong credentials (the same for an unknown user), 429 with ``Retry-After`` while locked out or rate limited.
"""

import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from hub.api.deps import CSRF_COOKIE, SESSION_COOKIE, CurrentPrincipal, IdentityDep, RuntimeDep, client_address
from hub.api.problems import identity_errors
from hub.api.times import moment
from hub.identity import Issued, LoginRefused, Principal, Role

router = APIRouter(tags=["auth"])
"""Login, refresh and logout: what every Anju server with users answers (a hub, the district node)."""
me_router = APIRouter(tags=["auth"])
"""``/auth/me`` of a hub, which counts the sensors in the caller's view."""


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256, repr=False)
    mode: Literal["bearer", "cookie"] = Field(default="bearer", description="cookie: a browser session")


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200, repr=False)


class UserBrief(BaseModel):
    name: str
    role: Role
    role_zh: str
    person: str | None


class TokensOut(BaseModel):
    token_type: Literal["Bearer"] = "Bearer"
    access_token: str
    expires_in: int = Field(description="seconds the access token lives")
    refresh_token: str
    user: UserBrief


class CookieSessionOut(BaseModel):
    csrf_token: str = Field(description="echo it in X-CSRF-Token on every state-changing request")
    expires_at: datetime
    user: UserBrief


class PrincipalOut(BaseModel):
    """Who is calling, as every server's ``/auth/me`` begins (a hub's adds its scope, the district node's its
    communities)."""

    name: str
    role: Role
    role_zh: str
    person: str | None
    via: str

    @staticmethod
    def fields_of(principal: Principal) -> dict[str, Any]:
        """The base's fields, for a subclass's constructor."""
        return PrincipalOut(name=principal.name, role=principal.role, role_zh=principal.role.title_zh,
                            person=principal.person, via=principal.via).model_dump()  # fmt: skip


class MeOut(PrincipalOut):
    community_wide: bool
    grids: list[str]
    buildings: list[str]
    sensors: int = Field(description="how many sensors are in view (all of them when community_wide)")


class LoggedOut(BaseModel):
    sessions_revoked: int


def _brief(issued: Issued) -> UserBrief:
    user = issued.user
    return UserBrief(name=user.name, role=user.role, role_zh=user.role.title_zh, person=user.person)


def _refused(exc: LoginRefused) -> HTTPException:
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
    return HTTPException(exc.status, exc.detail, headers=headers)


def _tokens(issued: Issued) -> TokensOut:
    assert issued.access_token is not None and issued.refresh_token is not None  # a bearer session's
    expires_in = max(0, round(issued.expires_ms / 1000 - time.time()))
    return TokensOut(access_token=issued.access_token, expires_in=expires_in, refresh_token=issued.refresh_token,
                     user=_brief(issued))  # fmt: skip


@router.post("/auth/login", response_model=TokensOut | CookieSessionOut)
async def login(
    identity: IdentityDep, request: Request, response: Response, body: LoginIn
) -> TokensOut | CookieSessionOut:
    try:
        issued = await identity.login(body.username, body.password, client=client_address(request), mode=body.mode)
    except LoginRefused as exc:
        raise _refused(exc) from None
    if issued.mode == "bearer":
        return _tokens(issued)
    assert issued.session_token is not None and issued.csrf_token is not None  # a cookie session's
    max_age = max(1, round(issued.expires_ms / 1000 - time.time()))
    for name, value, http_only in (
        (SESSION_COOKIE, issued.session_token, True),
        (CSRF_COOKIE, issued.csrf_token, False),
    ):
        response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=http_only, samesite="strict")
    expires = moment(issued.expires_ms)
    return CookieSessionOut(csrf_token=issued.csrf_token, expires_at=expires, user=_brief(issued))


@router.post("/auth/refresh")
async def refresh(identity: IdentityDep, request: Request, body: RefreshIn) -> TokensOut:
    """Spend a refresh token for a new access and refresh token; a refresh token used twice revokes its session."""
    try:
        issued = await identity.refresh(body.refresh_token, client=client_address(request))
    except LoginRefused as exc:
        raise _refused(exc) from None
    return _tokens(issued)


async def _logout(identity: IdentityDep, request: Request, response: Response, principal: CurrentPrincipal,
                  everywhere: bool) -> LoggedOut:  # fmt: skip
    with identity_errors():
        count = await identity.logout(principal, everywhere=everywhere, client=client_address(request))
    if principal.via == "cookie":
        for name in (SESSION_COOKIE, CSRF_COOKIE):
            response.delete_cookie(name, path="/", secure=True, httponly=name == SESSION_COOKIE, samesite="strict")
    return LoggedOut(sessions_revoked=count)


@router.post("/auth/logout")
async def logout(identity: IdentityDep, request: Request, response: Response, principal: CurrentPrincipal) -> LoggedOut:
    """End this session: its access and refresh tokens (or its cookie) stop working at once."""
    return await _logout(identity, request, response, principal, everywhere=False)


@router.post("/auth/logout-all")
async def logout_all(
    identity: IdentityDep, request: Request, response: Response, principal: CurrentPrincipal
) -> LoggedOut:
    """End every session of the calling user (a lost phone)."""
    return await _logout(identity, request, response, principal, everywhere=True)


@me_router.get("/auth/me")
async def me(principal: CurrentPrincipal, runtime: RuntimeDep) -> MeOut:
    scope = principal.scope
    sensors = len(runtime.registry.by_id) if scope.community_wide else len(scope.sensors)
    return MeOut(**PrincipalOut.fields_of(principal), community_wide=scope.community_wide, grids=sorted(scope.grids),
                 buildings=sorted(scope.buildings), sensors=sensors)  # fmt: skip
