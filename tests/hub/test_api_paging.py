"""Paging every list the same way (issue 7): ``limit`` and an opaque ``cursor``, the next page in a ``Link`` header;
rows inserted while a client pages are neither read twice nor make it skip one; bad limits and cursors are problem
details naming the parameter; scope holds on every page. Against a real hub (Mosquitto, HTTP, SQLite)."""

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hub.harness import Hub, running_hub
from tests.hub.identity_support import add_users, identity_deployment, session

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"
NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(
        mosquitto=mosquitto, deployment=identity_deployment(tmp_path), data_dir=tmp_path / "data"
    ) as running:
        yield running


def event(n: int, *, grid: str = "grid-1", place: str = "b1", **changes: Any) -> dict[str, Any]:
    """A risk event from another system, one condition (hence one alert) per ``n``."""
    return {
        "system": "video-ai",
        "id": f"cam-{place}/lane-{n}",
        "grade": "IV",
        "grid": grid,
        "place": place,
        "kind": "fire-lane-blocked",
        "location_zh": f"红星社区 {place} 消防通道 {n}",
        "rule": "fire lane blocked",
        "time": datetime.now(UTC).isoformat(),
        **changes,
    }


async def raise_events(hub: Hub, *events: dict[str, Any]) -> None:
    answer = await hub.api.post("/api/v1/events", json={"events": list(events)})
    assert answer.status_code == 202 and not answer.json().get("refused"), answer.text


async def walk(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    rows_of: Callable[[Any], list[dict[str, Any]]],
    between: Callable[[int], Awaitable[None]] | None = None,
    max_pages: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Every row of a list, following ``Link: rel="next"`` from the first page; ``between(page number)`` runs after
    each page (to insert rows meanwhile). Returns the rows in the order read and the number of pages."""
    answer = await client.get(path, params=params)
    rows: list[dict[str, Any]] = []
    for number in range(1, max_pages + 1):
        assert answer.status_code == 200, answer.text
        page = rows_of(answer.json())
        assert len(page) <= params.get("limit", 10**9), "a page never holds more than limit"
        rows += page
        link = answer.headers.get("link")
        if link is None:
            return rows, number
        assert page, "a page with a next link is not empty"
        if between is not None:
            await between(number)
        match = NEXT.match(link)
        assert match is not None, link
        answer = await client.get(match["url"])
    raise AssertionError(f"{path}: more than {max_pages} pages")


def itself(body: Any) -> list[dict[str, Any]]:
    assert isinstance(body, list)
    return body


async def test_alerts_are_read_exactly_once_while_new_ones_arrive(hub: Hub) -> None:
    await raise_events(hub, *(event(n) for n in range(7)))
    before = {a["id"] for a in (await hub.api.get("/api/v1/alerts", params={"limit": 1000})).json()}
    assert len(before) == 7
    inserted = iter(range(100, 200))

    async def two_more(page: int) -> None:
        await raise_events(hub, event(next(inserted)), event(next(inserted)))

    rows, pages = await walk(hub.api, "/api/v1/alerts", {"limit": 3}, itself, two_more)
    ids = [a["id"] for a in rows]
    assert len(ids) == len(set(ids)), "no alert read twice"
    assert set(ids) == before, "every alert there when paging began, once; the newer ones sort before the cursor"
    assert pages == 3
    opened = [a["opened_at"] for a in rows]
    assert opened == sorted(opened, reverse=True), "newest first across pages"


async def sensors_in(hub: Hub, building: str) -> list[str]:
    listed = (await hub.api.get("/api/v1/sensors", params={"building": building})).json()["sensors"]
    return [s["sensor"] for s in listed]


async def test_a_property_company_pages_only_through_its_own_buildings(hub: Hub) -> None:
    b1, b2 = await sensors_in(hub, "b1"), await sensors_in(hub, "b2")
    await raise_events(
        hub,
        *(event(0, id=sensor, place="b1") for sensor in b1[:5]),
        *(event(0, id=sensor, grid="grid-2", place="b2") for sensor in b2[:5]),
    )
    await add_users(hub, "prop-a", "prop-b")
    async with session(hub, "prop-a") as company_a, session(hub, "prop-b") as company_b:
        mine, pages = await walk(company_a, "/api/v1/alerts", {"limit": 2}, itself)
        assert pages == 3 and sorted(a["sensor"] for a in mine) == sorted(b1[:5])
        first = await company_a.get("/api/v1/alerts", params={"limit": 2})
        match = NEXT.match(first.headers["link"])
        assert match is not None
        theirs = await company_b.get(match["url"])
        assert theirs.status_code == 200, "a cursor is only a position: another company may hold it"
        assert theirs.json() and {a["sensor"] for a in theirs.json()} <= set(b2[:5]), "and still sees only its own"


async def test_bad_limits_and_cursors_are_problems_naming_the_parameter(hub: Hub) -> None:
    await raise_events(hub, *(event(n) for n in range(3)))
    first = await hub.api.get("/api/v1/alerts", params={"limit": 1})
    match = NEXT.match(first.headers["link"])
    assert match is not None
    cursor = httpx.URL(match["url"]).params["cursor"]
    body, tag = cursor.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for params, status in (
        ({"limit": 0}, 422),
        ({"limit": 1001}, 422),
        ({"limit": "many"}, 422),
        ({"cursor": "not a cursor"}, 422),
        ({"cursor": "x" * 600}, 422),
        ({"cursor": "abc.def"}, 400),
        ({"cursor": f"{flipped}.{tag}"}, 400),
        ({"cursor": f"{body}.{tag[:-2]}"}, 400),
        ({"offset": 10}, 400),
    ):
        answer = await hub.api.get("/api/v1/alerts", params=params)
        assert answer.status_code == status and answer.headers["content-type"] == PROBLEM, (params, answer.text)
        (name,) = params
        assert ["query", name] in [e["loc"] for e in answer.json()["errors"]], answer.json()
    foreign = await hub.api.get("/api/v1/work-orders", params={"cursor": cursor})
    assert foreign.status_code == 400 and "another list" in foreign.json()["detail"]
