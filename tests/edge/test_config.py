from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config

GOOD = """
community = "hongxing"
gateway = "gw-b1"
outbox = "state/outbox.sqlite3"
poll_interval_s = 0.5
publish_interval_s = 1
max_batch = 500
ack_timeout_s = 10.0
outbox_max_bytes = 67108864
alarm_command = "/usr/local/bin/relay --on 'zone 1'"
[mqtt]
host = "127.0.0.1"
port = 1883
username = "gw-b1"
password_file = "secret.txt"
keepalive_s = 30
[modbus]
host = "127.0.0.1"
port = 5020
timeout_s = 1.0
[[sensors]]
id = "gas-b1-101"
kind = "gas"
unit_id = 1
[[sensors]]
id = "water-b1-1"
kind = "water-depth"
unit_id = 2
alarm_above = 0.2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD))
    assert config.outbox == tmp_path / "state/outbox.sqlite3"
    assert config.mqtt.password_file == tmp_path / "secret.txt"
    assert config.publish_interval_s == 1.0
    assert config.alarm_command == ("/usr/local/bin/relay", "--on", "zone 1")
    assert [(s.id, s.unit, s.alarm_above) for s in config.sensors] == [
        ("gas-b1-101", "%LEL", None),
        ("water-b1-1", "m", 0.2),
    ]
    assert config.client_id == "anju-edge-hongxing-gw-b1"


@pytest.mark.parametrize(
    ("old", "new", "key", "value"),
    [
        ('gateway = "gw-b1"', 'gateway = "GW_B1"', "gateway", "GW_B1"),
        ("max_batch = 500", "max_batch = 0", "max_batch", 0),
        ("max_batch = 500", 'max_batch = "500"', "max_batch", "500"),
        ("poll_interval_s = 0.5", "poll_interval_s = true", "poll_interval_s", True),
        ("port = 1883", "port = 70000", "mqtt.port", 70000),
        ("timeout_s = 1.0", "timeout_s = 1.0\nretries = 3", "modbus.retries", 3),
        ('kind = "gas"', 'kind = "radon"', "sensors[0].kind", "radon"),
        ("unit_id = 2", "unit_id = 1", "sensors[1].unit_id", 1),
        ("unit_id = 1\n", "unit_id = 1\nalarm_abve = 3.0\n", "sensors[0].alarm_abve", 3.0),
        ('community = "hongxing"', 'community = "hongxing"\npoll_interval = 1', "poll_interval", 1),
    ],
)
def test_config_errors_name_key_and_value(tmp_path: Path, old: str, new: str, key: str, value: object) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace(old, new, 1)))
    assert (info.value.key, info.value.value) == (key, value)
    assert key in str(info.value)


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace('outbox = "state/outbox.sqlite3"\n', "")))
    assert info.value.key == "outbox"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "community = "))
    assert info.value.key == "<file>"
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.toml")


def test_cli_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    assert main(["check-config", str(_write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out == "ok: hongxing/gw-b1, 2 sensors\n"
    assert main(["check-config", str(_write(tmp_path, GOOD.replace("max_batch = 500", "max_batch = -1")))]) == 2
    assert "max_batch = -1" in caplog.text


def test_cli_outbox_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "--config", str(_write(tmp_path, GOOD))]) == 0
    lines = capsys.readouterr().out.splitlines()
    (session,) = [int(line.split("=")[1]) for line in lines if line.startswith("session=")]
    assert session > 1_700_000_000, "a new outbox numbers its sessions from the Unix time"
    assert "taken=0" in lines and "dropped=0" in lines


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "check-config" in capsys.readouterr().out


def test_new_keys_defaults_and_errors(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, GOOD.replace("outbox_max_bytes = 67108864\n", "")))
    assert config.outbox_max_bytes == 256 * 1024 * 1024  # issue 3
    assert config.health_interval_s == 60.0
    config = load_config(_write(tmp_path, GOOD.replace("max_batch = 500", "max_batch = 500\nhealth_interval_s = 5")))
    assert config.health_interval_s == 5.0
    for bad in ("0", "0.05", "100000", '"60"', "nan"):
        with pytest.raises(ConfigError) as info:
            load_config(
                _write(tmp_path, GOOD.replace("max_batch = 500", f"max_batch = 500\nhealth_interval_s = {bad}"))
            )
        assert info.value.key == "health_interval_s"
        assert "health_interval_s" in str(info.value)


def test_cli_outbox_prints_integers_only_unless_health_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.outbox import Outbox

    config = load_config(_write(tmp_path, GOOD))
    outbox = Outbox.open(config.outbox, community="hongxing", gateway="gw-b1", max_bytes=1 << 20)
    outbox.save_health({"cpu_s": 1.25, "clock_skew_s": float("nan"), "reconnects": 3.0})
    outbox.close()
    assert main(["outbox", "--config", str(tmp_path / "edge.toml")]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert all(int(line.partition("=")[2]) >= 0 for line in plain)  # tests/e2e/system.py edge_counters parses so
    assert main(["outbox", "--config", str(tmp_path / "edge.toml"), "--health"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[: len(plain)] == plain
    assert lines[len(plain) :] == ["health.cpu_s=1.250", "health.reconnects=3"]  # NaN (unknown) is not stored
