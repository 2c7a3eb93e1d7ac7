"""The identity database's engine for the hub tests that open an identity store (each runs on a SQLite file and again
on a schema of a real PostgreSQL), as tests/alerts/conftest.py does for the alert store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hub.demo.postgres import Postgres
from tests.hub.identity_support import use_postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def identity_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The engine under this test's ``open_identity_store``: a SQLite file, or a schema of the session's PostgreSQL."""
    if request.param == "postgresql":
        server: Postgres = request.getfixturevalue("postgres_server")
        use_postgres(server.url)
    try:
        yield request.param
    finally:
        use_postgres(None)
