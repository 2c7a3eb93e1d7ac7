"""``GET /api/v1/sensors`` and ``/sensors/{id}`` (issue 7): each sensor with where it is, its state and newest reading,
only those in the caller's view; against a real hub (Mosquitto, HTTP)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol import Reading
from tests.hub.harness import T0, Hub, gateway, running_hub
from tests.hub.identity_support import add_users, identity_deployment, session

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(
        mosquitto=mosquitto, deployment=identity_deployment(tmp_path), data_dir=tmp_path / "data"
    ) as running:
        yield running


async def test_sensors_with_place_state_and_newest_reading_in_the_callers_view(hub: Hub) -> None:
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, Reading("gas-b1-101", T0, 2.5, "%LEL"), Reading("gas-b1-101", T0 + 1000, 3.0, "%LEL"))
        await gw.ack()
    everything = (await hub.api.get("/api/v1/sensors")).json()
    assert (everything["community"], everything["total"], len(everything["sensors"])) == ("hongxing", 20, 20)
    gas = next(s for s in everything["sensors"] if s["sensor"] == "gas-b1-101")
    assert (gas["value"], gas["unit"], gas["status"], gas["building"], gas["grid"]) == (
        3.0,
        "%LEL",
        "fresh",
        "b1",
        "grid-1",
    )
    assert (gas["kind_zh"], gas["kind_en"], gas["location"]) == ("可燃气体", "combustible gas", "1栋101室厨房")
    unseen = next(s for s in everything["sensors"] if s["sensor"] == "gas-b2-101")
    assert (unseen["status"], unseen["value"], unseen["last_seen"]) == ("unseen", None, None)

    first = await hub.api.get("/api/v1/sensors", params={"kind": "gas", "limit": 2})
    second = await hub.api.get(first.headers["link"].removeprefix("<").split(">;")[0])
    page = second.json()
    assert page["total"] == 6 and [s["sensor"] for s in page["sensors"]] == ["gas-b1-301", "gas-b2-101"]
    assert page["offset"] == 2 and "kind=gas" in first.headers["link"], "the next link keeps the filters"
    fresh = (await hub.api.get("/api/v1/sensors", params={"status": "fresh"})).json()
    assert [s["sensor"] for s in fresh["sensors"]] == ["gas-b1-101"]

    detail = (await hub.api.get("/api/v1/sensors/gas-b1-101")).json()
    assert [(p["name"], p["value"], p["grade"]) for p in detail["set_points"]][:2] == [
        ("pre-warning", 10.0, "IV"),
        ("level-1 alarm", 25.0, "III"),
    ]

    await add_users(hub, "zhang", "prop-a")
    async with session(hub, "zhang") as zhang, session(hub, "prop-a") as company:
        mine = (await zhang.get("/api/v1/sensors")).json()
        assert mine["total"] == 10 and {s["grid"] for s in mine["sensors"]} == {"grid-2"}
        for path, params in (("/api/v1/sensors/gas-b1-101", None), ("/api/v1/sensors", {"grid": "grid-1"})):
            hidden = await zhang.get(path, params=params)
            assert hidden.status_code == 404 and hidden.headers["content-type"] == PROBLEM, path
        assert {s["building"] for s in (await company.get("/api/v1/sensors")).json()["sensors"]} == {"b1"}
        assert (await company.get("/api/v1/sensors", params={"building": "b2"})).status_code == 404

    bad = await hub.api.get("/api/v1/sensors", params={"status": "asleep", "limit": 0})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert (await hub.api.get("/api/v1/sensors/nope")).status_code == 404
