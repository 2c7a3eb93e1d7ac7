"""``Identity``: logins, sessions, API tokens and users — the rules, over the store (hub/identity/store.py).

A password login opens a session of one of two modes:

* ``bearer`` (apps, scripts): a 15-minute access token and a refresh token. Refreshing spends the refresh token and
  returns a new pair (rotation); presenting a spent refresh token again revokes the whole session, since someone
  else holds a copy (OAuth 2.0 Security BCP, RFC 9700 §4.14). The session ends ``refresh_token_ttl_s`` after login.
* ``cookie`` (browsers): one session token in a Secure, HttpOnly, SameSite=Strict cookie, and a CSRF token that
  state-changing requests echo in ``X-CSRF-Token`` (hub/api/deps.py checks it against the session's hash).

Failed logins are counted per user (``login_max_failures`` in a row lock the account for ``login_lockout_s``) and per
client address (hub/identity/limits.py). A wrong password and an unknown user get the same answer after the same
argon2 work, so the login form does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from hub.identity.audit import AuditEntry
from hub.identity.limits import FailureWindow
from hub.identity.passwords import Passwords, password_problem
from hub.identity.principal import Principal
from hub.identity.roles import Role
from hub.identity.scope import ScopeRules
from hub.identity.store import ApiToken, IdentityStore, TokenKind, User
from hub.identity.tokens import new_token, token_hash

__all__ = ["AccessRules", "Identity", "Issued", "LoginRefused", "UserProblem"]

log = logging.getLogger("anju.hub.identity")

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


class LoginRefused(Exception):
    """A login or refresh that is refused: ``status`` 401 (wrong credentials) or 429 (locked out, too many
    failures from the address; ``retry_after_s`` says when to try again)."""

    def __init__(self, status: int, detail: str, *, retry_after_s: int | None = None) -> None:
        self.status = status
        self.detail = detail
        self.retry_after_s = retry_after_s
        super().__init__(detail)


class UserProblem(ValueError):
    """A user or token change that cannot be made: ``field`` names the input at fault, ``status`` the HTTP answer
    (404 no such user, 409 a name taken, 422 a bad value)."""

    def __init__(self, field: str, message: str, *, status: int = 422) -> None:
        self.field = field
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class AccessRules:
    """The lifetimes and login limits from the hub's settings (hub/settings.py documents each)."""

    access_ttl_s: float = 900.0
    refresh_ttl_s: float = 7 * 86_400.0
    cookie_ttl_s: float = 12 * 3600.0
    max_failures: int = 5
    lockout_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Issued:
    """What a login or refresh hands out; the tokens are shown to the caller once and never again."""

    user: User
    mode: Literal["bearer", "cookie"]
    expires_ms: int
    """When the access token (bearer) or the session (cookie) expires."""
    access_token: str | None = None
    refresh_token: str | None = None
    session_token: str | None = None
    csrf_token: str | None = None


