from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_config, parse_config, parse_config_text

GOOD = """community: hongxing
gateway: gw-b1
outbox: state/outbox.sqlite3
poll_interval_s: 0.5
publish_interval_s: 1
max_batch: 500
ack_timeout_s: 10.0
outbox_max_bytes: 67108864
alarm_command: "/usr/local/bin/relay --on 'zone 1'"
mqtt:
  host: 127.0.0.1
  port: 1883
  username: gw-b1
  password_file: secret.txt
  keepalive_s: 30
modbus:  # the detectors' bus
  host: 127.0.0.1
  port: 5020
  timeout_s: 1.0
sensors:
  - id: gas-b1-101
    kind: gas
    unit_id: 1
  - id: water-b1-1
    kind: water-depth
    unit_id: 2
    alarm_above: 0.2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.yaml"
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
    ("old", "new", "key", "value", "line"),
    [
        ("gateway: gw-b1", "gateway: GW_B1", "gateway", "GW_B1", 2),
        ("max_batch: 500", "max_batch: 0", "max_batch", 0, 6),
        ("max_batch: 500", 'max_batch: "500"', "max_batch", "500", 6),
        ("poll_interval_s: 0.5", "poll_interval_s: true", "poll_interval_s", True, 4),
        ("port: 1883", "port: 70000", "mqtt.port", 70000, 12),
        ("timeout_s: 1.0", "timeout_s: 1.0\n  retries: 3", "modbus.retries", 3, 20),
        ("kind: gas", "kind: radon", "sensors[0].kind", "radon", 22),
        ("unit_id: 2", "unit_id: 1", "sensors[1].unit_id", 1, 26),
        ("unit_id: 1\n", "unit_id: 1\n    alarm_abve: 3.0\n", "sensors[0].alarm_abve", 3.0, 24),
        ("community: hongxing", "community: hongxing\npoll_interval: 1", "poll_interval", 1, 2),
        ("modbus:  # the detectors' bus\n  host: 127.0.0.1\n  port: 5020\n", "modbus: 5020\nx:\n", "modbus", 5020, 16),
        ("sensors:\n", "sensors: []\nold_sensors:\n", "sensors", [], 20),
        ("poll_interval_s: 0.5", "poll_interval_s: 0.01", "poll_interval_s", 0.01, 4),
        ("unit_id: 1\n", "unit_id: 1\n    poll_interval_s: 7200\n", "sensors[0].poll_interval_s", 7200.0, 24),
        ("timeout_s: 1.0", "timeout_s: 1.0\n  driver: modbus-ascii", "modbus.driver", "modbus-ascii", 20),
        ("timeout_s: 1.0", "timeout_s: 1.0\n  driver: modbus-rtu", "modbus.driver", "modbus-rtu", 20),
        ("timeout_s: 1.0", "timeout_s: 1.0\n  serial: /dev/ttyUSB0\n  driver: sim", "modbus.driver", "sim", 21),
        ("timeout_s: 1.0", "timeout_s: 1.0\n  driver: sim\n  sim_sample_hz: 500", "modbus.sim_sample_hz", 500.0, 21),
    ],
)
def test_config_errors_name_key_value_and_line(
    tmp_path: Path, old: str, new: str, key: str, value: object, line: int
) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.key, info.value.value, info.value.line) == (key, value, line)
    assert f"{path}:{line}: {key} = " in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "key", "value", "line", "reason"),
    [
        ("unit_id: 2", "unit_id: 010", "sensors[1].unit_id", "010", 26, "leading zero is ambiguous"),
        ("port: 5020", "port: 05020", "modbus.port", "05020", 18, "leading zero is ambiguous"),
        ("gateway: gw-b1", "gateway: 1", "gateway", 1, 2, 'quote it ("1")'),
        ("gateway: gw-b1", "gateway: true", "gateway", True, 2, 'quote it ("true")'),
        ("poll_interval_s: 0.5", "poll_interval_s: on", "poll_interval_s", "on", 4, "YAML 1.2 reads on as text"),
        ("max_batch: 500", "max_batch: yes", "max_batch", "yes", 6, "must be an integer"),
        ("gateway: gw-b1", "gateway: gw-b1\ngateway: gw-b2", "gateway", "gw-b2", 3, "duplicate key"),
        ("port: 5020", "port: 5020\n  port: 5021", "port", "5021", 19, "duplicate key"),
        ("host: 127.0.0.1\n  port: 1883", "host:\n  port: 1883", "mqtt.host", None, 11, "empty (null in YAML)"),
        ("unit_id: 1\n", "unit_id: 1\n  - gas-b1-102\n", "sensors[1]", "gas-b1-102", 24, "must be a mapping"),
    ],
)
def test_yaml_traps_are_refused_by_name(
    tmp_path: Path, old: str, new: str, key: str, value: object, line: int, reason: str
) -> None:
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.key, info.value.value, info.value.line) == (key, value, line)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: {key} = ")


@pytest.mark.parametrize(
    ("text", "key", "line", "reason"),
    [
        ("- community: hongxing\n- gateway: gw-b1\n", "<top level>", 1, "found a list"),
        ("", "<top level>", None, "found nothing"),
        ("# only a comment\n", "<top level>", None, "found nothing"),
        ("community hongxing\n", "<top level>", None, "found text"),
        ("community: [hongxing\ngateway: gw-b1\n", "<file>", 2, "is not valid YAML"),
        ("community: hongxing\n---\ngateway: gw-b1\n", "<file>", 2, "is not valid YAML"),
        ("community: !!python/object/apply:os.system [touch pwned]\n", "community", 1, "must be a string"),
        ("community: !!float abc\n", "<file>", None, "ValueError"),
        ("community: " + "[" * 100_000 + "]" * 100_000 + "\n", "<file>", None, "RecursionError"),
    ],
)
def test_a_file_that_is_not_one_yaml_mapping_is_refused(
    tmp_path: Path, text: str, key: str, line: int | None, reason: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert (info.value.key, info.value.line) == (key, line)
    assert reason in info.value.reason


def test_a_config_built_in_code_has_no_lines(tmp_path: Path) -> None:
    data = {"community": "hongxing", "gateway": "gw-b1", "outbox": "o", "sensors": [{"id": "g", "kind": "gas"}]}
    with pytest.raises(ConfigError) as info:
        parse_config(data, base_dir=tmp_path, source="dict")
    assert (info.value.key, info.value.line, str(info.value)) == (
        "sensors[0].unit_id",
        None,
        "dict: sensors[0].unit_id = None: is required",
    )
    assert parse_config_text(GOOD, base_dir=tmp_path, source="text") == load_config(_write(tmp_path, GOOD))


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace("outbox: state/outbox.sqlite3\n", "")))
    assert info.value.key == "outbox"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "community: ["))
    assert info.value.key == "<file>"
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "absent.yaml")
    assert "cannot be read" in info.value.reason
    (tmp_path / "latin1.yaml").write_bytes(GOOD.replace("gw-b1", "gw-\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "latin1.yaml")
    assert "not UTF-8" in info.value.reason


def test_cli_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    assert main(["check-config", str(_write(tmp_path, GOOD))]) == 0
    assert capsys.readouterr().out == "ok: hongxing/gw-b1, 2 sensors\n"
    path = _write(tmp_path, GOOD.replace("max_batch: 500", "max_batch: -1"))
    assert main(["check-config", str(path)]) == 2
    assert f"{path}:6: max_batch = -1" in caplog.text


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
    config = load_config(_write(tmp_path, GOOD.replace("outbox_max_bytes: 67108864\n", "")))
    assert config.outbox_max_bytes == 256 * 1024 * 1024  # issue 3
    assert config.health_interval_s == 60.0
    config = load_config(_write(tmp_path, GOOD.replace("max_batch: 500", "max_batch: 500\nhealth_interval_s: 5")))
    assert config.health_interval_s == 5.0
    for bad in ("0", "0.05", "100000", '"60"', "nan", ".nan"):
        with pytest.raises(ConfigError) as info:
            load_config(_write(tmp_path, GOOD.replace("max_batch: 500", f"max_batch: 500\nhealth_interval_s: {bad}")))
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
    assert main(["outbox", "--config", str(tmp_path / "edge.yaml")]) == 0
    plain = capsys.readouterr().out.splitlines()
    assert all(int(line.partition("=")[2]) >= 0 for line in plain)  # tests/e2e/system.py edge_counters parses so
    assert main(["outbox", "--config", str(tmp_path / "edge.yaml"), "--health"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[: len(plain)] == plain
    assert lines[len(plain) :] == ["health.cpu_s=1.250", "health.reconnects=3"]  # NaN (unknown) is not stored


def test_drivers_and_per_detector_poll_periods(tmp_path: Path) -> None:
    text = GOOD.replace("unit_id: 1\n", "unit_id: 1\n    poll_interval_s: 5\n", 1)
    config = load_config(_write(tmp_path, text))
    assert config.modbus.driver == "modbus-tcp"
    assert [config.poll_interval(s) for s in config.sensors] == [5.0, 0.5]
    rtu = load_config(_write(tmp_path, GOOD.replace("timeout_s: 1.0", "timeout_s: 1.0\n  serial: /dev/ttyUSB0")))
    assert rtu.modbus.driver == "modbus-rtu"
    sim = load_config(_write(tmp_path, GOOD.replace("timeout_s: 1.0", "timeout_s: 1.0\n  driver: sim")))
    assert (sim.modbus.driver, sim.modbus.sim_sample_hz) == ("sim", 1.0)
