"""Errors as RFC 9457 problem details (``application/problem+json``), one style for every endpoint."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from alerts.service import NotFoundError, TransitionError
from alerts.sqldb import InvalidValue
from hub.identity import UserProblem

__all__ = ["ParameterProblem", "identity_errors", "install_problem_handlers", "problem", "service_errors"]

_MEDIA_TYPE = "application/problem+json"


class ParameterProblem(Exception):
    """A parameter refused with its name, in the same shape as a validation error's (``errors[].loc``), so a
    client finds the parameter at the same place whichever check refused it."""

    def __init__(self, status: int, name: str, value: str, why: str, *, where: str = "query") -> None:
        super().__init__(f"{name}: {why}")
        self.status = status
        self.name = name
        self.value = value
        self.why = why
        self.where = where
        """``query``, ``path`` or ``body``: where the parameter was (the first part of ``loc``)."""


@contextmanager
def service_errors(what: str) -> Iterator[None]:
    """The alert service's refusals as problem details: a missing record 404, a step its state does not allow 409
    (prefixed with ``what``), a bad value 422 — each with the service's own message."""
    try:
        yield
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from None
    except TransitionError as exc:
        raise HTTPException(409, f"{what} {exc}") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@contextmanager
def identity_errors() -> Iterator[None]:
    """A user or token change that cannot be made, as problem details naming the field (404, 409 or 422)."""
    try:
        yield
    except UserProblem as exc:
        raise HTTPException(exc.status, f"{exc.field}: {exc}") from None


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=_MEDIA_TYPE)


def install_problem_handlers(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        response = problem(exc.status_code, _title(exc.status_code), str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "input": _shown(error)}
            for error in exc.errors()
        ]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
        return problem(422, "Invalid request", detail, errors=errors)

    async def parameter_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ParameterProblem)
        errors = [{"loc": [exc.where, exc.name], "msg": exc.why, "input": repr(exc.value)[:200]}]
        return problem(exc.status, _title(exc.status), str(exc), errors=errors)

    async def invalid_value(request: Request, exc: Exception) -> JSONResponse:
        return problem(422, "Invalid request", f"一个值无法保存 / a value the database cannot take: {exc}")

    app.add_exception_handler(InvalidValue, invalid_value)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ParameterProblem, parameter_error)
    app.add_exception_handler(RequestValidationError, validation_error)


_SECRET_FIELDS = frozenset({"password", "refresh_token", "token", "secret"})
"""Request fields whose value a refusal never echoes: the answer may end up in a proxy's or a client's log."""


def _shown(error: Mapping[str, Any]) -> str:
    """The refused input as the problem shows it (200 characters at most), secrets masked."""
    value = error.get("input")
    if any(str(part) in _SECRET_FIELDS for part in error["loc"]):
        return "'***'"
    if isinstance(value, Mapping):
        value = {k: "***" if k in _SECRET_FIELDS else v for k, v in value.items()}
    return repr(value)[:200]


def _title(status: int) -> str:
    titles = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 409: "Conflict",
              422: "Invalid request", 429: "Too many requests"}  # fmt: skip
    return titles.get(status, "Error")