def name_problem(name: str) -> str | None:
    if not 1 <= len(name) <= 64 or not set(name) <= _NAME_CHARS:
        return "用户名为 1–64 个小写字母、数字或 - _ . / a user name is 1-64 of a-z 0-9 - _ ."
    return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Identity:
    """Logins, sessions and tokens of one hub; ``static_token`` is the settings' API token, an admin integration
    token that needs no database (tests, ``make demo`` and existing integrations use it)."""

    def __init__(
        self,
        store: IdentityStore,
        scopes: ScopeRules,
        *,
        rules: AccessRules,
        address_limit: tuple[int, float],
        static_token: str | None,
        passwords: Passwords | None = None,
    ) -> None:
        self.store = store
        self.scopes = scopes
        self.rules = rules
        self._static = static_token.encode() if static_token else None
        self._passwords = passwords or Passwords()
        self._addresses = FailureWindow(max_failures=address_limit[0], window_s=address_limit[1])

    # --- requests ---------------------------------------------------------------------------------------------

    async def authenticate(self, token: str) -> Principal | None:
        """The principal a bearer or cookie token stands for, or None (unknown, expired, revoked, disabled user)."""
        if self._static is not None and hmac.compare_digest(token.encode(), self._static):
            return Principal("static-token", Role.ADMIN, None, "static-token", self.scopes.scope(Role.ADMIN, None))
        found = await asyncio.to_thread(self.store.credential, token_hash(token), now_ms=_now_ms())
        if found is None:
            return None
        via: Literal["bearer", "cookie", "api-token"] = (
            "api-token" if found.kind == "api" else "cookie" if found.kind == "cookie" else "bearer"
        )
        scope = self.scopes.scope(found.role, found.person)
        return Principal(found.name, found.role, found.person, via, scope, found.session_id, found.csrf_hash)

    async def login(self, name: str, password: str, *, client: str, mode: Literal["bearer", "cookie"]) -> Issued:
        """Check a password and open a session, or raise :class:`LoginRefused` (audited either way)."""
        now_s = time.time()
        wait = self._addresses.retry_after_s(client, now_s)
        if wait is not None:
            wait_s = math.ceil(wait)
            detail = f"此地址登录失败过多，{wait_s} 秒后再试 / too many failed logins from here; retry in {wait_s} s"
            raise LoginRefused(429, detail, retry_after_s=wait_s)
        user = await asyncio.to_thread(self.store.user, name)
        now_ms = _now_ms()
        if user is not None and user.locked_until_ms is not None and user.locked_until_ms > now_ms:
            wait_s = math.ceil((user.locked_until_ms - now_ms) / 1000)
            await asyncio.to_thread(self.store.record_refusal, name, client=client, now_ms=now_ms, why="locked out")
            raise LoginRefused(429, f"账户已临时锁定，请 {wait_s} 秒后再试 / the account is locked after repeated "
                               f"failures; retry in {wait_s} s", retry_after_s=wait_s)  # fmt: skip
        matches = await asyncio.to_thread(self._passwords.check, user.password_hash if user else None, password)
        if not matches or user is None:
            self._addresses.fail(client, now_s)
            locked_until = await asyncio.to_thread(
                self.store.record_failure,
                user,
                name,
                client=client,
                now_ms=now_ms,
                max_failures=self.rules.max_failures,
                lockout_ms=round(self.rules.lockout_s * 1000),
            )
            if locked_until is not None:
                log.warning("user %s locked out after %d failed logins (from %s)", name, self.rules.max_failures,
                            client)  # fmt: skip
                wait_s = math.ceil((locked_until - now_ms) / 1000)
                raise LoginRefused(429, f"密码错误次数过多，账户锁定 {wait_s} 秒 / too many wrong passwords; the "
                                   f"account is locked for {wait_s} s", retry_after_s=wait_s)  # fmt: skip
            raise LoginRefused(401, "用户名或密码错误 / wrong user name or password")
        if user.disabled:
            await asyncio.to_thread(self.store.record_refusal, name, client=client, now_ms=now_ms, why="disabled")
            raise LoginRefused(401, "账户已停用 / the account is disabled")
        return await self._open(user, mode=mode, client=client, now_ms=now_ms)

    async def _open(self, user: User, *, mode: Literal["bearer", "cookie"], client: str, now_ms: int) -> Issued:
        session_id = secrets.token_hex(16)
        if mode == "cookie":
            session, csrf = new_token("anju_st_"), new_token("anju_cs_")
            expires = now_ms + round(self.rules.cookie_ttl_s * 1000)
            await asyncio.to_thread(
                self.store.start_session, user, session_id=session_id, mode=mode,
                tokens=[(token_hash(session), "cookie", expires)], expires_ms=expires, csrf_hash=token_hash(csrf),
                client=client, now_ms=now_ms,
            )  # fmt: skip
            return Issued(user, mode, expires, session_token=session, csrf_token=csrf)
        access, refresh, tokens = self._pair(now_ms)
        await asyncio.to_thread(
            self.store.start_session, user, session_id=session_id, mode=mode, tokens=tokens,
            expires_ms=now_ms + round(self.rules.refresh_ttl_s * 1000), csrf_hash=None, client=client, now_ms=now_ms,
        )  # fmt: skip
        return Issued(user, mode, tokens[0][2], access_token=access, refresh_token=refresh)

    def _pair(self, now_ms: int) -> tuple[str, str, list[tuple[str, TokenKind, int]]]:
        access, refresh = new_token("anju_at_"), new_token("anju_rt_")
        tokens: list[tuple[str, TokenKind, int]] = [
            (token_hash(access), "access", now_ms + round(self.rules.access_ttl_s * 1000)),
            (token_hash(refresh), "refresh", now_ms + round(self.rules.refresh_ttl_s * 1000)),
        ]
        return access, refresh, tokens

    async def refresh(self, refresh_token: str, *, client: str) -> Issued:
        """A new access and refresh token for a live refresh token, which is spent (LoginRefused 401 otherwise)."""
        now_ms = _now_ms()
        digest = token_hash(refresh_token)
        access, refresh, tokens = self._pair(now_ms)
        outcome = await asyncio.to_thread(self.store.rotate, digest, new_tokens=tokens, client=client, now_ms=now_ms)
        if outcome == "reused":
            raise LoginRefused(401, "刷新令牌已使用过，会话已撤销，请重新登录 / the refresh token was used before; "
                               "its session is revoked, log in again")  # fmt: skip
        if outcome == "invalid":
            raise LoginRefused(401, "刷新令牌无效或已过期 / the refresh token is unknown, expired or revoked")
        name = await asyncio.to_thread(self.store.refresh_owner, digest)
        user = await asyncio.to_thread(self.store.user, name or "")
        assert user is not None  # the rotation found it
        return Issued(user, "bearer", tokens[0][2], access_token=access, refresh_token=refresh)

    async def logout(self, principal: Principal, *, everywhere: bool, client: str) -> int:
        """End the caller's session (or all of the user's sessions); how many were live. API tokens are revoked by
        an admin instead (``revoke_api_token``)."""
        if principal.session_id is None:
            detail = "只有登录会话可以注销 / only a login session logs out; an admin revokes API tokens"
            raise UserProblem("token", detail, status=409)
        return await asyncio.to_thread(
            self.store.end_sessions, principal.name, session_id=None if everywhere else principal.session_id,
            by=principal.name, client=client, now_ms=_now_ms(),
        )  # fmt: skip

    # --- administration -----------------------------------------------------------------------------------

    async def users(self) -> list[User]:
        return await asyncio.to_thread(self.store.users)

    async def user(self, name: str) -> User:
        found = await asyncio.to_thread(self.store.user, name)
        if found is None:
            raise UserProblem("name", f"没有用户 {name!r} / no user {name!r}", status=404)
        return found

    async def end_sessions(self, name: str, *, by: str, client: str) -> int:
        """Revoke every session of ``name`` (an admin's revoke-all); 404 for an unknown user."""
        await self.user(name)
        return await asyncio.to_thread(
            self.store.end_sessions, name, session_id=None, by=by, client=client, now_ms=_now_ms()
        )

    async def api_tokens(self) -> list[ApiToken]:
        return await asyncio.to_thread(self.store.api_tokens)

    async def audit(self, *, before_seq: int | None, limit: int) -> list[AuditEntry]:
        return await asyncio.to_thread(self.store.audit, before_seq=before_seq, limit=limit)

    def _check_role(self, role: Role, person: str | None) -> None:
        problem = self.scopes.person_problem(role, person)
        if problem is not None:
            raise UserProblem("person", problem)

    async def add_user(self, name: str, role: Role, person: str | None, password: str, *, by: str, client: str) -> User:
        if (problem := name_problem(name)) is not None:
            raise UserProblem("name", problem)
        self._check_role(role, person)
        if (problem := password_problem(password, username=name)) is not None:
            raise UserProblem("password", problem)
        hashed = await asyncio.to_thread(self._passwords.hash, password)
        try:
            return await asyncio.to_thread(self.store.add_user, name, role, person, hashed, by=by, client=client,
                                           now_ms=_now_ms())  # fmt: skip
        except ValueError as exc:
            raise UserProblem("name", str(exc), status=409) from None

    async def change_user(
        self,
        name: str,
        *,
        by: str,
        client: str,
        password: str | None = None,
        role: tuple[Role, str | None] | None = None,
        disabled: bool | None = None,
    ) -> User:
        if role is not None:
            self._check_role(*role)
        hashed = None
        if password is not None:
            if (problem := password_problem(password, username=name)) is not None:
                raise UserProblem("password", problem)
            hashed = await asyncio.to_thread(self._passwords.hash, password)
        user = await asyncio.to_thread(
            self.store.change_user, name, by=by, client=client, now_ms=_now_ms(), password_hash=hashed, role=role,
            disabled=disabled,
        )  # fmt: skip
        if user is None:
            raise UserProblem("name", f"没有用户 {name!r} / no user {name!r}", status=404)
        return user

    async def create_api_token(
        self, name: str, role: Role, person: str | None, *, expires_s: float | None, by: str, client: str
    ) -> tuple[ApiToken, str]:
        """A new integration token: the record and the token itself, shown this once."""
        if (problem := name_problem(name)) is not None:
            raise UserProblem("name", problem.replace("用户名", "令牌名").replace("a user name", "a token name"))
        self._check_role(role, person)
        now_ms = _now_ms()
        token = new_token("anju_it_")
        record = ApiToken(
            id=f"tok-{secrets.token_hex(6)}", name=name, role=role, person=person, created_by=by, created_ms=now_ms,
            expires_ms=None if expires_s is None else now_ms + round(expires_s * 1000), revoked_ms=None,
            revoked_by=None,
        )  # fmt: skip
        try:
            await asyncio.to_thread(self.store.add_api_token, record, token_hash(token), client=client)
        except ValueError as exc:
            raise UserProblem("name", str(exc), status=409) from None
        return record, token

    async def revoke_api_token(self, token_id: str, *, by: str, client: str) -> ApiToken:
        revoked = await asyncio.to_thread(self.store.revoke_api_token, token_id, by=by, client=client,
                                          now_ms=_now_ms())  # fmt: skip
        if revoked is None:
            raise UserProblem("id", f"没有有效的 API 令牌 {token_id!r} / no live API token {token_id!r}", status=404)
        return revoked
