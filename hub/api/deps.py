"""Dependencies shared by the routers: the runtime and the bearer-token check."""

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.runtime import Runtime

__all__ = ["Authorized", "RuntimeDep"]

_bearer = HTTPBearer(auto_error=False)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _authorize(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = request.app.state.settings.api_token.get_secret_value()
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
Authorized = Depends(_authorize)
