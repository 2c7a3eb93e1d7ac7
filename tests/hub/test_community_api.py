"""``GET /api/v1/community`` and ``/rosters`` (issue 7): the layout and who answers now, within the caller's view;
against a real hub."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.hub.harness import Hub, running_hub
from tests.hub.identity_support import add_users, identity_deployment, session

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    source = identity_deployment(tmp_path)
    yaml = YAML(typ="rt")
    document: Any = yaml.load(source.read_text(encoding="utf-8"))
    # grid-1's phone: one 24-hour shift, wang-li's (zhang-wei on the team would bring grid-1 into his view).
    document["rosters"] = [
        {"id": "grid-1-duty", "grids": ["grid-1"], "team": ["wang-li"],
         "shifts": [{"name": "day", "start": "00:00", "end": "00:00"}]}
    ]  # fmt: skip
    for sensor in document["gateways"][0]["sensors"]:
        if sensor["location"][2].isdigit():
            sensor["space"] = "b1-f" + sensor["location"][2]  # 1栋101室… -> floor "b1-f1"
    with source.open("w", encoding="utf-8") as out:
        yaml.dump(document, out)
    async with running_hub(mosquitto=mosquitto, deployment=source, data_dir=tmp_path / "data") as running:
        yield running


async def test_the_community_layout_and_who_is_on_duty_within_the_callers_view(hub: Hub) -> None:
    everything = (await hub.api.get("/api/v1/community")).json()
    assert (everything["id"], everything["name"]) == ("hongxing", "红星社区")
    grids = {g["id"]: g for g in everything["grids"]}
    assert set(grids) == {"grid-1", "grid-2"} and grids["grid-2"]["sensors"] == 10
    assert [m["id"] for m in grids["grid-2"]["managers"]] == ["zhang-wei"]
    assert grids["grid-2"]["on_duty"] == grids["grid-2"]["managers"], "no roster: every manager answers"
    [duty] = grids["grid-1"]["on_duty"]
    assert duty == {"id": "wang-li", "name": "王丽（网格员）"}
    buildings = {b["id"]: b for b in everything["buildings"]}
    assert buildings["b1"]["grids"] == ["grid-1"] and buildings["b1"]["sensors"] == 10
    assert {"b1-f1", "b1-f2", "b1-f3"} <= set(buildings["b1"]["spaces"]) and buildings["b2"]["spaces"] == []
    assert [(g["id"], g["online"], g["sensors"]) for g in everything["gateways"]] == [
        ("gw-b1", False, 10),
        ("gw-b2", False, 10),
    ]
    [roster] = (await hub.api.get("/api/v1/rosters")).json()
    assert (roster["id"], roster["grids"], roster["on_duty"]) == ("grid-1-duty", ["grid-1"], [duty])
    assert roster["why"].startswith("day shift of ") and roster["shifts"][0]["start"] == "00:00:00"

    await add_users(hub, "zhang", "prop-b")
    async with session(hub, "zhang") as zhang, session(hub, "prop-b") as company:
        mine = (await zhang.get("/api/v1/community")).json()
        assert [g["id"] for g in mine["grids"]] == ["grid-2"] and [b["id"] for b in mine["buildings"]] == ["b2"]
        assert [g["id"] for g in mine["gateways"]] == ["gw-b2"]
        assert (await zhang.get("/api/v1/rosters")).json() == [], "grid-1's roster is not zhang-wei's grid's"
        theirs = (await company.get("/api/v1/community")).json()
        assert [b["id"] for b in theirs["buildings"]] == ["b2"] and [g["id"] for g in theirs["grids"]] == ["grid-2"]
