"""Hub process settings: from ``ANJU_*`` environment variables or the CLI, never built at import time.

Secrets (MQTT password, API token) may come from ``*_FILE`` variables pointing at a file, so they can live
in systemd credentials or Docker secrets and never in the environment of every child process or a log.
"""

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["HubSettings"]

_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "token", "admin"})


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ANJU_", extra="forbid", frozen=True)

    deployment: Path
    data_dir: Path = Path("data")
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_password_file: Path | None = None
    mqtt_client_id: str = "anju-hub"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    inbox_capacity: int = Field(default=10_000, ge=1)
    batch_messages: int = Field(default=500, ge=1)
    time_check_interval_s: float = Field(default=600.0, gt=0)
    """Seconds between two ``cmd/time`` clock checks of an online gateway (one also goes on each birth)."""
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The largest request body the API takes (413 beyond it): a batch of 500 risk events is ~0.3 MB."""

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Self:
        for name in ("mqtt_password", "api_token"):
            file: Path | None = getattr(self, f"{name}_file")
            if file is not None:
                if getattr(self, name) is not None:
                    raise ValueError(f"give {name} or {name}_file, not both")
                try:
                    text = file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ValueError(f"{name}_file {file}: {exc.strerror}") from exc
                object.__setattr__(self, name, SecretStr(text))
        token = self.api_token.get_secret_value() if self.api_token else None
        if token is not None and (len(token) < 16 or token.lower() in _PLACEHOLDERS):
            raise ValueError("api_token is a placeholder or shorter than 16 characters; generate a random one")
        return self

    @property
    def alerts_path(self) -> Path:
        return self.data_dir / "alerts.sqlite3"
