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


def test_the_shared_alert_database_is_a_postgresql_url_from_a_file_and_never_printed(
    tmp_path: Path, demo_deployment: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ANJU_API_TOKEN", "a-long-random-token-0123456789")
    url = tmp_path / "alerts-database.url"
    url.write_text("mysql://anju:db-password-kept-secret@127.0.0.1/anju\n", encoding="utf-8")
    assert main(["serve", "--config", str(demo_deployment), "--alerts-database-file", str(url)]) == 2
    err = capsys.readouterr().err
    assert "alerts_database must be a postgresql:// URL" in err and "db-password" not in err
    assert main(["serve", "--config", str(demo_deployment), "--alerts-database-file", str(tmp_path / "nope")]) == 2
    assert "alerts_database_file" in capsys.readouterr().err
    monkeypatch.setenv("ANJU_ALERTS_DATABASE", "postgresql://anju@127.0.0.1/anju")
    assert main(["serve", "--config", str(demo_deployment), "--alerts-database-file", str(url)]) == 2
    assert "give alerts_database or alerts_database_file, not both" in capsys.readouterr().err
    assert main(["serve", "--config", str(demo_deployment), "--lease-term", "2"]) == 2
    assert "lease_term_s: Input should be greater than or equal to 3" in capsys.readouterr().err
    url.write_text("postgresql://anju:db-password-kept-secret@127.0.0.1:5432/anju\n", encoding="utf-8")
    monkeypatch.delenv("ANJU_ALERTS_DATABASE")
    settings = HubSettings(deployment=demo_deployment, alerts_database_file=url)
    assert settings.alerts_url == "postgresql://anju:db-password-kept-secret@127.0.0.1:5432/anju"
    assert "db-password" not in repr(settings)


def test_leases_and_audit_verify_name_a_bad_database_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = tmp_path / "url"
    url.write_text("sqlite:///x\n", encoding="utf-8")
    assert main(["leases", "--database-file", str(url)]) == 2
    assert f"{url} does not hold a postgresql:// URL" in capsys.readouterr().err
    assert main(["audit", "verify", "--database-file", str(url)]) == 2
    assert "--database-file needs --community" in capsys.readouterr().err
    assert main(["leases", "--database-file", str(tmp_path / "missing")]) == 2
    assert "No such file or directory" in capsys.readouterr().err


def test_every_serve_flag_reaches_the_settings(demo_deployment: Path) -> None:
    """Each of serve's flags is a setting of the same name; --api-max-body-bytes was once parsed and dropped."""
    from hub.cli import build_parser, hub_options

    args = build_parser().parse_args(
        ["serve", "--config", str(demo_deployment), "--api-max-body-bytes", "4096", "--http-port", "8123",
         "--lease-term", "9"]
    )  # fmt: skip
    settings = HubSettings(**hub_options(args))  # type: ignore[arg-type]
    assert (settings.api_max_body_bytes, settings.http_port, settings.lease_term_s) == (4096, 8123, 9)
    flags = set(vars(args)) - {"log_level", "command", "handler"}
    assert flags <= set(HubSettings.model_fields), f"flags that are no setting: {flags - set(HubSettings.model_fields)}"
