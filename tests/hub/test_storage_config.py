"""The ``storage:`` section of the deployment file and ``open_store``, which opens what it names."""

import textwrap
import time
from pathlib import Path

import pytest

from hub.config import ConfigError, load_deployment
from hub.store.base import ReadingColumns, StoredReading
from hub.store.chunks import ChunkStore
from hub.store.influx import InfluxStore
from hub.store.open import open_store

BASE = """\
community: {id: hongxing, name: 红星社区}
grids:
  - {id: grid-1, name: 第一网格, managers: [wang-li]}
people:
  - {id: wang-li, name: 王丽}
gateways:
  - id: gw-b1
    sensors:
      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1}
"""


def write(tmp_path: Path, storage: str) -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(BASE + textwrap.dedent(storage), encoding="utf-8")
    return path


def issues(path: Path) -> list[tuple[int | None, str, object, str]]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    return [(i.line, i.path, i.value, i.message) for i in caught.value.issues]


def test_storage_defaults_to_the_embedded_store(tmp_path: Path) -> None:
    storage = load_deployment(write(tmp_path, "")).storage
    assert (storage.backend, storage.raw_retention_days, storage.rollup_retention_days, storage.influxdb) == (
        "embedded",
        30,
        365,
        None,
    )


def test_an_influxdb_section_with_every_field(tmp_path: Path) -> None:
    (tmp_path / "influx.password").write_text("s3cret-pass\n", encoding="utf-8")
    storage = load_deployment(
        write(
            tmp_path,
            """\
            storage:
              backend: influxdb
              raw_retention_days: 14
              rollup_retention_days: 730
              influxdb:
                url: http://127.0.0.1:8086
                database: district
                retention_policy: raw14
                rollup_retention_policy: r1m
                username: hub
                password_file: influx.password
                timeout_s: 3
            """,
        )
    ).storage
    assert storage.influxdb is not None
    assert (storage.backend, storage.raw_retention_days, storage.rollup_retention_days) == ("influxdb", 14, 730)
    assert (storage.influxdb.database, storage.influxdb.retention_policy, storage.influxdb.timeout_s) == (
        "district",
        "raw14",
        3.0,
    )


def test_influxdb_backend_without_its_section_is_named(tmp_path: Path) -> None:
    assert issues(write(tmp_path, "storage: {backend: influxdb}\n")) == [
        (10, "storage.influxdb", None, "required when storage.backend is influxdb")
    ]


def test_bad_values_and_unknown_keys_are_named_with_their_lines(tmp_path: Path) -> None:
    found = issues(
        write(
            tmp_path,
            """\
            storage:
              backend: influx
              raw_retention_days: 0
              influxdb:
                url: ftp://db
                api_version: 3
                colour: red
            """,
        )
    )
    by_path = {path: (line, value, message) for line, path, value, message in found}
    assert by_path["storage.backend"][:2] == (11, "influx")
    assert "'embedded' or 'influxdb'" in str(by_path["storage.backend"][2])
    assert by_path["storage.raw_retention_days"][:2] == (12, 0)
    assert by_path["storage.influxdb.url"][:2] == (14, "ftp://db")
    assert by_path["storage.influxdb.api_version"][:2] == (15, 3)
    assert by_path["storage.influxdb.colour"] == (16, "red", "unknown key")


def test_what_each_api_version_needs(tmp_path: Path) -> None:
    v2 = issues(
        write(tmp_path, "storage:\n  influxdb: {url: 'http://127.0.0.1:8086', api_version: 2, username: hub}\n")
    )
    assert {(path, message) for _, path, _, message in v2} == {
        ("storage.influxdb.org", "required for api_version 2"),
        ("storage.influxdb.bucket", "required for api_version 2"),
        ("storage.influxdb.token_file", "required for api_version 2"),
        ("storage.influxdb.username", "only for api_version 1 (2.x takes token_file)"),
    }
    v1 = issues(write(tmp_path, "storage:\n  influxdb: {url: 'http://127.0.0.1:8086', token_file: t, username: hub}\n"))
    assert {(path, message) for _, path, _, message in v1} == {
        ("storage.influxdb.token_file", "only for api_version 2"),
        ("storage.influxdb", "give both username and password_file, or neither"),
    }


def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    text = """\
    storage:
      backend: influxdb
      influxdb: {url: 'http://127.0.0.1:8086', api_version: 2, org: o, bucket: b, token_file: nowhere.token}
    """
    [(line, path, value, message)] = issues(write(tmp_path, text))
    assert (line, path, value) == (12, "storage.influxdb.token_file", "nowhere.token")
    assert "nowhere.token" in message
    assert load_deployment(write(tmp_path, text), check_secrets=False).storage.backend == "influxdb"


def test_open_store_embedded(tmp_path: Path) -> None:
    deployment = load_deployment(write(tmp_path, "storage: {raw_retention_days: 3, rollup_retention_days: 40}\n"))
    store = open_store(deployment, tmp_path / "data")
    try:
        assert isinstance(store, ChunkStore)
        assert store.path == tmp_path / "data" / "readings.anju"
        assert (store.raw_retention_days, store.rollup_retention_days) == (3, 40)
    finally:
        store.close()


def test_open_store_influxdb_from_the_deployment_file(tmp_path: Path, influxdb: str) -> None:
    text = f"""\
    storage:
      backend: influxdb
      raw_retention_days: 10
      influxdb: {{url: '{influxdb}', database: from-config, timeout_s: 5}}
    """
    deployment = load_deployment(write(tmp_path, text))
    store = open_store(deployment, tmp_path / "data", config_dir=tmp_path)
    try:
        assert isinstance(store, InfluxStore)
        assert (store.community, store.raw_retention_days, store.target.database) == ("hongxing", 10, "from-config")
        t = time.time_ns() // 1_000_000
        assert store.commit(ReadingColumns.of([StoredReading("gas-1", t, 1.25, "gw-b1")]), [], []) == 1
        assert store.latest(["gas-1"]) == {"gas-1": StoredReading("gas-1", t, 1.25, "gw-b1")}
        assert (tmp_path / "data" / "influx-meta.sqlite3").exists()
    finally:
        store.close()
