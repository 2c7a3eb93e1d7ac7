"""One incident declared in several communities (Art. 25: "several communities"), from the district node.

The node writes nothing in a community's schema: the community's hub holds the lease and the only writer. So a
declaration is kept in the node's own schema (``anju_district``: ``district_incidents`` and one row per community
in ``district_incident_parts``) and handed to each community's hub through its API — ``POST /api/v1/incidents`` with
the declaration's id, which makes the hub's answer idempotent — until every hub has taken it:

* ``pending`` → ``declared`` when the hub answers 201 (or 200: it had it already, a retry after a lost answer);
* ``pending`` again, ``attempts`` + 1, after a connection failure, a timeout, a 429 or a 5xx — the hub is down,
  restarting or being taken over — or a 401/403 (the token is wrong: mended by an operator, it goes on by itself),
  retried after 1 s doubling to 60 s, for as long as it takes;
* ``refused`` on any other answer (a 409: the id is another incident's there; a 422), with the hub's words.

The hub of a community is found at ``hub_url_template`` (``https://{community}.anju.example.org``: the proxy of
``anju-hub shards proxy``) or, without one, where the shard map says the lease holder's worker listens. The hubs
take the node's ``hub_token`` (their static admin token, ``ANJU_API_TOKEN_FILE`` of the workers) and record the
person who declared it as ``district:{name}`` in their audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from alerts.incidents import IncidentKind
from alerts.sqldb import Database, Row, open_database
from hub.lease import leases
from hub.metrics import Counter
from hub.shards import ShardMap

__all__ = ["Declaration", "Declarations", "FanOut", "Part", "PartState"]

log = logging.getLogger("anju.hub.district")

PartState = Literal["pending", "declared", "refused"]
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
HUB_TIMEOUT_S = 10.0
_RETRIED = frozenset({401, 403, 408, 429})
"""Answers after which a part is tried again: a token the hub does not take yet (an operator mends it: the node
should then go on by itself), a timeout, a rate limit — and every 5xx."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS district_incidents (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    fields TEXT NOT NULL,
    mobilise BOOLEAN NOT NULL,
    notice_zh TEXT,
    notice_en TEXT NOT NULL DEFAULT '',
    declared_by TEXT NOT NULL,
    declared_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS district_incident_parts (
    incident_id TEXT NOT NULL REFERENCES district_incidents (id),
    community TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    next_attempt_ms BIGINT NOT NULL,
    declared_ms BIGINT,
    PRIMARY KEY (incident_id, community)
);
CREATE INDEX IF NOT EXISTS district_parts_due ON district_incident_parts (next_attempt_ms) WHERE state = 'pending';
"""


@dataclass(frozen=True, slots=True)
class Part:
    """The declaration in one community: its state there, attempts so far and the last failure."""

    community: str
    state: PartState
    attempts: int
    error: str | None
    next_attempt_ms: int
    declared_ms: int | None


@dataclass(frozen=True, slots=True)
class Declaration:
    id: str
    kind: IncidentKind
    title: str
    fields: tuple[str, ...]
    mobilise: bool
    declared_by: str
    declared_ms: int
    parts: tuple[Part, ...]
    notice_zh: str | None = None
    """A notice to the residents of every community, sent through each hub's broadcast receivers once declared."""
    notice_en: str = ""

    @property
    def notice_id(self) -> str:
        """The notice's id at every hub (``ntc-`` and the declaration's own), so that a retry sends it once."""
        return "ntc-" + self.id.removeprefix("inc-")

    @property
    def communities(self) -> list[str]:
        return [p.community for p in self.parts]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _part(row: Row) -> Part:
    return Part(row["community"], row["state"], row["attempts"], row["error"], row["next_attempt_ms"],
                row["declared_ms"])  # fmt: skip


