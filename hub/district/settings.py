"""The district node's settings: a server's (``ServerSettings``: listen address, logins, tokens, the shared
database) and the shard map naming the communities and sub-districts. ``ANJU_*`` variables or the CLI."""

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, model_validator

from hub.settings import ServerSettings, secret_from_file

__all__ = ["DISTRICT_SCHEMA", "DistrictSettings"]

DISTRICT_SCHEMA = "anju_district"
"""The PostgreSQL schema of the district node's own users, sessions and tokens (no community is called this: a
community's schema is ``anju_{community}`` and ``district`` is no community of a shard map's)."""


class DistrictSettings(ServerSettings):
    """``anju-hub district serve``: ``alerts_database`` (or its ``_file``) is required — the communities' state is
    read there — and ``data_dir`` holds only the list cursors' signing key."""

    shard_map: Path
    http_port: int = Field(default=8090, ge=0, le=65535)
    hub_token: SecretStr | None = None
    """The hubs' static API token (the workers' ``ANJU_API_TOKEN_FILE``), with which the node hands an incident
    declared in several communities to each community's hub (hub/district/declarations.py); without it the node
    only reads. ``hub_token_file`` reads it from a file."""
    hub_token_file: Path | None = None
    hub_url_template: str | None = Field(default=None, pattern=r"^https?://[^\s]*\{community\}[^\s]*$")
    """Where a community's hub answers, e.g. ``https://{community}.anju.example.org`` (``anju-hub shards proxy``);
    None: at the shard map's host of the worker holding the community's lease, and the community's port."""

    @model_validator(mode="after")
    def _needs_database(self) -> Self:
        secret_from_file(self, "hub_token")
        if self.alerts_url is None:
            raise ValueError("the district node reads the communities from PostgreSQL: set alerts_database_file")
        return self

    @property
    def hub_token_value(self) -> str | None:
        return self.hub_token.get_secret_value() if self.hub_token else None
