"""The district node's hand-over of a declaration to each community's hub (hub/district/declarations.py), against a
real HTTP server standing in for the hubs, on a real PostgreSQL: which answers declare, which are retried with a
growing wait, which refuse for good; and what each hub is sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.demo.processes import free_port
from hub.district.declarations import Declarations, FanOut
from hub.shards import ShardMap

pytestmark = pytest.mark.anyio

COMMUNITIES = ("c-created", "c-replayed", "c-conflict", "c-invalid", "c-busy", "c-token", "c-down")
ANSWERS = {"c-created": 201, "c-replayed": 200, "c-conflict": 409, "c-invalid": 422, "c-busy": 503, "c-token": 401}
"""What the stand-in hub of each community answers; c-down's address refuses connections."""
NOTICE_ANSWERS = {"c-replayed": 503, "c-busy": 422}
"""What it answers a notice (201 for the others)."""


@asynccontextmanager
async def hubs() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server answering ``POST /c/{community}/api/v1/incidents`` as ``ANSWERS`` says; yields its URL template
    and the requests it took."""
    taken: list[dict[str, Any]] = []

    async def incidents(request: Request) -> Response:
        community = request.path_params["community"]
        taken.append({"community": community, "body": json.loads(await request.body()),
                      "authorization": request.headers.get("authorization")})  # fmt: skip
        status = ANSWERS[community]
        return JSONResponse({"detail": f"answer {status}", "id": "x"}, status_code=status)

    async def notices(request: Request) -> Response:
        community = request.path_params["community"]
        taken.append({"community": community, "notice": json.loads(await request.body()),
                      "incident": request.path_params["incident"]})  # fmt: skip
        status = NOTICE_ANSWERS.get(community, 201)
        return JSONResponse({"detail": f"notice answer {status}"}, status_code=status)

    app = Starlette(routes=[
        Route("/c/{community}/api/v1/incidents", incidents, methods=["POST"]),
        Route("/c/{community}/api/v1/incidents/{incident}/notices", notices, methods=["POST"]),
    ])  # fmt: skip
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline and not serving.done(), "the stand-in hubs did not start"
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/c/{{community}}", taken
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


def _shards() -> ShardMap:
    return ShardMap.model_validate({
        "version": 1,
        "communities": {c: {"deployment": f"{c}.yaml", "data_dir": f"d/{c}", "http_port": 18200 + i, "workers": ["w1"]}
                        for i, c in enumerate(COMMUNITIES)},
    })  # fmt: skip


async def test_each_answer_of_a_hub_declares_retries_or_refuses(database_url: str, tmp_path: Path) -> None:
    store = Declarations(database_url, schema="anju_district")
    try:
        async with hubs() as (template, taken):
            down = f"http://127.0.0.1:{free_port()}"
            fan_out = FanOut(store, _shards(), database_url=database_url, hub_token="t" * 32,
                             hub_url_template=template)  # fmt: skip
            declaration = store.add(kind="fire", title="多社区火灾", fields=["temperature"], mobilise=False, by="wang",
                                    communities=COMMUNITIES)  # fmt: skip
            nobody = FanOut(store, _shards(), database_url=database_url, hub_token="t" * 32,
                            hub_url_template=down + "/{community}")  # fmt: skip
            async with httpx.AsyncClient(timeout=5) as client:
                for community in COMMUNITIES:
                    await (nobody if community == "c-down" else fan_out).attempt(client, declaration, community)
            after = store.get(declaration.id)
            assert after is not None
            parts = {p.community: p for p in after.parts}
            assert {c: p.state for c, p in parts.items()} == {
                "c-created": "declared", "c-replayed": "declared", "c-conflict": "refused", "c-invalid": "refused",
                "c-busy": "pending", "c-token": "pending", "c-down": "pending",
            }  # fmt: skip
            assert "HTTP 409: answer 409" in (parts["c-conflict"].error or "")
            assert "HTTP 503" in (parts["c-busy"].error or "") and "ConnectError" in (parts["c-down"].error or "")
            assert parts["c-created"].declared_ms is not None and parts["c-busy"].declared_ms is None
            now_ms = time.time_ns() // 1_000_000
            assert 0 < parts["c-busy"].next_attempt_ms - now_ms <= 1_100, "the first retry after about 1 s"
            assert all(p.attempts == 1 for p in parts.values())
            assert store.due(now_ms) == [], "nothing is due before its retry time"
            assert {c for _, c in store.due(now_ms + 1_100)} == {"c-busy", "c-token", "c-down"}, "refused stay put"

            first = taken[0]
            assert first["authorization"] == "Bearer " + "t" * 32
            assert first["body"] == {"id": declaration.id, "by": "district:wang", "kind": "fire", "title": "多社区火灾",
                                     "fields": ["temperature"], "mobilise": False}  # fmt: skip
            assert len(taken) == 6, "c-down took nothing"

            busy = next(p for p in after.parts if p.community == "c-busy")
            for expected_s in (2, 4, 8):
                current = store.get(declaration.id)
                assert current is not None
                async with httpx.AsyncClient(timeout=5) as client:
                    await fan_out.attempt(client, current, "c-busy")
                again = store.get(declaration.id)
                assert again is not None
                busy = next(p for p in again.parts if p.community == "c-busy")
                wait_ms = busy.next_attempt_ms - time.time_ns() // 1_000_000
                assert expected_s * 1000 - 200 < wait_ms <= expected_s * 1000 + 50, (expected_s, wait_ms)
            assert busy.attempts == 4
            tried = {o: fan_out.attempts.get(outcome=o) for o in ("declared", "pending", "refused")}
            assert (
                tried == {"declared": 2, "pending": 2 + 3, "refused": 2} and nobody.attempts.get(outcome="pending") == 1
            )
    finally:
        store.close()


async def test_without_a_template_the_hub_is_found_where_its_lease_holder_listens(database_url: str) -> None:
    import psycopg

    from hub.lease import Lease

    store = Declarations(database_url, schema="anju_district")
    shards = ShardMap.model_validate({
        "version": 1,
        "communities": {"east": {"deployment": "e.yaml", "data_dir": "d/e", "http_port": 18301,
                                 "workers": ["w1", "w2"]}},
        "hosts": {"w2": "127.0.0.2"},
    })  # fmt: skip
    fan_out = FanOut(store, shards, database_url=database_url, hub_token="t" * 32, hub_url_template=None)
    try:
        assert await fan_out.hub_url("east") is None, "no lease table yet: nobody runs it"
        with psycopg.connect(database_url) as db:
            assert db.execute("SELECT to_regclass('anju.leases')").fetchone() == (None,), "the node created nothing"
        lease = Lease(database_url, "east", holder="w2:east", term_s=10)
        try:
            assert await lease.try_acquire()
            assert await fan_out.hub_url("east") == "http://127.0.0.2:18301"
            await lease.release()
            assert await fan_out.hub_url("east") is None, "released: its last holder is named, but nobody holds it"
        finally:
            await lease.release()
            await lease.close()
        other = Lease(database_url, "east", holder="somewhere:123:abc", term_s=10)
        try:
            assert await other.try_acquire()
            assert await fan_out.hub_url("east") is None, "a holder that is no worker of the map: give a template"
        finally:
            await other.release()
            await other.close()
    finally:
        store.close()


async def test_a_notice_goes_with_the_incident_and_is_retried_until_it_is_sent(database_url: str) -> None:
    store = Declarations(database_url, schema="anju_district")
    try:
        async with hubs() as (template, taken):
            fan_out = FanOut(store, _shards(), database_url=database_url, hub_token="t" * 32,
                             hub_url_template=template)  # fmt: skip
            communities = ["c-created", "c-replayed", "c-conflict"]
            declaration = store.add(kind="flood", title="内涝", fields=[], mobilise=True, by="wang",
                                    communities=communities, notice_zh="请勿前往地下车库", notice_en="Keep out of the "
                                    "underground car park")  # fmt: skip
            async with httpx.AsyncClient(timeout=5) as client:
                for community in communities:
                    await fan_out.attempt(client, declaration, community)
            after = store.get(declaration.id)
            assert after is not None
            parts = {p.community: p for p in after.parts}
            assert parts["c-created"].state == "declared" and parts["c-created"].error is None
            assert parts["c-replayed"].state == "pending", "its notice could not go yet: tried again"
            assert (parts["c-replayed"].error or "").startswith("notice: ") and "HTTP 503" in (
                parts["c-replayed"].error or ""
            )
            assert parts["c-replayed"].declared_ms is not None, "the incident runs there already"
            assert parts["c-conflict"].state == "refused"
            sent = [t for t in taken if "notice" in t]
            assert [t["community"] for t in sent] == ["c-created", "c-replayed"], "no notice where no incident runs"
            expected = {"id": "ntc-" + declaration.id.removeprefix("inc-"), "by": "district:wang",
                        "text_zh": "请勿前往地下车库", "text_en": "Keep out of the underground car park"}  # fmt: skip
            assert sent[0]["notice"] == expected
            assert sent[0]["incident"] == declaration.id

            quiet = store.add(kind="fire", title="火灾", fields=[], mobilise=False, by="wang", communities=["c-busy"],
                              notice_zh="关窗")  # fmt: skip
            ANSWERS["c-busy"] = 201  # the incident is taken; the notice is refused (no receiver covers the area)
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    await fan_out.attempt(client, quiet, "c-busy")
            finally:
                ANSWERS["c-busy"] = 503
            done = store.get(quiet.id)
            assert done is not None
            (part,) = done.parts
            assert (
                part.state == "declared"
                and "notice not sent" in (part.error or "")
                and "HTTP 422" in (part.error or "")
            )
    finally:
        store.close()
