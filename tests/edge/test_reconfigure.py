"""The config push's file steps and checks, in-process on a real directory (the whole push: test_config_push.py)."""

import os
from pathlib import Path

import pytest

from edge.commands import ConfigPush
from edge.config import ConfigError, load_config
from edge.reconfigure import ConfigFile, check_push
from tests.edge.support import config_text

UNITS = {1: ("gas-b1-101", "gas")}
OLD = config_text(broker_port=1883, modbus_port=502, sensors=UNITS)
NEW = config_text(broker_port=1883, modbus_port=502, sensors=UNITS, extra={"poll_interval_s": 2.0})


@pytest.fixture
def file(tmp_path: Path) -> ConfigFile:
    path = tmp_path / "edge.yaml"
    path.write_text(OLD, encoding="utf-8")
    path.chmod(0o640)
    return ConfigFile(path)


def _names(file: ConfigFile) -> set[str]:
    return {entry.name for entry in file.path.parent.iterdir()}


def test_apply_keeps_the_previous_file_and_marks_the_trial(file: ConfigFile) -> None:
    file.apply(NEW, "c-1")
    assert file.path.read_text(encoding="utf-8") == NEW
    assert file.previous.read_text(encoding="utf-8") == OLD
    assert file.trial.read_text(encoding="utf-8") == "c-1"
    assert _names(file) == {"edge.yaml", "edge.yaml.prev", "edge.yaml.trial"}, "no staging file left behind"
    assert {os.stat(p).st_mode & 0o777 for p in (file.path, file.previous)} == {0o640}
    file.keep()
    assert _names(file) == {"edge.yaml", "edge.yaml.prev"}
    assert file.recover() is None and file.path.read_text(encoding="utf-8") == NEW


def test_restore_and_recover_go_back_to_the_previous_file(file: ConfigFile) -> None:
    file.apply(NEW, "c-2")
    file.restore()
    assert file.path.read_text(encoding="utf-8") == OLD and _names(file) == {"edge.yaml", "edge.yaml.prev"}
    file.apply(NEW, "c-3")  # and the process dies on trial: the next start recovers
    assert file.recover() == "c-3"
    assert file.path.read_text(encoding="utf-8") == OLD and not file.trial.exists()
    assert file.recover() is None


def test_a_marker_without_a_previous_file_is_dropped_and_the_file_kept(file: ConfigFile) -> None:
    file.trial.write_text("c-4", encoding="utf-8")
    assert file.recover() == "c-4"
    assert file.path.read_text(encoding="utf-8") == OLD and _names(file) == {"edge.yaml"}


def test_check_push_validates_with_the_file_loader_and_guards_identity_and_outbox(file: ConfigFile) -> None:
    current = load_config(file.path)
    config = check_push(ConfigPush("c-5", NEW), current=current, path=file.path)
    assert config.poll_interval_s == 2.0 and config.outbox == current.outbox  # relative to the file's directory
    absolute = {"outbox": str(file.path.parent / "outbox.sqlite3")}
    same = config_text(broker_port=1883, modbus_port=502, sensors=UNITS, extra=absolute)
    assert check_push(ConfigPush("c-6", same), current=current, path=file.path).outbox == current.outbox
    for key, value in (("community", "other"), ("gateway", "gw-b9"), ("outbox", "o.db"), ("outbox_max_bytes", 65536)):
        text = config_text(broker_port=1883, modbus_port=502, sensors=UNITS, extra={key: value})
        with pytest.raises(ConfigError) as info:
            check_push(ConfigPush("c-7", text), current=current, path=file.path)
        assert info.value.key == key and "cannot change by a push" in info.value.reason
        assert str(info.value).startswith(f"cmd/config id=c-7: {key} = ")
    with pytest.raises(ConfigError) as info:
        check_push(ConfigPush("c-8", NEW.replace("max_batch: 50", "max_batch: 050")), current=current, path=file.path)
    assert (info.value.key, info.value.line, info.value.source) == ("max_batch", 6, "cmd/config id=c-8")
