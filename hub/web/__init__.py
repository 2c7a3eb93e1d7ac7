"""The hub's web pages: the grid manager's alert inbox (mobile first, live), an alert's detail with its readings
and timeline, the community overview (every sensor by state, live), a sensor's history from an hour to a year with
its set points, the property company's console (faults, work orders, silences for detector tests), the incident
board of emergency mode (area, alerts, households, volunteers, notices, measures, export), the login form and the
residents' public notices. Static HTML, CSS and JavaScript written for Anju (no
third-party assets, nothing from the internet: the pages work on a site without internet access); they use the
JSON API with the browser session of ``/api/v1/auth/login`` and the live stream, so the caller's scope applies to
them as to any API client.

Served with a strict Content-Security-Policy (scripts, styles and connections from the hub only; no inline code;
not framed) and the usual hardening headers (``SecurityHeaders``).
"""

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DISTRICT_PAGES", "DISTRICT_REDIRECTS", "SecurityHeaders", "install_pages"]

STATIC = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_PAGE_PREFIXES = ("/app", "/public")

PAGES = {
    "/app/": "inbox.html",
    "/app/login": "login.html",
    "/app/alerts/{alert_id}": "alert.html",
    "/app/overview": "overview.html",
    "/app/sensors/{sensor_id}": "sensor.html",
    "/app/property": "property.html",
    "/app/incidents": "incidents.html",
    "/app/incidents/{incident_id}": "incidents.html",
    "/public/": "public.html",
}
"""Each page's path and its file. A page is the same file whatever the ids in its path: its script reads them from
the address and asks the API, which applies the caller's scope."""
REDIRECTS = {"/": "/app/", "/app": "/app/", "/public": "/public/"}

DISTRICT_PAGES = {"/app/": "district.html", "/app/login": "login.html"}
"""The district node's pages (hub/district/): its overview, and the same login form."""
DISTRICT_REDIRECTS = {"/": "/app/", "/app": "/app/"}


def _serving(name: str) -> Callable[[], Awaitable[FileResponse]]:
    async def page() -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    return page


def _redirecting(target: str) -> Callable[[], Awaitable[RedirectResponse]]:
    async def redirect() -> RedirectResponse:
        return RedirectResponse(target, status_code=307)

    return redirect


def _router(pages: dict[str, str], redirects: dict[str, str]) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    for path, file in pages.items():
        router.add_api_route(path, _serving(file), methods=["GET"])
    for path, target in redirects.items():
        router.add_api_route(path, _redirecting(target), methods=["GET"])
    return router


class SecurityHeaders:
    """Hardening headers on every response, and the Content-Security-Policy on the pages (``/app``, ``/public``;
    not on ``/docs``, whose Swagger UI the browser loads from its CDN)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        page = path.startswith(_PAGE_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in _HEADERS if name not in present]
                if page:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_pages(app: FastAPI, pages: dict[str, str] = PAGES, redirects: dict[str, str] = REDIRECTS) -> None:
    """Mount ``pages`` (a hub's by default; ``DISTRICT_PAGES`` on the district node) and the static files on ``app``,
    and add the security headers."""
    app.include_router(_router(pages, redirects))
    app.mount("/app/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
