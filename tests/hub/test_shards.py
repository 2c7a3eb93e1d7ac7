"""The shard map (hub/shards.py) and the worker's command line: every mistake is named with its line, and a worker
refuses to start on settings that could not hand its communities over."""

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware_sim.load_plan import LoadOptions, render_deployment
from hub.cli import main
from hub.config import ConfigError
from hub.shards import load_shard_map
from hub.worker import child_environment, seats
from hub.worker_notify import HubNotifications
from systemd_notify import notify

GOOD = """\
version: 1
standby_delay_s: 4
communities:
  east: {deployment: east.yaml, data_dir: data/east, http_port: 18101, workers: [w1, w2, w3]}
  west: {deployment: west.yaml, data_dir: data/west, http_port: 18102, workers: [w2, w1]}
"""


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    for community in ("east", "west"):
        options = LoadOptions(community=community, gateways=1, sensors_per_gateway=1, kinds=("gas",))
        (tmp_path / f"{community}.yaml").write_text(render_deployment(options), encoding="utf-8")
    (tmp_path / "shards.yaml").write_text(GOOD, encoding="utf-8")
    return tmp_path


def problems(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_shard_map(path)
    return str(caught.value)


def test_a_worker_owns_some_communities_and_stands_by_for_others_in_rank_order(shard_dir: Path) -> None:
    shards = load_shard_map(shard_dir / "shards.yaml")
    assert shards.workers() == ["w1", "w2", "w3"]
    assert [(a.community, a.role, a.rank) for a in shards.assignments("w1")] == [("east", "owner", 0), ("west",
            "standby", 1)]  # fmt: skip
    assert [(a.community, a.rank) for a in shards.assignments("w3")] == [("east", 2)]
    assert shards.assignments("w9") == []
    east = shards.communities["east"]
    assert east.deployment == shard_dir / "east.yaml" and east.data_dir == shard_dir / "data" / "east", "relative paths"
    w3 = seats("w3", shards, {"lease_term_s": 6.0, "mqtt_tls": False}, "debug", {"NOTIFY_SOCKET": "/run/x", "A": "1"})
    (seat,) = w3
    assert seat.first_delay_s == 8.0, "the second standby waits two delays at start"
    assert seat.argv[-8:] == ["--config", str(shard_dir / "east.yaml"), "--data-dir", str(shard_dir / "data" / "east"),
                              "--http-port", "18101", "--lease-holder", "w3:east"]  # fmt: skip
    assert seat.env == {"A": "1", "ANJU_LEASE_TERM_S": "6.0", "ANJU_MQTT_TLS": "false"}, "no systemd notify socket"


def test_ports_data_dirs_and_deployments_that_clash_are_named_with_their_lines(shard_dir: Path) -> None:
    bad = shard_dir / "bad.yaml"
    bad.write_text(
        GOOD + "  north: {deployment: west.yaml, data_dir: data/west, http_port: 18102, workers: [w1]}\n",
        encoding="utf-8",
    )
    text = problems(bad)
    assert f"{bad}:6: communities.north.http_port = 18102: also the http_port of west" in text
    assert f"communities.north.data_dir = '{shard_dir / 'data' / 'west'}': also the data_dir of west" in text
    assert "communities.north.deployment" in text and "is the deployment of west, not north" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("  north: {deployment: nope.yaml, data_dir: n, http_port: 1, workers: [w1]}", "does not load: "),
        ("  north: {deployment: east.yaml, data_dir: n, http_port: 1, workers: [w1, w1]}", "named more than once: w1"),
        ("  north: {deployment: east.yaml, data_dir: n, http_port: 1, workers: []}", "at least 1 item"),
        ("  north: {deployment: east.yaml, data_dir: n, http_port: 0, workers: [w1]}", "greater than or equal to 1"),
        ("  north: {deployment: east.yaml, data_dir: n, http_port: 1, workers: [w 1]}", "should match pattern"),
        ("  North: {deployment: east.yaml, data_dir: n, http_port: 1, workers: [w1]}", "communities.North"),
        ("  north: {deployment: east.yaml, data_dir: n, http_port: 1, workers: [w1], owner: w1}", "unknown key"),
        ("  north: [oops", "not valid YAML"),
    ],
)
def test_each_mistake_in_a_shard_map_is_named(shard_dir: Path, line: str, expected: str) -> None:
    bad = shard_dir / "bad.yaml"
    bad.write_text(GOOD + line + "\n", encoding="utf-8")
    assert expected in problems(bad)


