"""The community's registry in its PostgreSQL schema, for every node of a city to read (issue 8: "the registry moves
to PostgreSQL so that any worker or API node sees all of it").

The hub that holds the community's lease writes its gateways — where each is, how many detectors it carries,
whether it is online now and since when, when it last sent anything — and its sensors into the community's schema
(``anju_{community}``), beside the alert state. The district node (hub/district/) reads them: which communities
have gateways offline, and which ones, without asking each hub.

The deployment file stays the registry's source (configuration as code, reviewed and copied by configuration
management); this is its published copy with the live state added. Every write is fenced by the lease, like the
alert store's: a hub that lost its community cannot overwrite what its successor wrote.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from alerts.sqldb import Database, DatabaseError, Fence, open_database, postgres_ddl
from hub.ingest.registry import GatewayStatus, Registry
from hub.lease import LeaseLost

__all__ = ["GatewayRow", "RegistryCounts", "RegistryMirror", "RegistryStore", "SensorRow", "rows_of"]

log = logging.getLogger("anju.hub.registry")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_gateways (
    id TEXT PRIMARY KEY,
    location TEXT NOT NULL,
    sensors INTEGER NOT NULL,
    online INTEGER NOT NULL,
    session INTEGER,
    changed_ms INTEGER NOT NULL,
    last_message_ms INTEGER
);
CREATE TABLE IF NOT EXISTS registry_sensors (
    gateway TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT NOT NULL,
    location TEXT NOT NULL,
    grid TEXT NOT NULL,
    PRIMARY KEY (gateway, id)
);
"""

_GATEWAY_COLUMNS = "id, location, sensors, online, session, changed_ms, last_message_ms"


@dataclass(frozen=True, slots=True)
class GatewayRow:
    """One gateway as published: ``changed_ms`` when it last came online or went offline, ``last_message_ms`` the
    last message the hub had from it (None: none since the hub started), both Unix milliseconds."""

    id: str
    location: str
    sensors: int
    online: bool
    session: int | None
    changed_ms: int
    last_message_ms: int | None

    @classmethod
    def of(cls, status: GatewayStatus, sensors: int) -> GatewayRow:
        last = None if status.last_message_s is None else round(status.last_message_s * 1000)
        return cls(status.id, status.location, sensors, status.online, status.session,
                   round(status.changed_at_s * 1000), last)  # fmt: skip

    def values(self) -> tuple[object, ...]:
        return (self.id, self.location, self.sensors, int(self.online), self.session, self.changed_ms,
                self.last_message_ms)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SensorRow:
    gateway: str
    id: str
    kind: str
    unit: str
    location: str
    grid: str


def rows_of(registry: Registry) -> tuple[list[GatewayRow], list[SensorRow]]:
    """The registry's gateways, with their state now, and its sensors, as rows."""
    gateways = [GatewayRow.of(s, len(registry.on_gateway[g])) for g, s in registry.gateways.items()]
    sensors = [
        SensorRow(s.gateway, s.id, s.kind.name, s.kind.unit, s.location, s.grid) for s in registry.sensors.values()
    ]
    return gateways, sensors


@dataclass(frozen=True, slots=True)
class RegistryCounts:
    """A community at a glance: its gateways, how many of them are online, its detectors."""

    gateways: int
    online: int
    sensors: int


