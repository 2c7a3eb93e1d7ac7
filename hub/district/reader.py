"""Every community's alert state, read from its PostgreSQL schema over read-only connections.

One ``AlertStore`` per community, opened ``read_only``: the server refuses any write on these connections, so the
district node cannot disturb a hub's fenced writes or its audit chain, and it takes no lease. A community whose
schema cannot be read — no hub has run it yet, the server is away — is reported as unavailable, by name and
reason, while the others are still answered: an official looking at ten communities is not left with none because
one is down.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg

from alerts.incidents import Incident, summary
from alerts.model import Alert, AlertState, Grade, Transition
from alerts.sqldb import DatabaseError
from alerts.store import AlertStore
from hub.metrics import Counter
from hub.registry_mirror import GatewayRow, RegistryStore
from hub.settings import alerts_schema

__all__ = ["CommunityStatus", "DistrictReader", "Position", "Unavailable"]

log = logging.getLogger("anju.hub.district")

T = TypeVar("T")

Position = tuple[int, str, str]
"""An alert's place in the district's list, newest first: ``(opened_at_ms, community, id)``."""


class Unavailable(Exception):
    """A community whose alert state could not be read; ``reason`` is the database's first line."""

    def __init__(self, community: str, reason: str) -> None:
        super().__init__(f"{community}: {reason}")
        self.community = community
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CommunityStatus:
    """One community at a glance: its open alerts by grade (and how many were escalated), its active incidents and
        their households by status; its gateways (how many, how many online) and sensors as its hub published them
    (hub/registry_mirror.py; None until it has); ``unavailable`` says why nothing could be read, and everything else is
    then empty."""

    community: str
    open_by_grade: dict[str, int] = field(default_factory=dict)
    escalated: int = 0
    unacknowledged: int = 0
    active_incidents: int = 0
    households: dict[str, int] = field(default_factory=dict)
    unavailable: str | None = None
    gateways: int | None = None
    gateways_online: int | None = None
    sensors: int | None = None


