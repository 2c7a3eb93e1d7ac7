"""Paging every list the same way (issue 7): ``limit`` and an opaque ``cursor``, the next page in a ``Link`` header;
rows inserted while a client pages are neither read twice nor make it skip one; bad limits and cursors are problem
details naming the parameter; scope holds on every page. Against a real hub (Mosquitto, HTTP, SQLite)."""

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.api.routes import work_orders
from protocol import Reading
from tests.hub.events_support import event, raise_events
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub
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
    # b2's alerts opened before b1's (another millisecond): company A's cursor then lies before every one of them
    await raise_events(hub, *(event(0, id=sensor, grid="grid-2", place="b2") for sensor in b2[:5]))
    await asyncio.sleep(0.01)
    await raise_events(hub, *(event(0, id=sensor, place="b1") for sensor in b1[:5]))
    await add_users(hub, "prop-a", "prop-b")
    async with session(hub, "prop-a") as company_a, session(hub, "prop-b") as company_b:
        mine, pages = await walk(company_a, "/api/v1/alerts", {"limit": 2}, itself)
        assert pages == 3 and sorted(a["sensor"] for a in mine) == sorted(b1[:5])
        first = await company_a.get("/api/v1/alerts", params={"limit": 2})
        match = NEXT.match(first.headers["link"])
        assert match is not None
        theirs = await company_b.get(match["url"])
        assert theirs.status_code == 200, "a cursor is only a position: another company may hold it"
        assert len(theirs.json()) == 2 and {a["sensor"] for a in theirs.json()} <= set(b2[:5]), "and sees its own"


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


Maker = Callable[[Hub, int], Awaitable[None]]
"""Adds the ``n``-th row to a list (through the API or a gateway, as in use)."""


