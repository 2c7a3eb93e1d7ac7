"""The identity database's engine for the hub tests that open an identity store (each runs on a SQLite file and again
on a schema of a real PostgreSQL), as tests/alerts/conftest.py does for the alert store."""

from __future__ import annotations

from tests.conftest import engine_fixture
from tests.hub.identity_support import use_postgres

identity_engine = engine_fixture(use_postgres, "this test's ``open_identity_store``")
