"""Duty rosters changed through the API (issue 7): a swap or a holiday rota routes the next page to the new person at
once, is audited in the hash-chained log, outlives a restart, and is refused — naming the field — for an unknown
person or shift, a past day or nobody on duty; only the admin and the community committee make changes. Against a
real hub (Mosquitto, HTTP, SQLite, a notification sink)."""

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.hub.events_support import event, raise_events
from tests.hub.harness import Hub, eventually, running_hub
from tests.hub.identity_support import add_users, identity_deployment, session

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"
ROSTER = "/api/v1/rosters/grid-1-duty"


def roster_deployment(directory: Path) -> Path:
    """The identity tests' deployment with grid-1 on a roster: one 24-hour shift, wang-li's."""
    source = identity_deployment(directory)
    yaml = YAML(typ="rt")
    document: Any = yaml.load(source.read_text(encoding="utf-8"))
    document["rosters"] = [
        {"id": "grid-1-duty", "grids": ["grid-1"], "team": ["wang-li"],
         "shifts": [{"name": "day", "start": "00:00", "end": "00:00"}]}
    ]  # fmt: skip
    with source.open("w", encoding="utf-8") as out:
        yaml.dump(document, out)
    return source


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(
        mosquitto=mosquitto, deployment=roster_deployment(tmp_path), data_dir=tmp_path / "data"
    ) as running:
        yield running


async def shift_day(hub: Hub) -> str:
    """The date of the shift running now (the roster's time zone), from the roster's own answer."""
    why: str = (await hub.api.get(ROSTER)).json()["why"]
    assert why.startswith("day shift of "), why
    return why.removeprefix("day shift of ")


async def paged_for(hub: Hub, condition: str) -> str:
    """Who the opening page of the alert about ``condition`` went to."""

    async def page() -> dict[str, Any] | None:
        return next((b for b in hub.sink.sink.received if str(b.get("alert_key", "")).endswith(condition)), None)

    found = await eventually(page)
    return str(found["recipient"]["id"])


async def test_a_swap_routes_the_next_alert_to_the_new_person_and_is_audited(hub: Hub) -> None:
    day = await shift_day(hub)
    await raise_events(hub, event(1))
    assert await paged_for(hub, "/lane-1") == "wang-li"
    await add_users(hub, "committee")
    async with session(hub, "committee") as committee:
        swap = {"by": "committee", "day": day, "shift": "day", "people": ["zhang-wei"], "note": "王丽病假 / sick leave"}
        changed = await committee.post(f"{ROSTER}/changes", json=swap)
        assert changed.status_code == 200, changed.text
    roster = changed.json()
    assert [p["id"] for p in roster["on_duty"]] == ["zhang-wei"]
    [change] = roster["changes"]
    assert (change["day"], change["shift"], change["by"]) == (day, "day", "committee")
    await raise_events(hub, event(2))
    assert await paged_for(hub, "/lane-2") == "zhang-wei", "the next alert goes to who is on duty now"
    community = (await hub.api.get("/api/v1/community")).json()
    assert [p["id"] for p in next(g for g in community["grids"] if g["id"] == "grid-1")["on_duty"]] == ["zhang-wei"]

    rows = (await hub.api.get("/api/v1/audit", params={"limit": 1000})).json()["rows"]
    [audited] = [r for r in rows if r["subject"] == "grid-1-duty"]
    assert (audited["to_state"], audited["by"], audited["channel"]) == ("roster-changed", "committee", "api")
    assert f"{day} day shift → zhang-wei" in audited["note"] and "病假" in audited["note"]
    assert (await hub.api.get("/api/v1/audit/verify")).json()["intact"]

    undo = await hub.api.post(f"{ROSTER}/changes/undo", json={"by": "chen-subdistrict", "day": day, "shift": "day"})
    assert undo.status_code == 200 and [p["id"] for p in undo.json()["on_duty"]] == ["wang-li"]
    assert undo.json()["changes"] == []
    again = await hub.api.post(f"{ROSTER}/changes/undo", json={"by": "chen-subdistrict", "day": day, "shift": "day"})
    assert again.status_code == 404 and again.headers["content-type"] == PROBLEM


async def test_a_holiday_rota_outlives_a_restart(mosquitto: int, tmp_path: Path) -> None:
    deployment, data = roster_deployment(tmp_path), tmp_path / "data"
    async with running_hub(mosquitto=mosquitto, deployment=deployment, data_dir=data) as hub:
        day = await shift_day(hub)
        holiday = {"by": "chen-subdistrict", "day": day, "people": ["zhang-wei", "wang-li"], "note": "春节值班"}
        assert (await hub.api.post(f"{ROSTER}/changes", json=holiday)).status_code == 200
    async with running_hub(mosquitto=mosquitto, deployment=deployment, data_dir=data) as hub:
        roster = (await hub.api.get(ROSTER)).json()
        assert [p["id"] for p in roster["on_duty"]] == ["zhang-wei", "wang-li"]
        assert [(c["day"], c["shift"], c["note"]) for c in roster["changes"]] == [(day, None, "春节值班")]
        await raise_events(hub, event(3))
        assert await paged_for(hub, "/lane-3") in ("zhang-wei", "wang-li")


async def test_bad_changes_are_problems_naming_the_field(hub: Hub) -> None:
    day = await shift_day(hub)
    past = (dt.date.fromisoformat(day) - dt.timedelta(days=3)).isoformat()
    far = (dt.date.fromisoformat(day) + dt.timedelta(days=400)).isoformat()
    base = {"by": "chen-subdistrict", "day": day, "shift": "day", "people": ["zhang-wei"]}
    for change, field, words in (
        ({"people": ["ghost"]}, "people", "ghost"),
        ({"shift": "night"}, "shift", "night"),
        ({"people": []}, "people", ""),
        ({"shift": None, "people": []}, "people", ""),
        ({"people": ["zhang-wei", "wang-li"]}, "people", "one person"),
        ({"day": past}, "day", "past"),
        ({"day": far}, "day", "366"),
        ({"day": "2026-02-30"}, "day", ""),
    ):
        answer = await hub.api.post(f"{ROSTER}/changes", json={**base, **change})
        assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM, (change, answer.text)
        problem = answer.json()
        assert ["body", field] in [e["loc"][:2] for e in problem["errors"]], (change, problem)
        assert words in problem["detail"], (change, problem["detail"])
    assert [p["id"] for p in (await hub.api.get(ROSTER)).json()["on_duty"]] == ["wang-li"], "nothing changed"
    assert (await hub.api.post("/api/v1/rosters/nope/changes", json=base)).status_code == 404


async def test_only_the_admin_and_the_committee_change_rosters(hub: Hub) -> None:
    day = await shift_day(hub)
    await add_users(hub, "wang", "zhang", "prop-a")
    change = {"day": day, "shift": "day", "people": ["zhang-wei"]}
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang, session(hub, "prop-a") as company:
        for client, by in ((wang, "wang-li"), (company, "li-property")):
            refused = await client.post(f"{ROSTER}/changes", json={**change, "by": by})
            assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
        assert (await wang.get(ROSTER)).status_code == 200, "wang-li reads his grid's roster"
        hidden = await zhang.get(ROSTER)
        assert hidden.status_code == 404, "zhang-wei's grids are not on it: as if it did not exist"
    assert [p["id"] for p in (await hub.api.get(ROSTER)).json()["on_duty"]] == ["wang-li"]