def _soon(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


async def _created(answer: Awaitable[httpx.Response]) -> None:
    done = await answer
    assert done.status_code in (200, 201, 202), done.text


async def _an_alert(hub: Hub) -> str:
    await raise_events(hub, event(999))
    return str((await hub.api.get("/api/v1/alerts", params={"limit": 1})).json()[0]["id"])


async def _an_incident(hub: Hub) -> str:
    made = await hub.api.post("/api/v1/incidents", json={"by": "chen-subdistrict", "kind": "fire", "title": "1栋火情",
                                                         "grids": ["grid-1"], "mobilise": False})  # fmt: skip
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def _another_incident(hub: Hub) -> None:
    await _an_incident(hub)


SEQ = [0]
"""The gateway's last message number (per test: each test's hub starts afresh)."""


async def _reading(hub: Hub, n: int) -> None:
    SEQ[0] += 1
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(SEQ[0], Reading("gas-b1-101", T0 + n * 1000, 1.0 + n / 100, "%LEL"),
                         Reading("temp-b1-101", T0 + n * 1000, 20.0, "Cel"))  # fmt: skip
        await gw.ack()


async def _dead_letter(hub: Hub, n: int) -> None:
    before = len((await hub.api.get("/api/v1/dead-letters", params={"limit": 1000})).json())
    async with gateway(hub.mqtt_port) as gw:
        await gw.raw("anju/v1/hongxing/gw-b1/data", f"not json {n}".encode())

    async def stored() -> bool:
        return len((await hub.api.get("/api/v1/dead-letters", params={"limit": 1000})).json()) > before

    await eventually(stored)


CASES: dict[str, tuple[str, dict[str, Any], Callable[[Any], list[dict[str, Any]]], str, Maker]] = {
    # name: (path, params, the rows of a body, the field that tells rows apart, make the n-th row)
    "work-orders": ("/api/v1/work-orders", {}, itself, "id", lambda hub, n: _created(hub.api.post(
        f"/api/v1/alerts/{ALERT[0]}/work-orders",
        json={"by": "chen-subdistrict", "department": "property", "task": f"清理 {n}", "due_at": _soon(days=1)}))),
    "risk-events": ("/api/v1/risk-events", {}, itself, "key", lambda hub, n: raise_events(hub, event(n))),
    "audit": ("/api/v1/audit", {}, lambda body: body["rows"], "seq", lambda hub, n: _created(hub.api.post(
        f"/api/v1/alerts/{ALERT[0]}/comment", json={"by": "wang-li", "text": f"第{n}次巡查"}))),
    "audit-identity": ("/api/v1/audit/identity", {}, itself, "seq", lambda hub, n: _created(hub.api.post(
        "/api/v1/tokens", json={"name": f"integration-{n}", "role": "admin"}))),
    "users": ("/api/v1/users", {}, itself, "name", lambda hub, n: _created(hub.api.post(
        "/api/v1/users", json={"name": f"{'az'[n % 2]}user-{n}", "role": "community_committee",
                               "password": "Lantern-harbour-7-quiet"}))),
    "tokens": ("/api/v1/tokens", {}, itself, "id", lambda hub, n: _created(hub.api.post(
        "/api/v1/tokens", json={"name": f"integration-{n}", "role": "admin"}))),
    "dead-letters": ("/api/v1/dead-letters", {}, itself, "payload_base64", _dead_letter),
    "silences": ("/api/v1/silences", {}, itself, "id", lambda hub, n: _created(hub.api.post(
        "/api/v1/silences", json={"by": "li-property", "reason": f"烟感测试 {n}", "ends_at": _soon(hours=2),
                                  "sensors": ["smoke-b1-f1"]}))),
    "incidents": ("/api/v1/incidents", {}, itself, "id", lambda hub, n: _another_incident(hub)),
    "hazards": ("/api/v1/hazards", {}, itself, "id", lambda hub, n: _created(hub.api.post("/api/v1/hazards", json={
        "by": "wang-li", "grid": "grid-1", "place": f"1栋{n}层充电走廊", "title": "电动车违规充电",
        "grade": ["II", "III", "IV"][n % 3], "owner": "wang-li"}))),
    "households": ("/api/v1/incidents/{incident}/households", {}, itself, "household", lambda hub, n: _created(
        hub.api.post(f"/api/v1/incidents/{ALERT[1]}/households",
                     json={"by": "wang-li", "household": f"1栋{n:03d}", "status": "safe"}))),
    "notices": ("/api/v1/incidents/{incident}/notices", {}, itself, "id", lambda hub, n: _created(hub.api.post(
        f"/api/v1/incidents/{ALERT[1]}/notices", json={"by": "chen-subdistrict", "text_zh": f"通知 {n}"}))),
    "measures": ("/api/v1/incidents/{incident}/measures", {}, itself, "id", lambda hub, n: _created(hub.api.post(
        f"/api/v1/incidents/{ALERT[1]}/measures",
        json={"by": "chen-subdistrict", "department": "property", "text": f"措施 {n}", "due": _soon(hours=1)}))),
    "readings": ("/api/v1/readings", {"sensor": "gas-b1-101", "start": T0, "end": T0 + 10**9},
                 lambda body: body["readings"], "time_ms", _reading),
    "readings-window": ("/api/v1/readings/window", {"grid": "grid-1", "start": T0, "end": T0 + 10**9},
                        lambda body: [{**r, "at": f"{r['time_ms']}/{r['sensor']}"} for r in body["readings"]], "at",
                        _reading),
}  # fmt: skip
ALERT: list[str] = ["", ""]
"""The alert and the incident the rows of some lists hang on (made per test)."""


@pytest.mark.parametrize("name", CASES)
async def test_each_list_is_read_exactly_once_while_rows_are_added(hub: Hub, name: str) -> None:
    path, params, rows_of, field, make = CASES[name]
    ALERT[0] = await _an_alert(hub)
    ALERT[1] = await _an_incident(hub)
    path = path.format(incident=ALERT[1])
    SEQ[0] = 0
    limit = 5 if name == "readings-window" else 3  # more than the rows added per page (two readings of two sensors)
    for n in range(7):
        await make(hub, n)
    before = [r[field] for r in rows_of((await hub.api.get(path, params={**params, "limit": 1000})).json())]
    assert len(before) >= 7, before
    added = iter(range(100, 200))

    async def two_more(page: int) -> None:
        await make(hub, next(added))
        await make(hub, next(added))

    rows, pages = await walk(hub.api, path, {**params, "limit": limit}, rows_of, two_more)
    seen = [r[field] for r in rows]
    assert len(seen) == len(set(seen)), f"{name}: a row read twice"
    assert set(before) <= set(seen), f"{name}: a row there from the start was skipped"
    assert pages >= -(-len(before) // limit) >= 2


async def test_a_grid_manager_pages_through_its_own_sensors_only(hub: Hub) -> None:
    await add_users(hub, "zhang")
    async with session(hub, "zhang") as zhang:
        for path, rows_of in (
            ("/api/v1/sensors/status", lambda body: body["sensors"]),
            ("/api/v1/sensors", lambda body: body["sensors"]),
        ):
            rows, pages = await walk(zhang, path, {"limit": 3}, rows_of)
            assert pages == 4 and len(rows) == 10 and {r["gateway"] for r in rows} == {"gw-b2"}, path
        hidden = await hub.api.get("/api/v1/sensors", params={"limit": 3})
        match = NEXT.match(hidden.headers["link"])
        assert match is not None
        answer = (await zhang.get(match["url"])).json()
        assert {s["gateway"] for s in answer["sensors"]} == {"gw-b2"}, "the admin's cursor shows zhang only his own"


async def test_the_schema_states_limit_and_cursor_of_every_list(hub: Hub) -> None:
    schema = (await hub.api.get("/openapi.json")).json()
    lists = 0
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        names = {p["name"]: p for p in get.get("parameters", [])}
        assert "offset" not in names, f"{path} still pages by offset"
        if "limit" not in names:
            continue
        lists += 1
        limit = names["limit"]["schema"]
        assert limit["minimum"] == 1 and limit["maximum"] >= limit["default"] >= 1, path
        assert "cursor" in names and "Link" in get["responses"]["200"].get("headers", {}), path
        assert "400" in get["responses"], path
    assert lists >= 19


async def test_a_company_pages_its_work_orders_only_however_few_of_them_each_read_holds(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(work_orders, "_SCAN_BATCH", 2)  # a scoped page fills over several reads of the store
    alert = await _an_alert(hub)
    mine: list[str] = []
    for n in range(8):
        department = "property-b" if n % 3 == 0 else "property"
        made = await hub.api.post(
            f"/api/v1/alerts/{alert}/work-orders",
            json={"by": "chen-subdistrict", "department": department, "task": f"清理 {n}", "due_at": _soon(days=1)},
        )
        assert made.status_code == 201, made.text
        if department == "property-b":
            mine.append(made.json()["id"])
    await add_users(hub, "prop-b")
    async with session(hub, "prop-b") as company:
        rows, pages = await walk(company, "/api/v1/work-orders", {"limit": 2}, itself)
    assert sorted(r["id"] for r in rows) == sorted(mine) and pages == 2
    assert {r["department"] for r in rows} == {"property-b"}