def test_the_top_of_a_shard_map_is_checked(shard_dir: Path) -> None:
    bad = shard_dir / "bad.yaml"
    bad.write_text(GOOD.replace("version: 1", "version: 2"), encoding="utf-8")
    assert f"{bad}:1: version = 2: Input should be 1" in problems(bad)
    bad.write_text("version: 1\ncommunities: {}\n", encoding="utf-8")
    assert "communities" in problems(bad) and "at least 1 item" in problems(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    assert "expected a mapping at the top" in problems(bad)
    assert "cannot read" in problems(shard_dir / "missing.yaml")


def test_shards_check_prints_who_runs_what(shard_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shards", "check", str(shard_dir / "shards.yaml")]) == 0
    out = capsys.readouterr().out
    assert "east: port 18101, run by w1, taken over by w2, then w3" in out
    assert "worker w3: owns 0, stands by for 1" in out
    (shard_dir / "one.yaml").write_text(GOOD.replace("workers: [w2, w1]", "workers: [w2]"), encoding="utf-8")
    assert main(["shards", "check", str(shard_dir / "one.yaml")]) == 0
    assert "west: port 18102, run by w2, taken over by nobody: a dead owner leaves it down" in capsys.readouterr().out
    (shard_dir / "bad.yaml").write_text(GOOD.replace("18102", "18101"), encoding="utf-8")
    assert main(["shards", "check", str(shard_dir / "bad.yaml")]) == 2
    assert "also the http_port of east" in capsys.readouterr().err


def test_a_worker_refuses_settings_that_could_not_hand_its_communities_over(
    shard_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shard_map = str(shard_dir / "shards.yaml")
    monkeypatch.setenv("ANJU_API_TOKEN", "a-long-random-token-0123456789")
    monkeypatch.delenv("ANJU_ALERTS_DATABASE", raising=False)
    monkeypatch.delenv("ANJU_ALERTS_DATABASE_FILE", raising=False)
    assert main(["worker", "--shard-map", shard_map]) == 2
    assert "--shard-map and --name are required" in capsys.readouterr().err
    assert main(["worker", "--shard-map", shard_map, "--name", "w9"]) == 2
    assert "worker w9 is not in" in (err := capsys.readouterr().err) and "(its workers: w1, w2, w3)" in err
    assert main(["worker", "--shard-map", shard_map, "--name", "w1"]) == 2
    assert "the alert database is required" in capsys.readouterr().err
    url = tmp_path / "db.url"
    url.write_text("postgresql://anju:secret-password@127.0.0.1:1/anju\n", encoding="utf-8")
    monkeypatch.setenv("ANJU_MQTT_CLIENT_ID", "one-for-all")
    assert main(["worker", "--shard-map", shard_map, "--name", "w1", "--alerts-database-file", str(url)]) == 2
    err = capsys.readouterr().err
    assert "would give every community's hub the same MQTT client id" in err and "secret-password" not in err
    monkeypatch.delenv("ANJU_MQTT_CLIENT_ID")
    assert main(["worker", "--shard-map", shard_map, "--name", "w1", "--lease-term", "1"]) == 2
    assert "lease_term_s" in capsys.readouterr().err


def test_a_hub_of_a_worker_gets_the_worker_flags_as_settings_and_not_its_systemd_socket() -> None:
    env = child_environment({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1", "PATH": "/bin"}, {"mqtt_port": 8883})
    assert env == {"PATH": "/bin", "ANJU_MQTT_PORT": "8883"}


def test_the_readme_shard_map_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = readme.split("# /etc/anju-hub/shards.yaml", 1)[1].split("\n", 1)[1].split("```", 1)[0]
    (tmp_path / "shards.yaml").write_text(block, encoding="utf-8")
    shards = load_shard_map(tmp_path / "shards.yaml", check_deployments=False)
    assert [(a.community, a.role) for a in shards.assignments("hub-1")] == [("hongxing", "owner"), ("jinhua",
            "standby")]  # fmt: skip


def test_hosts_name_only_workers_and_become_each_hubs_address(shard_dir: Path) -> None:
    path = shard_dir / "shards.yaml"
    path.write_text(GOOD + "hosts: {w1: 127.0.0.11, w2: hub-2.example.org}\n", encoding="utf-8")
    shards = load_shard_map(path)
    (east, _) = seats("w1", shards, {}, "info", {})
    assert east.argv[east.argv.index("--http-host") + 1] == "127.0.0.11"
    (w3,) = seats("w3", shards, {}, "info", {})
    assert "--http-host" not in w3.argv, "a worker without a host keeps the hub's own setting"
    path.write_text(GOOD + "hosts: {w9: 127.0.0.19, w1: 'a b'}\n", encoding="utf-8")
    text = problems(path)
    assert "hosts.w1 = 'a b'" in text and "hosts.w9" not in text, "the schema first"
    path.write_text(GOOD + "hosts: {w9: 127.0.0.19}\n", encoding="utf-8")
    assert f"{path}:6: hosts.w9 = '127.0.0.19': not a worker of any community" in problems(path)


def test_sub_districts_name_communities_of_the_map_each_once(shard_dir: Path) -> None:
    path = shard_dir / "shards.yaml"
    one = "sub_districts:\n  chunxi: {name: 春熙路街道, communities: [east, west]}\n"
    path.write_text(GOOD + one, encoding="utf-8")
    shards = load_shard_map(path)
    assert shards.sub_districts["chunxi"].communities == ["east", "west"]
    two = "sub_districts:\n  a: {name: 甲街道, communities: [east]}\n  b: {name: 乙街道, communities: [north, east]}\n"
    path.write_text(GOOD + two, encoding="utf-8")
    text = problems(path)
    assert f"{path}:8: sub_districts.b.communities[0] = 'north': not a community of this map" in text, text
    assert f"{path}:8: sub_districts.b.communities[1] = 'east': already in the sub-district 'a'" in text, text
    path.write_text(GOOD + "sub_districts:\n  a: {name: '', communities: []}\n", encoding="utf-8")
    text = problems(path)
    assert "sub_districts.a.name" in text and "sub_districts.a.communities" in text, text


def test_the_proxy_lists_every_worker_of_a_community_owner_first(
    shard_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = shard_dir / "shards.yaml"
    path.write_text(GOOD + "hosts: {w1: 127.0.0.11, w2: 127.0.0.12}\n", encoding="utf-8")
    assert main(["shards", "proxy", str(path), "--domain", "anju.example.org", "--listen", "8080"]) == 0
    conf = capsys.readouterr().out
    east = conf.split("upstream anju_east {", 1)[1].split("}", 1)[0]
    assert [line.strip() for line in east.strip().splitlines()[:3]] == [
        "server 127.0.0.11:18101 max_fails=1 fail_timeout=5s;",
        "server 127.0.0.12:18101 max_fails=1 fail_timeout=5s backup;",
        "server 127.0.0.1:18101 max_fails=1 fail_timeout=5s backup;",
    ], "w3 has no host: the hub's default address"
    assert "server_name east.anju.example.org;" in conf and "listen 8080 default_server;" in conf
    assert "proxy_buffering off;" in conf, "the live stream is not held back"
    assert main(["shards", "proxy", str(path), "--domain", "Anju Example"]) == 2
    assert "is not a domain name" in capsys.readouterr().err
    assert main(["shards", "proxy", str(path), "--domain", "anju.example.org", "--listen", "80; include /x"]) == 2
    assert "is not nginx listen parameters" in capsys.readouterr().err


def test_a_worker_checks_only_the_deployments_of_its_own_communities(shard_dir: Path) -> None:
    (shard_dir / "west.yaml").write_text("community: {id: Not Valid}\n", encoding="utf-8")
    assert load_shard_map(shard_dir / "shards.yaml", worker="w3").assignments("w3")[0].community == "east"
    with pytest.raises(ConfigError, match=r"communities\.west\.deployment"):
        load_shard_map(shard_dir / "shards.yaml", worker="w1")


@pytest.mark.anyio
async def test_a_hubs_notifications_count_only_from_that_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another local process cannot feed a stuck hub's watchdog: the sender's pid (SO_PASSCRED) must be the hub's."""
    notifications = HubNotifications("east")
    notifications.listen()
    monkeypatch.setenv("NOTIFY_SOCKET", notifications.address)
    try:
        notifications.expect(os.getpid() + 1)  # the hub is another process: this one is a stranger
        started = notifications.last_s
        assert notify("WATCHDOG=1\nREADY=1")
        await _until(lambda: notifications.refused == 1)
        assert notifications.last_s == started and not notifications.ready, "a stranger's ping is not a sign of life"
        notifications.expect(os.getpid())  # now this process is the hub
        assert notify("READY=1\nSTATUS=running community east (lease epoch 1)")
        await _until(lambda: notifications.ready)
        assert notifications.status == "running community east (lease epoch 1)" and notifications.refused == 1
    finally:
        notifications.close()


async def _until(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 2 s")
