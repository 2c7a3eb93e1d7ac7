"""A deployment for the identity tests (the demo's, with buildings and two property companies), logins, and the
identity store on the engine the ``identity_engine`` fixture chose."""

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from alerts.sqldb import Database, open_database
from hub.identity import IdentityStore
from tests.conftest import DEMO_DEPLOYMENT
from tests.hub.harness import Hub

PASSWORD = "Lantern-harbour-7-quiet"
"""Every test user's password (long, not common): the tests look for it where it must never be."""

USERS = {
    "wang": ("grid_manager", "wang-li"),
    "zhang": ("grid_manager", "zhang-wei"),
    "prop-a": ("property_company", "li-property"),
    "prop-b": ("property_company", "zhou-property"),
    "committee": ("community_committee", None),
    "volunteer": ("volunteer", "liu-yang"),
}
"""Test users: name -> (role, person). wang-li manages grid-1 and zhang-wei grid-2; li-property's company manages
building b1 and zhou-property's b2; liu-yang volunteers in grid-1."""


def identity_deployment(directory: Path, *, answer_within_s: float | None = None) -> Path:
    """The demo deployment with each sensor in its building (b1 on gw-b1, b2 on gw-b2), a second property company
    (``property-b``, zhou-property, managing b2), and zhou-property as the first escalation level."""
    yaml = YAML(typ="rt")
    document: Any = yaml.load(DEMO_DEPLOYMENT.read_text(encoding="utf-8"))
    for gateway in document["gateways"]:
        for sensor in gateway["sensors"]:
            sensor["building"] = "b1" if gateway["id"] == "gw-b1" else "b2"
    document["people"].append(
        {
            "id": "zhou-property",
            "name": "周敏（第二物业值班）",
            "channels": [{"type": "webhook", "url": "http://127.0.0.1:1/notify", "secret_file": "webhook.secret"}],
        }
    )
    for department in document["departments"]:
        if department["id"] == "property":
            department["manages"] = ["b1"]
    document["departments"].append(
        {"id": "property-b", "name": "第二物业", "kind": "property", "people": ["zhou-property"], "manages": ["b2"]}
    )
    document["escalation"]["levels"][0]["people"] = ["zhou-property"]
    if answer_within_s is not None:
        document["escalation"]["answer_within_s"] = {"III": answer_within_s, "II": answer_within_s}
    target = directory / "identity-deployment.yaml"
    with target.open("w", encoding="utf-8") as out:
        yaml.dump(document, out)
    (directory / "webhook.secret").write_text("test-webhook-secret-0123456789abcdef\n", encoding="utf-8")
    return target


async def add_users(hub: Hub, *names: str) -> None:
    for name in names or tuple(USERS):
        role, person = USERS[name]
        answer = await hub.api.post(
            "/api/v1/users", json={"name": name, "role": role, "person": person, "password": PASSWORD}
        )
        assert answer.status_code == 201, answer.text


async def login_tokens(hub: Hub, name: str, password: str = PASSWORD) -> dict[str, Any]:
    async with anonymous(hub) as client:
        answer = await client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@contextlib.asynccontextmanager
async def session(hub: Hub, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client logged in as ``name`` (bearer access token), with nothing of the admin's token."""
    tokens = await login_tokens(hub, name)
    async with httpx.AsyncClient(
        base_url=str(hub.api.base_url), headers={"Authorization": f"Bearer {tokens['access_token']}"}
    ) as client:
        yield client


def anonymous(hub: Hub) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=str(hub.api.base_url))


_engine_url: list[str] = []
"""The PostgreSQL server the ``identity_engine`` fixture chose for this test, or empty for SQLite."""


def use_postgres(url: str | None) -> None:
    """Open the next tests' identity stores on the PostgreSQL at ``url`` (None: SQLite files again)."""
    _engine_url[:] = [url] if url else []


def identity_target(path: Path) -> tuple[str | Path, str]:
    """``(target, schema)`` of the test's identity database at ``path``: that SQLite file, or, when the
    ``identity_engine`` fixture picked PostgreSQL, a schema of the test server named after ``path`` — so opening the
    same path again is a restart on the same database, and another test's path is another, empty, one."""
    if not _engine_url:
        return path, "anju"
    return _engine_url[0], "t" + hashlib.sha256(str(path).encode()).hexdigest()[:20]


def open_identity_store(path: Path) -> IdentityStore:
    target, schema = identity_target(path)
    return IdentityStore(target, schema=schema)


def open_identity_database(path: Path) -> Database:
    """The same database without the store: for a test that reaches around it (as someone with write access)."""
    target, schema = identity_target(path)
    return open_database(target, schema=schema)
