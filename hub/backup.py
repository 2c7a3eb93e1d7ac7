"""``anju-hub backup`` and ``restore``: the hub's data directory copied while the hub runs, put back into a new one.

What a data directory holds: SQLite databases (the embedded store ``readings.anju``, the alerts ``alerts.sqlite3``
with their audit log, users and sessions ``identity.sqlite3``, the InfluxDB backend's ``influx-meta.sqlite3``) and
the detection layers' saved states (``*-state.json``, ``anomaly-state.npz``). A database is copied with SQLite's
online backup (one read transaction, so the copy is the database as of one instant, whatever the hub commits
meanwhile; its WAL is folded in); any other file is copied as it is (the hub replaces those by rename, so a copy
never sees half of one). ``manifest.json`` lists every file with its size and SHA-256, and each database's tables
with their row counts, so that a restore can check what it puts back.

A restore goes into a data directory that holds no data yet (never over a hub's live files): it checks every file
against the manifest and every database with ``PRAGMA integrity_check`` before the first byte is written, then
copies. The hub started on it carries on from the instant of the backup: what gateways sent and the hub had not
acked by then they send again (their outboxes keep a reading until it is acked), but readings acked after the backup
were dropped from the outboxes and are not in it — a restore loses what came between the backup and the failure, so
back up often (the copy of a database is cheap: no lock is held on the hub's writes).
"""

import hashlib
import json
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BackupError", "BackupReport", "backup", "restore"]

MANIFEST = "manifest.json"
FORMAT = 1
_SQLITE_HEADER = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")


class BackupError(Exception):
    """A backup or restore that cannot be done, saying which file and why."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    directory: Path
    files: int
    databases: dict[str, dict[str, int]]
    """Database file → table → rows."""
    bytes: int


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        return file.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _tables(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {name: connection.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in names}
    finally:
        connection.close()


def _integrity(path: Path) -> str:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def _data_files(data_dir: Path) -> list[Path]:
    return sorted(
        p for p in data_dir.iterdir() if p.is_file() and not p.name.endswith(_SIDE_FILES) and not p.name.startswith(".")
    )


def backup(data_dir: Path, target: Path) -> BackupReport:
    """Copy ``data_dir`` (the hub may be running) into ``target``, a new directory, with its manifest."""
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir}: no such data directory")
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target}: not empty; a backup goes into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    entries, databases, total = [], {}, 0
    for source in _data_files(data_dir):
        copy = target / source.name
        if _is_sqlite(source):
            live = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
            into = sqlite3.connect(copy)
            try:
                live.backup(into)  # one read transaction: the database as of one instant
                into.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
            finally:
                into.close()
                live.close()
            databases[source.name] = _tables(copy)
        else:
            shutil.copy2(source, copy)
        size = copy.stat().st_size
        total += size
        entries.append(
            {"name": source.name, "bytes": size, "sha256": _sha256(copy), "sqlite": source.name in databases}
        )
    manifest = {"format": FORMAT, "made_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "source": str(data_dir.resolve()),
                "files": entries, "databases": databases}  # fmt: skip
    (target / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return BackupReport(target, len(entries), databases, total)


def restore(source: Path, data_dir: Path) -> BackupReport:
    """Check the backup in ``source`` whole, then copy it into ``data_dir`` (missing or empty of data)."""
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise BackupError(f"{source}: no {MANIFEST}; not an anju-hub backup")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{manifest_path}: unreadable ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{manifest_path}: backup format {manifest.get('format')!r}, this hub reads {FORMAT}")
    if data_dir.exists() and _data_files(data_dir):
        raise BackupError(f"{data_dir}: holds data already; restore into a new data directory (the hub stopped)")
    for entry in manifest["files"]:
        path = source / entry["name"]
        if not path.is_file():
            raise BackupError(f"{path}: listed in the manifest but missing")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise BackupError(f"{path}: its size or SHA-256 differs from the manifest (damaged or changed)")
        if entry["sqlite"] and (verdict := _integrity(path)) != "ok":
            raise BackupError(f"{path}: SQLite integrity check failed: {verdict}")
    data_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for entry in manifest["files"]:
        shutil.copy2(source / entry["name"], data_dir / entry["name"])
        total += entry["bytes"]
    databases = {name: _tables(data_dir / name) for name in manifest["databases"]}
    return BackupReport(data_dir, len(manifest["files"]), databases, total)
