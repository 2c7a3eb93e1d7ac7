"""The deployment's ``broadcasts:`` and ``volunteers:`` (emergency mode, issue 6): checked at load, each problem
named with its key and line, and built with their secrets resolved."""

import textwrap
from pathlib import Path

import pytest

from alerts.directory import WebhookTarget, WeComTarget
from hub.config import ConfigError, build_broadcasts, build_volunteers, load_deployment

BASE = """\
community: {id: hongxing, name: 红星社区}
grids:
  - {id: grid-1, name: 第一网格, managers: [wang-li]}
people:
  - id: wang-li
    name: 王丽
gateways:
  - id: gw-b1
    sensors:
      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1}
"""

GOOD = """\
broadcasts:
  - id: b1-residents
    name: 1栋居民群
    grids: [grid-1]
    channel: {type: wecom, url: "http://127.0.0.1:9/cgi-bin/webhook/send", secret_file: robot.key}
  - id: pa-all
    name: 小区广播
    channel: {type: webhook, url: "http://127.0.0.1:9/pa", secret: "0123456789abcdef0123"}
volunteers:
  - id: liu-yang
    name: 刘洋
    skills: [first-aid, electrician]
    grids: [grid-1]
    channels:
      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}
  - id: sun-li
    name: 孙丽
"""


def load(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "robot.key").write_text("693a91f6-7xxx-4bc4-97a0\n", encoding="utf-8")
    path = tmp_path / "deployment.yaml"
    path.write_text(BASE + textwrap.dedent(extra), encoding="utf-8")
    return path


def line(path: Path, text: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``path`` that contains ``text``."""
    lines = [n for n, row in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if text in row]
    return lines[nth - 1]


def issues(path: Path) -> list[tuple[int | None, str, object, str]]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    return [(i.line, i.path, i.value, i.message) for i in caught.value.issues]


def test_broadcasts_and_volunteers_are_built_with_their_secrets(tmp_path: Path) -> None:
    path = load(tmp_path, GOOD)
    deployment = load_deployment(path)
    group, pa = build_broadcasts(deployment, tmp_path)
    assert (group.id, group.community, group.grids) == ("b1-residents", "hongxing", ("grid-1",))
    assert isinstance(group.target, WeComTarget) and group.target.key == "693a91f6-7xxx-4bc4-97a0"
    assert pa.grids == () and isinstance(pa.target, WebhookTarget), "no grids: the whole community"
    liu, sun = build_volunteers(deployment, tmp_path)
    assert liu.skills == ("first-aid", "electrician") and len(liu.targets) == 1
    assert sun.targets == () and sun.grids == (), "a volunteer reached by phone covers the whole community"


def test_problems_name_the_key_value_and_line(tmp_path: Path) -> None:
    bad = GOOD.replace("grids: [grid-1]", "grids: [grid-9]")  # both the robot's and liu-yang's
    bad = bad.replace("{type: webhook, url: \"http://127.0.0.1:9/pa\", secret: \"0123456789abcdef0123\"}",
                      "{type: sms, phone: \"13800000000\"}")  # fmt: skip
    bad = bad.replace("  - id: sun-li\n    name: 孙丽\n", "  - id: liu-yang\n    name: 刘洋2\n    colour: red\n")
    bad += "    channels:\n      - {type: email, address: a@b.cn}\n"
    path = load(tmp_path, bad)
    assert issues(path) == [(line(path, "colour: red"), "volunteers[1].colour", "red", "unknown key")]
    path = load(tmp_path, bad.replace("    colour: red\n", ""))
    assert issues(path) == [
        (line(path, "grid-9"), "broadcasts[0].grids[0]", "grid-9", "no grid with this id in grids"),
        (line(path, "grid-9", 2), "volunteers[0].grids[0]", "grid-9", "no grid with this id in grids"),
        (line(path, "id: liu-yang", 2), "volunteers[1].id", "liu-yang", "duplicate id in volunteers"),
        (line(path, "type: sms"), "broadcasts[1].channel", "sms",
         "a broadcast receiver is a webhook, wecom or dingtalk channel"),
        (line(path, "type: email"), "volunteers[1].channels[0]", "email",
         "an email channel needs the deployment's smtp section"),
    ]  # fmt: skip


def test_a_missing_robot_key_file_is_named(tmp_path: Path) -> None:
    path = load(tmp_path, GOOD)
    (tmp_path / "robot.key").unlink()
    line_at = line(path, "type: wecom")
    [(at, where, value, message)] = issues(path)
    assert (at, where, value) == (line_at, "broadcasts[0].channel", "http://127.0.0.1:9/cgi-bin/webhook/send")
    assert "robot.key" in message
