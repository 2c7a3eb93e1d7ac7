"""A property-based fuzz of the published OpenAPI schema against a running hub (issue 7): Schemathesis makes
requests from every operation's schema, valid and not, and each answer must be no server error (5xx) and, where the
schema documents the status, match its documented body. The hub is ``anju-hub serve`` with a real Mosquitto; the
caller holds the admin token, so every route is reached (scopes have their own tests)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from hub.demo.hub_process import serving_hub
from hub.demo.processes import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("ANJU_FUZZ_EXAMPLES", "12"))
"""Requests per operation (a bounded run in CI; raise it for a longer hunt)."""
SKIPPED = {("GET", "/api/v1/stream")}
"""The live stream never ends: its own tests read it (tests/hub/test_stream.py)."""


@pytest.fixture
def hub_url(mosquitto: int, demo_deployment: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    with serving_hub(
        config=demo_deployment,
        data_dir=tmp_path / "data",
        mqtt_port=mosquitto,
        http_port=free_port(),
        log=tmp_path / "hub.log",
    ) as served:
        yield served


def fuzz_schema(base: str, token: str, skipped: set[tuple[str, str]] = frozenset()) -> tuple[int, list[str]]:
    """Every operation of the OpenAPI schema at ``base`` (but ``skipped``), ``EXAMPLES`` requests each with the
    ``token``: how many operations ran, and each one's first failure (a 5xx, or a documented answer in another
    shape). Shared by the hub's fuzz and the district node's (tests/hub/test_district.py)."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skipped:
            continue
        operations += 1

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers=headers, timeout=15)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            run()
        except (Exception, FailureGroup) as exc:  # each operation's first failure, reported together
            detail = "; ".join(str(e)[:300] for e in getattr(exc, "exceptions", [exc]))
            failures.append(f"{operation.method.upper()} {operation.path}: {detail}")
    return operations, failures


def test_no_operation_answers_a_server_error_or_breaks_its_schema(hub_url: tuple[str, str]) -> None:
    base, token = hub_url
    operations, failures = fuzz_schema(base, token, SKIPPED)
    assert operations > 50, "the schema lists the hub's routes"
    assert not failures, "\n\n".join(failures)
