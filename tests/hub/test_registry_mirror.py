"""The registry published to the community's PostgreSQL schema (hub/registry_mirror.py), on a real PostgreSQL: whole
at start, a gateway's change within a poll, the last messages at each refresh, every write fenced by the lease, and
the read-only view creating nothing."""

import asyncio
import time
from pathlib import Path

import psycopg
import pytest

from alerts.sqldb import DatabaseError
from hub.config import load_deployment
from hub.ingest.registry import Registry
from hub.lease import Lease
from hub.registry_mirror import RegistryMirror, RegistryStore
from hub.settings import alerts_schema
from tests.hub.harness import eventually

pytestmark = pytest.mark.anyio


async def test_the_hub_publishes_its_gateways_and_their_changes_under_its_lease(
    database_url: str, demo_deployment: Path
) -> None:
    deployment = load_deployment(demo_deployment)
    registry = Registry(deployment)
    community = deployment.community.id
    schema = alerts_schema(community)
    lease = Lease(database_url, community, holder="w1:" + community, term_s=10)
    assert await lease.try_acquire()
    store = RegistryStore(database_url, schema=schema, fence=lambda: lease.fence)
    view = RegistryStore(database_url, schema=schema, read_only=True)
    mirror = RegistryMirror(store, registry, poll_s=0.05, refresh_s=0.5)
    task = asyncio.create_task(mirror.run())
    try:

        async def published() -> bool:
            return [g.id for g in view.gateways()] == sorted(registry.gateways)

        await eventually(published)
        counts = view.counts()
        assert (counts.gateways, counts.online, counts.sensors) == (len(registry.gateways), 0, len(registry.sensors))
        first = sorted(registry.gateways)[0]
        wired = {g.id: g.sensors for g in view.gateways()}
        assert wired == {g: len(on) for g, on in registry.on_gateway.items()}, "each gateway's detectors"

        registry.set_state(first, online=True, session=7)

        async def online() -> bool:
            row = next(g for g in view.gateways() if g.id == first)
            return row.online and row.session == 7

        await eventually(online)
        assert view.gateways()[-1].id == first, "offline first"
        registry.gateways[first].last_message_s = time.time()

        async def last_seen() -> bool:
            row = next(g for g in view.gateways() if g.id == first)
            return row.last_message_ms is not None

        await eventually(last_seen)

        # This hub freezes past its term and another holder takes the community over: its writes are refused.
        with psycopg.connect(database_url, autocommit=True) as db:
            db.execute("UPDATE anju.leases SET expires_at = now() WHERE community = %s", (community,))
        successor = Lease(database_url, community, holder="w2:" + community, term_s=10)
        try:
            assert await successor.try_acquire()
            failed = mirror.failures
            registry.set_state(first, online=False, session=8)

            async def refused() -> bool:
                return mirror.failures > failed

            await eventually(refused)
            assert next(g for g in view.gateways() if g.id == first).online, "the fenced-out write changed nothing"
            with pytest.raises(DatabaseError):
                store.update([next(g for g in view.gateways() if g.id == first)])
        finally:
            await successor.release()
            await successor.close()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.close()
        view.close()
        await lease.close()


def test_the_read_only_view_of_a_community_never_published_creates_nothing(database_url: str) -> None:
    view = RegistryStore(database_url, schema=alerts_schema("dongfeng"), read_only=True)
    try:
        assert not view.published()
        assert view.counts() is None and view.gateways() is None, "never published: unknown, and not an error"
    finally:
        view.close()
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT to_regnamespace('anju_dongfeng')").fetchone() == (None,), "no schema made"