class RegistryStore:
    """The registry tables in the schema ``schema`` of the PostgreSQL database at ``url`` (a SQLite file works too,
    for tests). ``fence`` guards every write (the hub's lease); ``read_only``: the district node's view, which
    creates nothing and writes nothing."""

    def __init__(self, target: str | Path, *, schema: str, fence: Fence | None = None, read_only: bool = False) -> None:
        self._db: Database = open_database(target, schema=schema, fence=fence, read_only=read_only)
        self._published = not read_only
        if not read_only:
            self._db.script(_SCHEMA if self._db.dialect == "sqlite" else postgres_ddl(_SCHEMA))

    def published(self) -> bool:
        """Whether a hub has made the registry's tables (a hub of an earlier release, or one not started since, has
        not): asked of the database until it says yes, then remembered — tables are never dropped."""
        if not self._published:
            sql = ("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'registry_gateways'"
                   if self._db.dialect == "sqlite" else "SELECT to_regclass('registry_gateways')")  # fmt: skip
            rows = self._db.query(sql)
            self._published = bool(rows) and rows[0][0] is not None
        return self._published

    def close(self) -> None:
        self._db.close()

    def replace(self, gateways: Sequence[GatewayRow], sensors: Sequence[SensorRow]) -> None:
        """The registry as the deployment file has it now, in place of what was published before (one
        transaction: a reader sees the old registry or the new one, never half of each)."""
        with self._db.transaction() as db:
            db.execute("DELETE FROM registry_sensors")
            db.execute("DELETE FROM registry_gateways")
            db.executemany(f"INSERT INTO registry_gateways ({_GATEWAY_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                           [g.values() for g in gateways])  # fmt: skip
            db.executemany("INSERT INTO registry_sensors (gateway, id, kind, unit, location, grid) "
                           "VALUES (?,?,?,?,?,?)",
                           [(s.gateway, s.id, s.kind, s.unit, s.location, s.grid) for s in sensors])  # fmt: skip

    def update(self, rows: Sequence[GatewayRow]) -> None:
        """The live state of ``rows``' gateways. Not waited on to the disk: a lost update is written again at the
        next change or refresh."""
        if not rows:
            return
        with self._db.transaction(durable=False) as db:
            db.executemany(
                "UPDATE registry_gateways SET online = ?, session = ?, changed_ms = ?, last_message_ms = ? "
                "WHERE id = ?",
                [(int(r.online), r.session, r.changed_ms, r.last_message_ms, r.id) for r in rows],
            )

    def gateways(self) -> list[GatewayRow] | None:
        """Every gateway, offline first, then by id; None when the registry was never published."""
        if not self.published():
            return None
        rows = self._db.query(f"SELECT {_GATEWAY_COLUMNS} FROM registry_gateways ORDER BY online, id")
        return [GatewayRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in rows]

    def counts(self) -> RegistryCounts | None:
        """None when the registry was never published (not a failure: unknown, and shown as unknown)."""
        if not self.published():
            return None
        row = self._db.query(
            "SELECT count(*), coalesce(sum(online), 0), (SELECT count(*) FROM registry_sensors) FROM registry_gateways"
        )[0]
        return RegistryCounts(int(row[0]), int(row[1]), int(row[2]))


class RegistryMirror:
    """Keeps ``store`` in step with the hub's ``registry``: the whole registry at start; then, every ``poll_s``,
    the gateways whose online state changed; and every ``refresh_s`` each gateway's last message. A failed write is
    logged, counted in ``failures``, and made again at the next turn."""

    def __init__(self, store: RegistryStore, registry: Registry, *, poll_s: float = 1.0, refresh_s: float = 30.0):
        self._store = store
        self._registry = registry
        self._poll_s = poll_s
        self._refresh_s = refresh_s
        self._written: dict[str, tuple[bool, int | None]] = {}
        self._failing = False
        self.failures = 0

    def _row(self, gateway: str) -> GatewayRow:
        return GatewayRow.of(self._registry.gateways[gateway], len(self._registry.on_gateway[gateway]))

    def _state(self) -> dict[str, tuple[bool, int | None]]:
        return {g: (s.online, s.session) for g, s in self._registry.gateways.items()}

    async def _write(self, work: Callable[[], None]) -> bool:
        """Whether ``work`` (a store write) was done; a failure is counted, and logged when the writes start failing
        (not once a second while the database is away)."""
        try:
            await asyncio.to_thread(work)
        except (DatabaseError, psycopg.Error, OSError, LeaseLost) as exc:
            self.failures += 1
            if not self._failing:
                log.warning("registry not written to the shared database; trying again each second: %s", exc)
            self._failing = True
            return False
        if self._failing:
            log.warning("registry written to the shared database again")
        self._failing = False
        return True

    async def run(self) -> None:
        """Until cancelled (the hub stops)."""
        loop = asyncio.get_running_loop()
        published = False
        refreshed = loop.time()
        while True:
            if not published:
                state = self._state()
                gateways, sensors = rows_of(self._registry)
                published = await self._write(functools.partial(self._store.replace, gateways, sensors))
                if published:
                    self._written, refreshed = state, loop.time()
            else:
                state = self._state()
                due = loop.time() - refreshed >= self._refresh_s
                changed = [g for g, now in state.items() if due or self._written.get(g) != now]
                rows = [self._row(g) for g in changed]
                if rows and await self._write(functools.partial(self._store.update, rows)):
                    self._written.update({g: state[g] for g in changed})
                    if due:
                        refreshed = loop.time()
            await asyncio.sleep(self._poll_s)
