"""The store a deployment asks for (``storage:`` in the deployment file), opened and ready."""

from pathlib import Path

from hub.config import Deployment, InfluxConfig, read_secret_file
from hub.store.base import ReadingStore
from hub.store.influx import InfluxStore
from hub.store.influx_http import InfluxTarget

__all__ = ["EMBEDDED_FILE", "embedded_path", "influx_target", "open_store"]


def influx_target(config: InfluxConfig, *, config_dir: Path) -> InfluxTarget:
    """Where and how to reach InfluxDB, with secrets read from their files (relative to ``config_dir``)."""
    if config.api_version == 2:
        if config.org is None or config.bucket is None or config.token_file is None:
            raise ValueError("storage.influxdb: api_version 2 needs org, bucket and token_file")
        return InfluxTarget.v2(
            url=config.url,
            org=config.org,
            bucket=config.bucket,
            token=read_secret_file(config.token_file, config_dir),
            database=config.database,
            retention_policy=config.retention_policy,
        )
    password = None if config.password_file is None else read_secret_file(config.password_file, config_dir)
    return InfluxTarget.v1(
        url=config.url,
        database=config.database,
        retention_policy=config.retention_policy,
        rollup_retention_policy=config.rollup_retention_policy,
        username=config.username,
        password=password,
    )


EMBEDDED_FILE = "readings.anju"
"""The embedded store's file in the hub's data directory (not ``.sqlite3``: the layout is ours, hub/store/chunks.py)."""


def embedded_path(data_dir: Path) -> Path:
    """Where the embedded store of a hub with this data directory lives (tools and tests open it read-only)."""
    return data_dir / EMBEDDED_FILE


def open_store(deployment: Deployment, data_dir: Path, *, config_dir: Path = Path(".")) -> ReadingStore:
    """The deployment's store: embedded (``data_dir/EMBEDDED_FILE``) or InfluxDB (its small tables in
    ``data_dir/influx-meta.sqlite3``). ``config_dir`` is the deployment file's folder, where secret files are
    looked up. Raises if InfluxDB cannot be reached or refuses to set up its database (1.x)."""
    storage = deployment.storage
    if storage.backend == "embedded":
        from hub.store.chunks import ChunkStore  # here: the embedded engine loads only when chosen

        return ChunkStore(
            path=data_dir / EMBEDDED_FILE,
            raw_retention_days=storage.raw_retention_days,
            rollup_retention_days=storage.rollup_retention_days,
        )
    if storage.influxdb is None:
        raise ValueError("storage.backend is influxdb but there is no storage.influxdb section")
    return InfluxStore(
        target=influx_target(storage.influxdb, config_dir=config_dir),
        community=deployment.community.id,
        meta_path=data_dir / "influx-meta.sqlite3",
        raw_retention_days=storage.raw_retention_days,
        rollup_retention_days=storage.rollup_retention_days,
        timeout_s=storage.influxdb.timeout_s,
    )