class DistrictReader:
    """Read-only views of the communities ``communities`` (their ids) in the PostgreSQL database at ``url``."""

    def __init__(self, url: str, communities: Iterable[str]) -> None:
        self.communities = sorted(communities)
        self._stores = {c: AlertStore(url, schema=alerts_schema(c), read_only=True) for c in self.communities}
        self._registries = {c: RegistryStore(url, schema=alerts_schema(c), read_only=True) for c in self.communities}
        self.failures = Counter(
            "anju_district_read_failures_total", "Reads of a community's alert state that failed, by community."
        )

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        for registry in self._registries.values():
            registry.close()

    async def _read(self, community: str, work: Callable[[str, AlertStore], T]) -> T:
        return await self._guarded(community, "alert state", lambda: work(community, self._stores[community]))

    async def _guarded(self, community: str, what: str, work: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(work)
        except (DatabaseError, psycopg.Error) as exc:
            raise Unavailable(community, self._failed(community, what, exc)) from None

    def _failed(self, community: str, what: str, exc: Exception) -> str:
        """Count and log a failed read; its reason, the database's first line."""
        self.failures.inc(community=community)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log.warning("community %s: %s not readable: %s", community, what, reason)
        return reason

    async def gateways(self, community: str) -> list[GatewayRow] | None:
        """``community``'s gateways as its hub published them, offline first; None: never published (Unavailable:
        the server is away)."""
        return await self._guarded(community, "registry", self._registries[community].gateways)

    async def each(
        self, communities: Collection[str], work: Callable[[str, AlertStore], T]
    ) -> tuple[dict[str, T], list[Unavailable]]:
        """``work(community, store)`` on each of ``communities`` at once; the answers, and the communities that could
        not be read."""
        chosen = [c for c in self.communities if c in communities]
        results = await asyncio.gather(*(self._read(c, work) for c in chosen), return_exceptions=True)
        found: dict[str, T] = {}
        missing: list[Unavailable] = []
        for community, result in zip(chosen, results, strict=True):
            if isinstance(result, Unavailable):
                missing.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                found[community] = result
        return found, missing

    async def statuses(self, communities: Collection[str]) -> list[CommunityStatus]:
        """Each community at a glance, its alert state and its registry read in one go (one thread hop each)."""

        def read(community: str, store: AlertStore) -> CommunityStatus:
            status = _status(community, store)
            try:
                counted = self._registries[community].counts()
            except (DatabaseError, psycopg.Error) as exc:  # the alert state is still shown
                self._failed(community, "registry", exc)
                return status
            if counted is None:
                return status
            return dataclasses.replace(
                status, gateways=counted.gateways, gateways_online=counted.online, sensors=counted.sensors
            )

        found, missing = await self.each(communities, read)
        out = [*found.values(), *(CommunityStatus(m.community, unavailable=m.reason) for m in missing)]
        return sorted(out, key=lambda s: s.community)

    async def alerts(
        self,
        communities: Collection[str],
        *,
        limit: int,
        after: Position | None,
        states: Collection[AlertState] | None,
        grades: Collection[Grade],
    ) -> tuple[list[tuple[str, Alert]], list[Unavailable]]:
        """Up to ``limit`` alerts of ``communities`` after ``after``, newest first (ties: by community, then as each
        community's store orders them), in ``states`` (None: any) and ``grades`` (empty: any).

        Two reads per community: the positions of its first ``limit`` (no row parsed), merged across communities;
        then only the rows of the page's alerts — a page of 100 out of 20 communities parses 100 rows, not 2,000."""

        def positions(community: str, store: AlertStore) -> list[tuple[int, str]]:
            position = None if after is None else _store_position(after, community)
            return store.alert_positions(states=states, grades=grades, limit=limit, after=position)

        found, missing = await self.each(communities, positions)
        streams = [[(community, key) for key in keys] for community, keys in sorted(found.items())]
        merged = heapq.merge(*streams, key=lambda pair: (-pair[1][0], pair[0]))
        page = [pair for _, pair in zip(range(limit), merged, strict=False)]
        wanted: dict[str, list[str]] = {}
        for community, (_, alert_id) in page:
            wanted.setdefault(community, []).append(alert_id)

        def rows(community: str, store: AlertStore) -> dict[str, Alert]:
            return store.get_many(wanted[community])

        read, more_missing = await self.each(wanted, rows)
        shown = [(c, read[c][i]) for c, (_, i) in page if c in read and i in read[c]]
        return shown, [*missing, *more_missing]

    async def alert(self, community: str, alert_id: str) -> tuple[Alert, list[Transition]] | None:
        def read(_community: str, store: AlertStore) -> tuple[Alert, list[Transition]] | None:
            alert = store.get(alert_id)
            return None if alert is None else (alert, store.transitions(alert_id))

        return await self._read(community, read)

    async def incidents(
        self, communities: Collection[str], *, active_only: bool
    ) -> tuple[list[tuple[str, Incident, dict[str, int]]], list[Unavailable]]:
        """Incidents of ``communities`` with their households counted by status, newest declared first."""

        def read(_community: str, store: AlertStore) -> list[tuple[Incident, dict[str, int]]]:
            return [(i, summary(store.reports(i.id))) for i in store.incidents(active_only=active_only)]

        found, missing = await self.each(communities, read)
        rows = [(community, incident, counts) for community, pairs in found.items() for incident, counts in pairs]
        rows.sort(key=lambda row: (-row[1].declared_ms, row[0], row[1].id))
        return rows, missing


def _store_position(after: Position, community: str) -> tuple[int, str]:
    """The district's position ``after`` as the store's ``(opened_at_ms, id)`` position within ``community``: rows
    of the same time follow it in a later community, and only in the same community do their ids matter."""
    opened, at_community, alert_id = after
    if community > at_community:
        return opened, ""  # every id there sorts after ""
    if community == at_community:
        return opened, alert_id
    return opened - 1, ""  # an earlier community's rows of that time came before the cursor


def _status(community: str, store: AlertStore) -> CommunityStatus:
    by_grade, escalated, unacknowledged = store.open_counts()
    active = store.incidents(active_only=True)
    return CommunityStatus(
        community=community,
        open_by_grade={grade.name: by_grade.get(grade, 0) for grade in sorted(Grade)},
        escalated=escalated,
        unacknowledged=unacknowledged,
        active_incidents=len(active),
        households=store.report_counts([i.id for i in active]) if active else {},
    )
