"""Administration of identity (admin only): users and their roles, API tokens for integrations, the identity audit.

``POST /users`` adds a user (a role, the deployment person it stands for, a password); ``PATCH /users/{name}`` changes
the role, the password or access (a new password or disabling ends every session); ``POST /tokens`` makes an API
token — shown once, stored as its SHA-256 only — listed by ``GET /tokens`` and revoked by ``DELETE /tokens/{id}``;
``GET /audit/identity`` reads the log of logins, logouts, token and role changes, newest first.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from hub.api.deps import AdminOnly, CurrentPrincipal, RuntimeDep, client_address
from hub.api.paging import LINKED, PageRequest, page_of, paged, paging
from hub.api.problems import identity_errors
from hub.api.times import moment
from hub.identity import ApiToken, Role, User

router = APIRouter(tags=["users"], dependencies=[AdminOnly])


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: Role
    person: str | None = Field(default=None, max_length=64, description="a person (or volunteer) id of the deployment")
    password: str = Field(max_length=256, repr=False)


class UserChange(BaseModel):
    role: Role | None = None
    person: str | None = Field(default=None, max_length=64, description="with role: the person it stands for")
    password: str | None = Field(default=None, max_length=256, repr=False)
    disabled: bool | None = None


class UserPublic(BaseModel):
    name: str
    role: Role
    role_zh: str
    person: str | None
    disabled: bool
    locked_until: datetime | None
    created_at: datetime | None

    @classmethod
    def of(cls, user: User) -> "UserPublic":
        return cls(name=user.name, role=user.role, role_zh=user.role.title_zh, person=user.person,
                   disabled=user.disabled, locked_until=moment(user.locked_until_ms),
                   created_at=moment(user.created_ms))  # fmt: skip


class TokenIn(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="what integration it is for")
    role: Role
    person: str | None = Field(default=None, max_length=64)
    expires_in_s: float | None = Field(default=None, ge=60, le=5 * 366 * 86_400, description="none: until revoked")


class TokenPublic(BaseModel):
    id: str
    name: str
    role: Role
    person: str | None
    created_by: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def of(cls, token: ApiToken) -> "TokenPublic":
        return cls(id=token.id, name=token.name, role=token.role, person=token.person, created_by=token.created_by,
                   created_at=moment(token.created_ms), expires_at=moment(token.expires_ms),
                   revoked_at=moment(token.revoked_ms), revoked_by=token.revoked_by)  # fmt: skip


class TokenCreated(TokenPublic):
    token: str = Field(description="the token itself, shown this once: send it as Authorization: Bearer …")


class AuditPublic(BaseModel):
    seq: int
    time: datetime | None
    event: str
    actor: str
    subject: str
    client: str
    detail: str


_USER_PAGES = paging("users", default=100, maximum=1000, shape=(str,))


@router.get("/users", responses=LINKED)
async def list_users(
    request: Request, response: Response, runtime: RuntimeDep, page: PageRequest = _USER_PAGES
) -> list[UserPublic]:
    """By name; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    users = page_of(request, response, page, await runtime.identity.users(), lambda u: (u.name,))
    return [UserPublic.of(u) for u in users]


@router.post("/users", status_code=201)
async def add_user(runtime: RuntimeDep, request: Request, principal: CurrentPrincipal, body: UserIn) -> UserPublic:
    with identity_errors():
        user = await runtime.identity.add_user(
            body.name, body.role, body.person, body.password, by=principal.name, client=client_address(request)
        )
    return UserPublic.of(user)


@router.patch("/users/{name}")
async def change_user(
    runtime: RuntimeDep, request: Request, principal: CurrentPrincipal, name: str, body: UserChange
) -> UserPublic:
    with identity_errors():
        role = None
        if body.role is not None:
            role = (body.role, body.person)
        elif "person" in body.model_fields_set:
            current = await runtime.identity.user(name)
            role = (current.role, body.person)
        user = await runtime.identity.change_user(
            name, by=principal.name, client=client_address(request), password=body.password, role=role,
            disabled=body.disabled,
        )  # fmt: skip
    return UserPublic.of(user)


@router.post("/users/{name}/revoke-sessions")
async def revoke_sessions(
    runtime: RuntimeDep, request: Request, principal: CurrentPrincipal, name: str
) -> dict[str, int]:
    """End every session of ``name`` (a lost phone, a leaving employee)."""
    with identity_errors():
        count = await runtime.identity.end_sessions(name, by=principal.name, client=client_address(request))
    return {"sessions_revoked": count}


_TOKEN_PAGES = paging("tokens", default=100, maximum=1000, shape=(int, str))


@router.get("/tokens", responses=LINKED)
async def list_tokens(
    request: Request, response: Response, runtime: RuntimeDep, page: PageRequest = _TOKEN_PAGES
) -> list[TokenPublic]:
    """Oldest first; paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    tokens = page_of(request, response, page, await runtime.identity.api_tokens(), lambda t: (t.created_ms, t.id))
    return [TokenPublic.of(t) for t in tokens]


@router.post("/tokens", status_code=201)
async def create_token(
    runtime: RuntimeDep, request: Request, principal: CurrentPrincipal, body: TokenIn
) -> TokenCreated:
    with identity_errors():
        record, token = await runtime.identity.create_api_token(
            body.name, body.role, body.person, expires_s=body.expires_in_s, by=principal.name,
            client=client_address(request),
        )  # fmt: skip
    return TokenCreated(**TokenPublic.of(record).model_dump(), token=token)


@router.delete("/tokens/{token_id}")
async def revoke_token(
    runtime: RuntimeDep, request: Request, principal: CurrentPrincipal, token_id: str
) -> TokenPublic:
    with identity_errors():
        return TokenPublic.of(
            await runtime.identity.revoke_api_token(token_id, by=principal.name, client=client_address(request))
        )


_IDENTITY_AUDIT_PAGES = paging("audit-identity", default=100, maximum=1000, shape=(int,))


@router.get("/audit/identity", responses=LINKED)
async def identity_audit(
    request: Request,
    response: Response,
    runtime: RuntimeDep,
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**63 - 1,
            deprecated=True,
            description="旧参数 / the seq of the last entry of the page before: use ``cursor`` (the Link header)",
        ),
    ] = None,
    page: PageRequest = _IDENTITY_AUDIT_PAGES,
) -> list[AuditPublic]:
    """Logins (success, failure, lockout), logouts, token creation and revocation, user and role changes; newest
    first, paged with ``limit`` and ``cursor`` (the ``Link`` header)."""
    before_seq = int(page.after[0]) if page.after is not None else before
    entries = paged(
        request,
        response,
        page,
        await runtime.identity.audit(before_seq=before_seq, limit=page.limit + 1),
        lambda e: (e.seq,),
    )
    return [AuditPublic(seq=e.seq, time=moment(e.time_ms), event=e.event, actor=e.actor, subject=e.subject,
                        client=e.client, detail=e.detail) for e in entries]  # fmt: skip
