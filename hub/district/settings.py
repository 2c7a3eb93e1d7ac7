"""The district node's settings: a server's (``ServerSettings``: listen address, logins, tokens, the shared
database) and the shard map naming the communities and sub-districts. ``ANJU_*`` variables or the CLI."""

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator

from hub.settings import ServerSettings

__all__ = ["DISTRICT_SCHEMA", "DistrictSettings"]

DISTRICT_SCHEMA = "anju_district"
"""The PostgreSQL schema of the district node's own users, sessions and tokens (no community is called this: a
community's schema is ``anju_{community}`` and ``district`` is no community of a shard map's)."""


class DistrictSettings(ServerSettings):
    """``anju-hub district serve``: ``alerts_database`` (or its ``_file``) is required — the communities' state is
    read there — and ``data_dir`` holds only the list cursors' signing key."""

    shard_map: Path
    http_port: int = Field(default=8090, ge=0, le=65535)

    @model_validator(mode="after")
    def _needs_database(self) -> Self:
        if self.alerts_url is None:
            raise ValueError("the district node reads the communities from PostgreSQL: set alerts_database_file")
        return self
