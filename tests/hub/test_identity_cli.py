"""``departments[].manages`` checked at load, and ``anju-hub users`` against a data dir that a running hub then uses."""

import asyncio
import sqlite3
import textwrap
from pathlib import Path

import httpx
import pytest

from hub.cli import build_parser, main
from hub.config import ConfigError, load_deployment
from tests.hub.harness import running_hub
from tests.hub.identity_support import PASSWORD, identity_deployment

DEPLOYMENT = """\
community: {id: hongxing, name: 红星社区}
grids:
  - {id: grid-1, name: 第一网格, managers: [wang-li]}
people:
  - {id: wang-li, name: 王丽}
  - {id: li-property, name: 李强}
departments:
  - {id: property, name: 物业, kind: property, people: [li-property], manages: [b1, b9]}
  - {id: gas, name: 燃气, kind: gas, people: [wang-li], manages: [b1]}
  - {id: property-2, name: 物业二, kind: property, people: [li-property], manages: [b1]}
gateways:
  - id: gw-b1
    sensors:
      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1, building: b1}
"""


def test_managed_buildings_are_checked_and_each_problem_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "deployment.yaml"
    path.write_text(textwrap.dedent(DEPLOYMENT), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    found = {(issue.path, issue.value, issue.message) for issue in caught.value.issues}
    assert found == {
        ("departments[0].manages[1]", "b9", "no sensor names this building (gateways[].sensors[].building)"),
        ("departments[1].manages[0]", "b1", "only a department of kind property manages buildings"),
        ("departments[2].manages[0]", "b1", "already managed by department property"),
    }
    assert "deployment.yaml:8: departments[0].manages[1] = 'b9'" in str(caught.value)


def test_the_password_is_never_an_argument() -> None:
    parser = build_parser()
    for command in (["add", "li", "--role", "admin"], ["passwd", "li"]):
        with pytest.raises(SystemExit):  # not even as an abbreviation of --password-file
            parser.parse_args(["users", "--config", "d.yaml", *command, "--password", PASSWORD])


@pytest.mark.anyio
async def test_users_made_on_the_command_line_log_in_to_the_running_hub(
    mosquitto: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = identity_deployment(tmp_path)
    data = tmp_path / "data"
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    users = ["users", "--config", str(source), "--data-dir", str(data)]

    async def cli(argv: list[str]) -> int:
        return await asyncio.to_thread(main, argv)  # the command runs its own event loop

    assert await cli([*users, "add", "li", "--role", "property_company", "--person", "li-property",
                 "--password-file", str(secret)]) == 0  # fmt: skip
    assert await cli([*users, "add", "zhou", "--role", "grid_manager", "--person", "zhou-property",
                 "--password-file", str(secret)]) == 2, "zhou-property manages no grid"  # fmt: skip
    assert "person: a grid manager must be linked" in capsys.readouterr().err
    weak = tmp_path / "weak"
    weak.write_text("short\n", encoding="utf-8")
    assert await cli([*users, "add", "wang", "--role", "grid_manager", "--person", "wang-li",
                 "--password-file", str(weak)]) == 2  # fmt: skip
    assert "password:" in capsys.readouterr().err
    assert await cli([*users, "add", "wang", "--role", "grid_manager", "--person", "wang-li",
                 "--password-file", str(secret)]) == 0  # fmt: skip
    assert await cli([*users, "disable", "wang"]) == 0
    assert await cli([*users, "role", "li", "--role", "community_committee"]) == 0
    capsys.readouterr()
    assert await cli([*users, "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "li\tcommunity_committee\t-\tactive",
        "wang\tgrid_manager\twang-li\tdisabled",
    ]
    async with running_hub(mosquitto=mosquitto, deployment=source, data_dir=data) as hub:
        async with httpx.AsyncClient(base_url=str(hub.api.base_url)) as client:
            li = await client.post("/api/v1/auth/login", json={"username": "li", "password": PASSWORD})
            assert li.status_code == 200 and li.json()["user"]["role"] == "community_committee"
            wang = await client.post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD})
            assert wang.status_code == 401 and "disabled" in wang.json()["detail"]
        events = [(e["event"], e["actor"]) for e in (await hub.api.get("/api/v1/audit/identity")).json()]
        assert ("user.role", events[-4][1]) in events and events[-1][0] == "user.created"
        assert all(actor.startswith("cli") for event, actor in events if event.startswith("user."))
    with sqlite3.connect(data / "identity.sqlite3") as db:
        (stored,) = db.execute("SELECT password_hash FROM users WHERE name = 'li'").fetchone()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
