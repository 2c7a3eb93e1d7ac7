"""``anju-hub serve`` refuses bad settings before it starts, naming the setting and never printing secrets."""

from pathlib import Path

import pytest

from hub.cli import main
from hub.settings import HubSettings


def test_a_rejected_token_is_named_but_not_printed(
    demo_deployment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANJU_API_TOKEN", "abcDEF123")
    monkeypatch.setenv("ANJU_MQTT_PASSWORD", "broker-password-that-must-stay-secret")
    assert main(["serve", "--config", str(demo_deployment)]) == 2
    err = capsys.readouterr().err
    assert "api_token is a placeholder or shorter than 16 characters" in err
    assert "abcDEF123" not in err and "broker-pass" not in err


def test_the_deployment_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "deployment.yaml"
    bad.write_text("community: {id: Hong Xing, name: x}\n", encoding="utf-8")
    monkeypatch.setenv("ANJU_DEPLOYMENT", str(bad))
    monkeypatch.setenv("ANJU_API_TOKEN", "a-long-random-token-0123456789")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: community.id = 'Hong Xing'" in err


def test_missing_deployment_and_unreadable_token_file(
    tmp_path: Path, demo_deployment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ANJU_DEPLOYMENT", raising=False)
    assert main(["serve"]) == 2
    assert "deployment: Field required" in capsys.readouterr().err
    assert main(["serve", "--config", str(demo_deployment), "--api-token-file", str(tmp_path / "nope")]) == 2
    assert "api_token_file" in capsys.readouterr().err


def test_the_time_check_interval_is_a_flag_and_a_variable_and_must_be_positive(
    demo_deployment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANJU_API_TOKEN", "a-long-random-token-0123456789")
    assert main(["serve", "--config", str(demo_deployment), "--time-check-interval", "0"]) == 2
    assert "time_check_interval_s: Input should be greater than 0" in capsys.readouterr().err
    monkeypatch.setenv("ANJU_TIME_CHECK_INTERVAL_S", "-5")
    assert main(["serve", "--config", str(demo_deployment)]) == 2
    assert "time_check_interval_s: Input should be greater than 0" in capsys.readouterr().err
    monkeypatch.setenv("ANJU_TIME_CHECK_INTERVAL_S", "30")
    assert HubSettings(deployment=demo_deployment).time_check_interval_s == 30
    monkeypatch.delenv("ANJU_TIME_CHECK_INTERVAL_S")
    assert HubSettings(deployment=demo_deployment).time_check_interval_s == 600, "ten minutes by default"
