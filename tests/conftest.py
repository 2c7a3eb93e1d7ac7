"""Fixtures shared by every test package: a real Mosquitto and a real InfluxDB on free loopback ports, the demo
deployment."""

import contextlib
import os
import queue
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from hub.demo.broker import find_mosquitto, mosquitto_config
from hub.demo.influxd import find_influxd, running_influxd
from hub.demo.postgres import Postgres, find_postgres, running_postgres
from hub.demo.processes import Child, Line, free_port, wait_port

REPO = Path(__file__).resolve().parents[1]
DEMO_DEPLOYMENT = REPO / "deploy" / "demo" / "deployment.yaml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def require_service(name: str, found: object) -> None:
    """Missing service: a failure under CI (CI=true), a skip on a developer's machine."""
    if found:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} is required under CI and is not installed (make test installs it)")
    pytest.skip(f"{name} is not installed")


@contextlib.contextmanager
def mosquitto_running(config: Path, *ports: int) -> Iterator[Child]:
    """Mosquitto on ``config`` until the block ends, listening on every one of ``ports`` (127.0.0.1) before it
    starts; the test fails naming a port it did not listen on (or is skipped, off CI, without Mosquitto)."""
    binary = find_mosquitto()
    require_service("mosquitto", binary)
    assert binary is not None
    with listening(Child("mosquitto", [binary, "-c", str(config)], queue.Queue[Line]()), *ports) as child:
        yield child


@contextlib.contextmanager
def listening(child: Child, *ports: int, problem: Callable[[], str] = lambda: "") -> Iterator[Child]:
    """``child`` started and listening on every one of ``ports`` (127.0.0.1) until the block ends, then stopped; the
    test fails naming a port it did not listen on, with ``problem()`` (say, the end of its log) appended."""
    child.start()
    try:
        for port in ports:
            if not wait_port(port, timeout_s=10):
                pytest.fail(f"{child.name} ({' '.join(child.argv)}) did not listen on 127.0.0.1:{port} {problem()}")
        yield child
    finally:
        child.stop(grace_s=5)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A real Mosquitto on 127.0.0.1, anonymous, for this test only; yields its port."""
    port = free_port()
    with mosquitto_running(mosquitto_config(port=port, directory=tmp_path / "mosquitto"), port):
        yield port


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[str]:
    """A real InfluxDB 1.x (Debian's package) on 127.0.0.1, data under tmp_path, for this test only; yields its URL."""
    binary = find_influxd()
    require_service("influxdb", binary)
    assert binary is not None
    with running_influxd(binary, tmp_path / "influxdb") as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A real PostgreSQL (Debian's package) on 127.0.0.1 for the whole session; tests keep apart by schema or
    database."""
    bin_dir = find_postgres()
    require_service("postgresql", bin_dir)
    assert bin_dir is not None
    with running_postgres(bin_dir) as server:
        yield server


@pytest.fixture
def database_url(postgres_server: Postgres) -> Iterator[str]:
    """A database of this test's own on the session's PostgreSQL (leases are per database); yields its URL."""
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.database_url(name)
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def engine_fixture(use_postgres: Callable[[str | None], None], what: str) -> Callable[..., Iterator[str]]:
    """A fixture parametrized over ``sqlite`` and ``postgresql`` for tests whose ``what`` opens through a helper that
    ``use_postgres(url)`` points at a schema of the session's PostgreSQL (and ``use_postgres(None)`` back at SQLite)."""

    @pytest.fixture(params=["sqlite", "postgresql"])
    def engine(request: pytest.FixtureRequest) -> Iterator[str]:
        if request.param == "postgresql":
            server: Postgres = request.getfixturevalue("postgres_server")
            use_postgres(server.url)
        try:
            yield request.param
        finally:
            use_postgres(None)

    engine.__doc__ = f"The engine under {what}: a SQLite file, or a schema of the session's PostgreSQL."
    return engine


@pytest.fixture
def demo_deployment(tmp_path: Path) -> Path:
    """The demo deployment file copied next to a generated webhook secret."""
    target = tmp_path / "deployment.yaml"
    shutil.copy(DEMO_DEPLOYMENT, target)
    (tmp_path / "webhook.secret").write_text("test-webhook-secret-0123456789abcdef\n", encoding="utf-8")
    return target
