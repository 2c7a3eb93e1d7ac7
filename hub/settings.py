"""Hub process settings: from ``ANJU_*`` environment variables or the CLI, never built at import time.

Secrets (MQTT password, API token) may come from ``*_FILE`` variables pointing at a file, so they can live
in systemd credentials or Docker secrets and never in the environment of every child process or a log.
"""

import hashlib
import ssl
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from protocol.transport import TlsFileError, client_tls_context

__all__ = ["HubSettings", "ServerSettings", "alerts_schema", "database_url", "secret_from_file"]

_PLACEHOLDERS = frozenset({"changeme", "change-me", "secret", "password", "token", "admin"})


class ServerSettings(BaseSettings):
    """What every Anju HTTP server reads: where it listens, its data dir, logins and tokens, and the shared alert
    database — the hub (``HubSettings``) and the district node (hub/district/settings.py)."""

    model_config = SettingsConfigDict(env_prefix="ANJU_", extra="forbid", frozen=True)

    data_dir: Path = Path("data")
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    api_max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """The largest request body the API takes (413 beyond it): a batch of 500 risk events is ~0.3 MB."""
    access_token_ttl_s: float = Field(default=900.0, ge=10, le=3600)
    """Seconds an access token from a password login lives (15 min): a leaked one is useful for this long at most;
    the refresh token gets the next one."""
    refresh_token_ttl_s: float = Field(default=7 * 86_400.0, ge=60, le=90 * 86_400)
    """Seconds a bearer session lives from its login, however often it is refreshed (a phone logs in weekly)."""
    cookie_session_ttl_s: float = Field(default=12 * 3600.0, ge=60, le=7 * 86_400)
    """Seconds a browser (cookie) session lives from its login: one duty shift."""
    login_max_failures: int = Field(default=5, ge=1, le=100)
    """Wrong passwords in a row after which a user is locked out for ``login_lockout_s``."""
    login_lockout_s: float = Field(default=900.0, ge=1, le=86_400)
    login_address_failures: int = Field(default=20, ge=1, le=10_000)
    """Failed logins one client address may make in ``login_address_window_s`` (any user names) before it waits:
    guessing across many accounts from one place is slowed even though no single account locks."""
    login_address_window_s: float = Field(default=300.0, ge=1, le=86_400)
    alerts_database: SecretStr | None = None
    """A ``postgresql://`` URL: alert state (and the community's lease) in PostgreSQL, shared with standby hubs of the
    same community, instead of ``alerts.sqlite3`` in the data dir. Secret, since a URL may carry a password (prefer
    libpq's ``PGPASSFILE``); ``alerts_database_file`` reads it from a file."""
    alerts_database_file: Path | None = None

    @model_validator(mode="after")
    def _server_secrets(self) -> Self:
        for name in ("api_token", "alerts_database"):
            secret_from_file(self, name)
        token = self.api_token.get_secret_value() if self.api_token else None
        if token is not None and (len(token) < 16 or token.lower() in _PLACEHOLDERS):
            raise ValueError("api_token is a placeholder or shorter than 16 characters; generate a random one")
        url = self.alerts_database.get_secret_value() if self.alerts_database else None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("alerts_database must be a postgresql:// URL (without it, alerts.sqlite3 in the data dir)")
        return self

    @property
    def alerts_url(self) -> str | None:
        """The PostgreSQL URL of the shared alert database, or None (SQLite in the data dir)."""
        return self.alerts_database.get_secret_value() if self.alerts_database else None


def secret_from_file(settings: BaseSettings, name: str) -> None:
    """Set the secret ``name`` from the file ``{name}_file`` names, if any; ValueError when both are given or the
    file cannot be read."""
    file: Path | None = getattr(settings, f"{name}_file")
    if file is None:
        return
    if getattr(settings, name) is not None:
        raise ValueError(f"give {name} or {name}_file, not both")
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{name}_file {file}: {exc.strerror}") from exc
    object.__setattr__(settings, name, SecretStr(text))


class HubSettings(ServerSettings):
    """A hub of one community (``anju-hub serve``)."""

    deployment: Path
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_password_file: Path | None = None
    mqtt_client_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    """The routine session's MQTT client id (the urgent one adds ``-urgent``); None: ``anju-hub-{community}``
    (``client_id``). Hubs of different communities share a broker, and two hubs with one client id take each other's
    session over on every connect, so the default differs per community. A broker that takes the client id from the
    user name (``use_username_as_clientid``, deploy/mosquitto/secure.conf) ignores this: there the hub's user names
    must differ per hub."""
    mqtt_tls: bool = False
    """TLS to the broker (deploy/mosquitto/secure.conf, port 8883), its certificate checked against ``mqtt_ca_file``."""
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    """A client certificate (with ``mqtt_key_file``), for a broker that requires one."""
    mqtt_key_file: Path | None = None
    inbox_capacity: int = Field(default=10_000, ge=1)
    batch_messages: int = Field(default=500, ge=1)
    time_check_interval_s: float = Field(default=600.0, gt=0)
    """Seconds between two ``cmd/time`` clock checks of an online gateway (one also goes on each birth)."""
    lease_term_s: float = Field(default=15.0, ge=3, le=120)
    """Seconds one lease renewal holds: a dead hub's community is taken over by a standby within this, plus the
    standby's 1 s poll and its start (issue 8 asks for 30 s)."""
    lease_holder: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    """This hub's name in the lease table; None: ``host:pid:random``."""

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Self:
        secret_from_file(self, "mqtt_password")
        password = self.mqtt_password.get_secret_value() if self.mqtt_password else None
        if password is not None and password.lower() in _PLACEHOLDERS:
            raise ValueError("mqtt_password is a placeholder; use the one `anju-hub provision init` wrote (hub.secret)")
        if self.mqtt_tls:
            self.mqtt_tls_context()
        elif any(getattr(self, f"mqtt_{name}_file") for name in ("ca", "cert", "key")):
            raise ValueError("mqtt_ca_file, mqtt_cert_file and mqtt_key_file need mqtt_tls = true")
        return self

    def mqtt_tls_context(self) -> ssl.SSLContext | None:
        """The TLS context to the broker, or None for plain TCP; ValueError naming the unusable file."""
        if not self.mqtt_tls:
            return None
        try:
            return client_tls_context(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)
        except TlsFileError as exc:
            raise ValueError(f"mqtt_{exc}") from None

    def client_id(self, community: str) -> str:
        """The MQTT client id of the hub of ``community``: ``mqtt_client_id``, or ``anju-hub-{community}``."""
        return self.mqtt_client_id or f"anju-hub-{community}"

    @property
    def alerts_path(self) -> Path:
        return self.data_dir / "alerts.sqlite3"

    @property
    def identity_path(self) -> Path:
        """Users, sessions, API tokens and their audit (hub/identity/store.py); ``anju-hub users`` edits it too."""
        return self.data_dir / "identity.sqlite3"


def alerts_schema(community: str) -> str:
    """The PostgreSQL schema of ``community``'s alert state: ``anju_{community}``, or for an id too long for
    PostgreSQL's 63-byte names, its first 40 characters and a digest of the whole."""
    name = f"anju_{community}"
    if len(name) <= 63:
        return name
    return f"anju_{community[:40]}_{hashlib.sha256(community.encode()).hexdigest()[:16]}"


def database_url(file: Path) -> str:
    """The ``postgresql://`` URL held in ``file`` (``alerts_database_file``); ValueError naming what is wrong."""
    try:
        url = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{file}: {exc.strerror}") from None
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{file} does not hold a postgresql:// URL")
    return url