class Declarations:
    """The node's declarations, in the schema ``schema`` of the PostgreSQL database at ``url``."""

    def __init__(self, url: str, *, schema: str) -> None:
        self._db: Database = open_database(url, schema=schema)
        self._db.script(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(
        self, *, kind: IncidentKind, title: str, fields: Sequence[str], mobilise: bool, by: str,
        communities: Sequence[str], notice_zh: str | None = None, notice_en: str = "",
    ) -> Declaration:  # fmt: skip
        now = _now_ms()
        incident_id = f"inc-d{secrets.token_hex(8)}"
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO district_incidents (id, kind, title, fields, mobilise, notice_zh, notice_en, declared_by, "
                "declared_ms) VALUES (?,?,?,?,?,?,?,?,?)",
                (incident_id, kind, title, json.dumps(list(fields), ensure_ascii=False), mobilise, notice_zh,
                 notice_en, by, now),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO district_incident_parts (incident_id, community, state, next_attempt_ms) "
                "VALUES (?,?,'pending',?)",
                [(incident_id, community, now) for community in communities],
            )
        found = self.get(incident_id)
        assert found is not None
        return found

    def get(self, incident_id: str) -> Declaration | None:
        rows = self._db.query("SELECT * FROM district_incidents WHERE id = ?", (incident_id,))
        if not rows:
            return None
        parts = self._db.query(
            "SELECT * FROM district_incident_parts WHERE incident_id = ? ORDER BY community", (incident_id,)
        )
        return self._declaration(rows[0], [_part(p) for p in parts])

    def all(self) -> list[Declaration]:
        """Every declaration, newest first."""
        parts: dict[str, list[Part]] = {}
        for row in self._db.query("SELECT * FROM district_incident_parts ORDER BY community"):
            parts.setdefault(row["incident_id"], []).append(_part(row))
        rows = self._db.query("SELECT * FROM district_incidents ORDER BY declared_ms DESC, id")
        return [self._declaration(r, parts.get(r["id"], [])) for r in rows]

    @staticmethod
    def _declaration(row: Row, parts: list[Part]) -> Declaration:
        return Declaration(id=row["id"], kind=row["kind"], title=row["title"], fields=tuple(json.loads(row["fields"])),
                           mobilise=bool(row["mobilise"]), declared_by=row["declared_by"],
                           declared_ms=row["declared_ms"], parts=tuple(parts), notice_zh=row["notice_zh"],
                           notice_en=row["notice_en"])  # fmt: skip

    def due(self, now_ms: int) -> list[tuple[Declaration, str]]:
        """The (declaration, community) pairs whose next attempt is due."""
        rows = self._db.query(
            "SELECT incident_id, community FROM district_incident_parts WHERE state = 'pending' "
            "AND next_attempt_ms <= ? ORDER BY next_attempt_ms, incident_id, community",
            (now_ms,),
        )
        found: list[tuple[Declaration, str]] = []
        for row in rows:
            declaration = self.get(row["incident_id"])
            if declaration is not None:
                found.append((declaration, row["community"]))
        return found

    def next_due_ms(self) -> int | None:
        rows = self._db.query("SELECT min(next_attempt_ms) AS due FROM district_incident_parts WHERE state = 'pending'")
        return rows[0]["due"] if rows and rows[0]["due"] is not None else None

    def settle(
        self, incident_id: str, community: str, state: PartState, *, error: str | None, retry_s: float, declared: bool
    ) -> None:
        """Record one attempt's outcome; a ``pending`` one is tried again ``retry_s`` from now. ``declared``: the
        incident runs at the hub now (its ``declared_ms`` is kept from the first such attempt)."""
        now = _now_ms()
        with self._db.transaction() as db:
            db.execute(
                "UPDATE district_incident_parts SET state = ?, attempts = attempts + 1, error = ?, "
                "next_attempt_ms = ?, declared_ms = CASE WHEN ? THEN coalesce(declared_ms, ?) END "
                "WHERE incident_id = ? AND community = ?",
                (state, error, now + round(retry_s * 1000), declared, now, incident_id, community),
            )


class FanOut:
    """Hands each pending declaration to its community's hub, and again after a failure, until it is taken."""

    def __init__(
        self,
        declarations: Declarations,
        shards: ShardMap,
        *,
        database_url: str,
        hub_token: str | None,
        hub_url_template: str | None,
    ) -> None:
        self.declarations = declarations
        self._shards = shards
        self._url = database_url
        self._token = hub_token
        self._template = hub_url_template
        self._wake = asyncio.Event()
        self.attempts = Counter(
            "anju_district_handover_attempts_total",
            "Attempts to hand a declaration (and its notice) to a community's hub, by outcome: declared, pending "
            "(tried again), refused.",
        )

    @property
    def can_declare(self) -> bool:
        return self._token is not None

    def wake(self) -> None:
        self._wake.set()

    async def hub_urls(self, communities: Collection[str]) -> dict[str, str | None]:
        """Where each community's hub answers now, or None (no holder: nobody runs it at the moment), from one read
        of the lease table. A lease whose term ran out (released, or its holder died) names nobody: its last holder
        is not asked, and the part waits for the standby that takes the lease."""
        if self._template is not None:
            return {c: self._template.format(community=c).rstrip("/") for c in communities}
        held = await asyncio.to_thread(leases, self._url, read_only=True)
        holders = {lease.community: lease.holder for lease in held if lease.live}
        found: dict[str, str | None] = {}
        for community in communities:
            worker, _, of = holders.get(community, "").rpartition(":")
            if of != community or not worker:
                found[community] = None  # nobody, or a hub not run by a worker of this map: give hub_url_template
                continue
            host = self._shards.hosts.get(worker, "127.0.0.1")
            host = f"[{host}]" if ":" in host else host
            found[community] = f"http://{host}:{self._shards.communities[community].http_port}"
        return found

    async def hub_url(self, community: str) -> str | None:
        return (await self.hub_urls([community]))[community]

    async def attempt_all(self, client: httpx.AsyncClient, pairs: Sequence[tuple[Declaration, str]]) -> None:
        """One try at each (declaration, community), at once; the hubs' addresses read once for all of them."""
        urls = await self.hub_urls({community for _, community in pairs})
        await asyncio.gather(*(self._attempt(client, d, c, urls[c]) for d, c in pairs))

    async def attempt(self, client: httpx.AsyncClient, declaration: Declaration, community: str) -> None:
        await self.attempt_all(client, [(declaration, community)])

    async def _attempt(
        self, client: httpx.AsyncClient, declaration: Declaration, community: str, base: str | None
    ) -> None:
        """One try at ``community``'s hub at ``base`` — the incident, then its notice if it has one — its outcome
        recorded."""
        part = next(p for p in declaration.parts if p.community == community)
        retry_s = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(part.attempts, 10))
        state: PartState = "pending"
        error: str | None = None
        declared = False
        if base is None:
            error = "no hub holds the community's lease now"
        else:
            by = f"district:{declaration.declared_by}"[:64]
            body = {"id": declaration.id, "by": by, "kind": declaration.kind, "title": declaration.title,
                    "fields": list(declaration.fields), "mobilise": declaration.mobilise}  # fmt: skip
            state, error = await self._post(client, f"{base}/api/v1/incidents", body)
            declared = state == "declared"
            if declared and declaration.notice_zh:
                notice = {"id": declaration.notice_id, "by": by, "text_zh": declaration.notice_zh,
                          "text_en": declaration.notice_en}  # fmt: skip
                url = f"{base}/api/v1/incidents/{declaration.id}/notices"
                state, error = await self._post(client, url, notice)
                if state == "refused":  # the incident runs there; only its notice could not go (no receiver…)
                    state, error = "declared", f"通知未发出 / notice not sent: {error}"
                elif error is not None:
                    error = f"notice: {error}"
        self.attempts.inc(outcome=state)
        if error is not None:
            log.warning("incident %s in %s: %s (%s)", declaration.id, community, state, error)
        await asyncio.to_thread(
            self.declarations.settle, declaration.id, community, state, error=error, retry_s=retry_s, declared=declared
        )

    async def _post(
        self, client: httpx.AsyncClient, url: str, body: Mapping[str, object]
    ) -> tuple[PartState, str | None]:
        """POST ``body`` to a hub: ``declared`` (201, or 200: it had it already), ``pending`` (tried again) or
        ``refused``, with the reason."""
        try:
            answer = await client.post(url, json=body, headers={"Authorization": f"Bearer {self._token}"})
        except httpx.HTTPError as exc:
            return "pending", f"{url}: {type(exc).__name__}: {exc}".strip()
        if answer.status_code in (200, 201):
            return "declared", None
        if answer.status_code in _RETRIED or answer.status_code >= 500:
            return "pending", f"{url}: HTTP {answer.status_code}"
        detail = answer.json().get("detail", "") if _is_json(answer) else answer.text[:200]
        return "refused", f"{url}: HTTP {answer.status_code}: {detail}"

    async def run(self) -> None:
        """Until cancelled (the node stops): every due part tried, then sleep until the next is due or a new
        declaration wakes it (5 s at most, so a part added by another node's process is not left waiting)."""
        async with httpx.AsyncClient(timeout=HUB_TIMEOUT_S) as client:
            while True:
                self._wake.clear()
                try:
                    due = await asyncio.to_thread(self.declarations.due, _now_ms())
                    await self.attempt_all(client, due)
                    next_ms = await asyncio.to_thread(self.declarations.next_due_ms)
                except Exception:
                    log.exception("handing declarations to the hubs failed; trying again in 5 s")
                    next_ms = None
                wait_s = 5.0 if next_ms is None else min(5.0, max(0.05, (next_ms - _now_ms()) / 1000))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait_s)


def _is_json(answer: httpx.Response) -> bool:
    return str(answer.headers.get("content-type", "")).endswith("json")
