"""Leases on communities in PostgreSQL: which hub runs a community now, and a standby's takeover when it dies.

Several hubs may be started for one community (on other machines), all pointed at the same PostgreSQL. Only the
holder of the community's lease runs it — subscribes to its gateways, routes its alerts, pages people, serves its API;
the others wait as standbys, with nothing subscribed and no port open. The holder renews the lease every
``term_s / 3``; a standby takes a lease whose term ran out. So a holder that dies (power, kernel, network) is replaced
``term_s`` after its last renewal at most, plus the standby's poll and its start.

Times are PostgreSQL's clock (``now()``), never the hubs', so clocks that disagree between machines cannot make two
holders. A holder that cannot renew stops itself before its term could have run out on the server
(:meth:`Lease.keep`): the last renewal's *start* plus the term minus a margin, on the local monotonic clock, is always
earlier than the expiry the server wrote. Each change of holder raises the lease's ``epoch`` (a fencing token): every
write of the alert store checks inside its transaction that the lease is still this holder's epoch and holds the row
against a takeover until it commits (:meth:`Lease.fence`), so a holder that was frozen (stopped, swapped out) past its
term and wakes up cannot commit anything after the standby took over.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg

from alerts.sqldb import FENCE_SQLSTATE

__all__ = ["LEASE_LOST_EXIT", "Lease", "LeaseConfigError", "LeaseError", "LeaseLost", "LeaseState", "leases"]

log = logging.getLogger("anju.hub.lease")

_SCHEMA_LOCK = int.from_bytes(hashlib.sha256(b"anju-lease-schema").digest()[:8], "big", signed=True)
"""Taken while the lease table and ``anju.hold`` are created: hubs that start together would otherwise race to
replace the function ("tuple concurrently updated")."""

_SCHEMA = f"""
SELECT pg_advisory_xact_lock({_SCHEMA_LOCK});
CREATE SCHEMA IF NOT EXISTS anju;
CREATE TABLE IF NOT EXISTS anju.leases (
    community TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE OR REPLACE FUNCTION anju.hold(c TEXT, h TEXT, e BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM anju.leases WHERE community = c AND holder = h AND epoch = e AND expires_at > now())
    THEN
        RAISE EXCEPTION 'the lease on % is not held by % at epoch %', c, h, e USING ERRCODE = '{FENCE_SQLSTATE}';
    END IF;
END $$;
"""

_ACQUIRE = """
INSERT INTO anju.leases AS l (community, holder, epoch, acquired_at, renewed_at, expires_at)
VALUES (%(community)s, %(holder)s, 1, now(), now(), now() + make_interval(secs => %(term)s))
ON CONFLICT (community) DO UPDATE SET holder = excluded.holder, epoch = l.epoch + 1, acquired_at = now(),
    renewed_at = now(), expires_at = excluded.expires_at
WHERE l.expires_at <= now()
RETURNING epoch
"""

_RENEW = """
UPDATE anju.leases SET renewed_at = now(), expires_at = now() + make_interval(secs => %(term)s)
WHERE community = %(community)s AND holder = %(holder)s AND epoch = %(epoch)s AND expires_at > now()
RETURNING epoch
"""

_RELEASE = """
UPDATE anju.leases SET expires_at = now()
WHERE community = %(community)s AND holder = %(holder)s AND epoch = %(epoch)s
"""

FENCE_SQL = "SELECT anju.hold(?, ?, ?)"
"""The check every alert-store write makes (``?`` placeholders, alerts/sqldb.py), after taking the community's lease
lock shared (:meth:`Lease.fence`): ``anju.hold`` raises (SQLSTATE ``FENCE_SQLSTATE``, alerts/sqldb.py) unless the
lease is this holder's at this epoch and its term has not run out, so the check reads no row and costs a pipelined
write no round trip. A takeover takes that lock exclusively, so it waits for the writes in flight, and
the writes that come after it see the new epoch. Not a row lock on the lease (``FOR SHARE``): the holder's renewal,
an UPDATE of that row, waits behind such locks, and in one run of ``bench alerts`` at 1,000 alerts/s on PostgreSQL
the holder's renewal timed out and it lost its lease; with the advisory lock the same run kept it."""

LEASE_LOST_EXIT = 75
"""A hub's exit status when it lost its community's lease (EX_TEMPFAIL): systemd, or its worker (hub/worker.py),
starts it again, as a standby."""

TAKEOVER_LOCK_TIMEOUT = "2s"
"""How long a takeover waits for the writes in flight; past it, it tries again at its next poll."""


class LeaseError(RuntimeError):
    """PostgreSQL could not be reached for the lease; the message names the server (never its password)."""


class LeaseConfigError(LeaseError):
    """The server answered that the URL is wrong (no such database or role, a refused password): waiting will not
    help, so a standby stops instead of retrying forever."""


_CONFIG_SQLSTATES = ("28", "3D")
"""Invalid authorization (28xxx) and invalid catalog name (3D000): the URL, not the network."""
_CONFIG_MESSAGES = ("does not exist", "authentication failed", "no pg_hba.conf entry")
"""The same, as libpq words them when the connection itself is refused (its error carries no SQLSTATE then)."""


class LeaseLost(RuntimeError):
    """This hub no longer holds its community's lease: it must stop at once (another hub may run the community)."""


@dataclass(frozen=True, slots=True)
class LeaseState:
    """A lease row as stored: who holds ``community``, since when, until when (the server's clock). ``live``: its
    term is still running by the server's clock as it was read (a released or lapsed lease keeps its last holder's
    name, but nobody holds it)."""

    community: str
    holder: str
    epoch: int
    acquired_at: dt.datetime
    renewed_at: dt.datetime
    expires_at: dt.datetime
    live: bool


def default_holder() -> str:
    """``host:pid:random``: unique per process, so a hub restarted on the same machine is a new holder and waits for
    its old lease to run out (the old process may still be alive, frozen)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    """The lease on ``community`` for ``holder``, in the PostgreSQL at ``url``.

    ``term_s``: how long a renewal holds (the takeover bound, less the standby's poll and start). ``poll_s``: how often
    a standby looks. Renewals go every ``term_s / 3``; a holder stops itself when its last good renewal started more
    than ``term_s - margin_s`` ago (``margin_s`` = a fifth of the term, at least 1 s)."""

    def __init__(
        self,
        url: str,
        community: str,
        *,
        holder: str | None = None,
        term_s: float = 15.0,
        poll_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if term_s < 3:
            raise ValueError(f"lease term {term_s} s: at least 3 s (three renewals fit in a term)")
        self.url = url
        self.community = community
        self.holder = holder or default_holder()
        self.term_s = term_s
        self.poll_s = poll_s
        self.renew_every_s = term_s / 3
        self.margin_s = max(1.0, term_s / 5)
        self._clock = clock
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self.epoch: int | None = None
        self._renewed_at: float | None = None
        info = psycopg.conninfo.conninfo_to_dict(url)
        self.where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        digest = hashlib.sha256(f"anju-lease:{community}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)

    @property
    def fence(self) -> list[tuple[str, tuple[Any, ...]]]:
        """The statements each alert-store write runs first: the lease lock, shared, then :data:`FENCE_SQL`; held
        leases only."""
        if self.epoch is None:
            raise LeaseLost(f"no lease on {self.community} is held")
        return [
            ("SELECT pg_advisory_xact_lock_shared(?)", (self._lock_key,)),
            (FENCE_SQL, (self.community, self.holder, self.epoch)),
        ]

    async def _live(self) -> psycopg.AsyncConnection[Any]:
        if self._connection is None or self._connection.closed or self._connection.broken:
            try:
                self._connection = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
                await self._connection.execute(_SCHEMA)
            except psycopg.Error as exc:
                self._connection = None
                message = f"PostgreSQL {self.where}: {str(exc).strip().splitlines()[0]}"
                if (exc.sqlstate or "")[:2] in _CONFIG_SQLSTATES or any(m in message for m in _CONFIG_MESSAGES):
                    raise LeaseConfigError(message) from None
                raise LeaseError(message) from None
        return self._connection

    async def _run(self, sql: str, *, exclusive: bool = False) -> int | None:
        """One lease statement (bounded by the renewal interval: a server that hangs counts as unreachable); its epoch
        or None. ``exclusive``: in a transaction holding the community's lease lock, as a takeover must."""
        connection = await self._live()
        params = {"community": self.community, "holder": self.holder, "term": self.term_s, "epoch": self.epoch}
        try:
            async with asyncio.timeout(self.renew_every_s):
                if exclusive:
                    async with connection.transaction():
                        await connection.execute(f"SET LOCAL lock_timeout = '{TAKEOVER_LOCK_TIMEOUT}'")
                        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                        cursor = await connection.execute(sql, params)
                        row = await cursor.fetchone()
                else:
                    cursor = await connection.execute(sql, params)
                    row = await cursor.fetchone() if cursor.description else None
        except (psycopg.Error, TimeoutError) as exc:
            await connection.close()
            why = str(exc).strip().splitlines()
            raise LeaseError(f"PostgreSQL {self.where}: {why[0] if why else type(exc).__name__}") from None
        return int(row[0]) if row else None

    async def try_acquire(self) -> bool:
        """Take the lease if it is free or ran out; True when this holder now has it."""
        started = self._clock()
        epoch = await self._run(_ACQUIRE, exclusive=True)
        if epoch is None:
            return False
        self.epoch, self._renewed_at = epoch, started
        return True

    async def acquire(self, *, timeout_s: float | None = None) -> None:
        """Wait as a standby until the lease is this holder's (polling every ``poll_s``; an unreachable server is
        retried, logged once per cause; :class:`LeaseConfigError` is raised at once). TimeoutError after
        ``timeout_s`` when given."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        said = ""
        while True:
            try:
                if await self.try_acquire():
                    log.warning("lease on community %s taken by %s (epoch %d)", self.community, self.holder, self.epoch)
                    return
                state = await self.state()
                news = f"held by {state.holder}" if state else "free"
            except LeaseConfigError:
                raise
            except LeaseError as exc:
                news = str(exc)
            if news != said:
                log.warning("standby for community %s: lease %s", self.community, news)
                said = news
            if deadline is not None and self._clock() >= deadline:
                raise TimeoutError(f"lease on {self.community} not acquired within {timeout_s} s ({news})")
            await asyncio.sleep(self.poll_s)

    async def renew(self) -> bool:
        """Extend the lease by a term from now (server time); False when it is no longer this holder's."""
        if self.epoch is None:
            return False
        started = self._clock()
        if await self._run(_RENEW) is None:
            return False
        self._renewed_at = started
        return True

    def renewal_age_s(self) -> float:
        """Seconds since the last good renewal began (0 when none is held): near the term, a takeover is close."""
        if self.epoch is None or self._renewed_at is None:
            return 0.0
        return self._clock() - self._renewed_at

    def deadline(self) -> float:
        """The local monotonic time by which this holder must have renewed or stop."""
        assert self._renewed_at is not None
        return self._renewed_at + self.term_s - self.margin_s

    async def keep(self, on_lost: Callable[[str], object]) -> NoReturn:
        """Renew every ``renew_every_s`` (after a failed try, every second) forever. When the lease was taken over, or
        :meth:`deadline` passed without a renewal (the server unreachable, or this process frozen), call
        ``on_lost(reason)`` — which must stop the hub at once — and raise :class:`LeaseLost`."""
        failure = ""
        while True:
            assert self._renewed_at is not None
            if failure:
                wait = min(1.0, self.deadline() - self._clock())
            else:
                wait = self._renewed_at + self.renew_every_s - self._clock()
            await asyncio.sleep(max(0.0, wait))
            if self._clock() >= self.deadline():
                why = failure or "this hub did not run for longer than the margin (frozen or overloaded)"
                reason = f"lease on community {self.community} not renewed before its term could run out: {why}"
                break
            try:
                renewed = await self.renew()
            except LeaseError as exc:
                failure = str(exc)
                log.warning("lease on community %s not renewed, retrying: %s", self.community, failure)
                continue
            if not renewed:
                reason = f"lease on community {self.community} was taken over (epoch {self.epoch} is no longer ours)"
                break
            failure = ""
        self.epoch = None
        log.critical("%s; stopping", reason)
        on_lost(reason)
        raise LeaseLost(reason)

    async def release(self) -> None:
        """Give the lease up now (a clean stop), so a standby takes over at its next poll, not a term later."""
        if self.epoch is None:
            return
        try:
            await self._run(_RELEASE)
            log.warning("lease on community %s released", self.community)
        except LeaseError as exc:
            log.warning("lease on %s not released (a standby takes it when its term runs out): %s", self.community, exc)
        self.epoch = None

    async def state(self) -> LeaseState | None:
        """The community's lease row, or None when it never had one."""
        connection = await self._live()
        cursor = await connection.execute(
            "SELECT community, holder, epoch, acquired_at, renewed_at, expires_at, expires_at > now() FROM anju.leases "
            "WHERE community = %s",
            (self.community,),
        )
        row = await cursor.fetchone()
        return LeaseState(*row) if row else None

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


def leases(url: str, *, read_only: bool = False) -> list[LeaseState]:
    """Every community's lease (``anju-hub leases``), by community. ``read_only`` (the district node): create
    nothing, and answer none when no hub has made the table yet."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
        if read_only:
            connection.execute("SET default_transaction_read_only = on")
            found = connection.execute("SELECT to_regclass('anju.leases')").fetchone()
            if found is None or found[0] is None:
                return []
        else:
            connection.execute(_SCHEMA)
        rows = connection.execute(
            "SELECT community, holder, epoch, acquired_at, renewed_at, expires_at, expires_at > now() "
            "FROM anju.leases ORDER BY community"
        ).fetchall()
    return [LeaseState(*row) for row in rows]
