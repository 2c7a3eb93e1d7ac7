"""Identity against a real running hub (Mosquitto, uvicorn, SQLite): each role's boundary, logins and their limits,
sessions and tokens, CSRF, the audit, and bad input — every refusal in problem details."""

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocol import Reading
from protocol.topics import Channel
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub
from tests.hub.identity_support import (
    PASSWORD,
    add_users,
    anonymous,
    identity_deployment,
    login_tokens,
    session,
)
from tests.hub.test_stream import Listener

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    source = identity_deployment(tmp_path)
    async with running_hub(
        mosquitto=mosquitto, deployment=source, data_dir=tmp_path / "data", login_max_failures=3, login_lockout_s=2
    ) as running:
        yield running


def lane_event(grid: str, camera: str) -> dict[str, Any]:
    """An outside system's event in ``grid`` whose 'sensor' is a camera of no building."""
    return {
        "system": "video-ai",
        "id": f"cam-{camera}/fire-lane",
        "grade": "III",
        "grid": grid,
        "kind": "fire-lane-blocked",
        "kind_zh": "消防通道占用",
        "location_zh": f"红星社区 {camera} 消防通道",
        "rule": "fire lane blocked over 10 min",
        "time": datetime.now(UTC).isoformat(),
    }


async def two_alerts(hub: Hub) -> tuple[str, str]:
    """Alert A: a gas alarm of gas-b1-301 (grid-1, building b1); alert B: a blocked fire lane in grid-2."""
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, Reading("gas-b1-301", T0, 27.4, "%LEL"), channel=Channel.ALARM)
        await gw.ack()

    async def alert_a() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await hub.api.get("/api/v1/alerts")).json()
        return [a for a in found if a["sensor"] == "gas-b1-301"]

    (a,) = await eventually(alert_a)
    answer = await hub.api.post("/api/v1/events", json={"events": [lane_event("grid-2", "b2-west")]})
    assert answer.status_code == 202, answer.text
    return a["id"], answer.json()["taken"][0]["alert_id"]


def assert_not_found(answer: Any) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == PROBLEM and answer.json()["status"] == 404


async def test_each_role_sees_only_its_grids_buildings_and_escalations(hub: Hub) -> None:
    await add_users(hub)
    a, b = await two_alerts(hub)
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang:
        assert [x["id"] for x in (await wang.get("/api/v1/alerts")).json()] == [a]
        assert (await wang.get(f"/api/v1/alerts/{a}")).status_code == 200
        assert_not_found(await wang.get(f"/api/v1/alerts/{b}"))
        assert_not_found(await wang.get(f"/api/v1/alerts/{b}/transitions"))
        assert_not_found(await wang.post(f"/api/v1/alerts/{b}/acknowledge", json={"by": "wang-li"}))
        many = (await wang.post("/api/v1/alerts/acknowledge", json={"by": "wang-li", "ids": [b]})).json()
        assert many["acknowledged"] == [] and many["refused"][0]["status"] == 404
        assert [x["id"] for x in (await zhang.get("/api/v1/alerts")).json()] == [b]
        assert_not_found(await zhang.get(f"/api/v1/alerts/{a}"))
        assert_not_found(await zhang.get("/api/v1/readings", params={"sensor": "gas-b1-301"}))
        assert_not_found(await zhang.get("/api/v1/readings/buckets", params={"sensor": "gas-b1-301", "width": "1h"}))
        assert (await zhang.get("/api/v1/readings", params={"sensor": "gas-b2-301"})).status_code == 200
        assert_not_found(await zhang.get("/api/v1/readings/window", params={"grid": "grid-1"}))
        status = (await zhang.get("/api/v1/sensors/status")).json()
        assert status["total"] == 10 and {s["gateway"] for s in status["sensors"]} == {"gw-b2"}
        assert_not_found(await zhang.get("/api/v1/sensors/status", params={"gateway": "gw-b1"}))
        assert (await zhang.get("/api/v1/users")).status_code == 403, "admin only"
        assert (await zhang.get("/api/v1/silences")).status_code == 403, "community-wide roles and property companies"
        assert (await wang.post(f"/api/v1/alerts/{a}/acknowledge", json={"by": "wang-li"})).json()["state"] == (
            "acknowledged"
        )
    async with session(hub, "prop-a") as prop_a, session(hub, "prop-b") as prop_b:
        assert [x["id"] for x in (await prop_a.get("/api/v1/alerts")).json()] == [a], "its building's gas alarm"
        assert_not_found(await prop_a.get(f"/api/v1/alerts/{b}"))
        assert_not_found(await prop_a.get("/api/v1/readings", params={"sensor": "gas-b2-101"}))
        latest = (await prop_a.get("/api/v1/readings/latest")).json()
        assert [r["sensor"] for r in latest] == ["gas-b1-301"]
        assert (await prop_a.get("/api/v1/sensors/status")).json()["total"] == 10
        assert (await prop_b.get("/api/v1/alerts")).json() == []
        assert_not_found(await prop_b.get(f"/api/v1/alerts/{a}"))
        assert_not_found(await prop_b.get("/api/v1/readings", params={"sensor": "gas-b1-301"}))
        assert (await prop_b.get("/api/v1/readings/latest")).json() == []
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        order = await hub.api.post(
            f"/api/v1/alerts/{b}/work-orders",
            json={"by": "committee", "department": "property-b", "task": "清理消防通道", "due_at": due},
        )
        assert order.status_code == 201, order.text
        order_id = order.json()["id"]
        accepted = await prop_b.post(f"/api/v1/work-orders/{order_id}/accept", json={"by": "zhou-property"})
        assert accepted.status_code == 200 and accepted.json()["state"] == "accepted", "sent to its department"
        assert_not_found(await prop_a.post(f"/api/v1/work-orders/{order_id}/done", json={"by": "li-property"}))
        assert_not_found(await prop_a.get(f"/api/v1/alerts/{b}/work-orders"))
        [listed] = (await prop_b.get("/api/v1/work-orders", params={"open_only": "true"})).json()
        assert (listed["id"], listed["state"], listed["alert_kind"]) == (order_id, "accepted", "fire-lane-blocked")
        assert (await prop_a.get("/api/v1/work-orders")).json() == [], "another company's order is not listed"
        assert [o["id"] for o in (await hub.api.get("/api/v1/work-orders")).json()] == [order_id]
    async with session(hub, "committee") as committee, session(hub, "volunteer") as volunteer:
        assert {x["id"] for x in (await committee.get("/api/v1/alerts")).json()} == {a, b}
        declared = await committee.post(
            "/api/v1/incidents", json={"by": "committee", "kind": "fire", "title": "2栋火情", "grids": ["grid-2"]}
        )
        assert declared.status_code == 201, declared.text
        incident = declared.json()["id"]
        assert (await volunteer.get("/api/v1/alerts")).json() == [], "volunteers see no alerts"
        assert (await volunteer.get("/api/v1/sensors/status")).json()["total"] == 0
        assert_not_found(await volunteer.get(f"/api/v1/incidents/{incident}"))
        assert (await volunteer.get("/api/v1/incidents")).json() == []
        assert (await committee.get(f"/api/v1/incidents/{incident}")).status_code == 200
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang:
        assert_not_found(await wang.get(f"/api/v1/incidents/{incident}"))
        assert_not_found(await wang.get(f"/api/v1/incidents/{incident}/notices"))
        assert (await zhang.get(f"/api/v1/incidents/{incident}")).status_code == 200
        assert (
            await zhang.post("/api/v1/incidents", json={"by": "z", "kind": "fire", "title": "x"})
        ).status_code == 403
    async with anonymous(hub) as nobody:
        assert (await nobody.get("/api/v1/public/disclosures")).status_code == 200, "the public page needs no login"
        refused = await nobody.get("/api/v1/alerts")
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM


async def test_lockout_after_repeated_failures_and_its_expiry(hub: Hub) -> None:
    await add_users(hub, "wang")
    async with anonymous(hub) as client:

        async def attempt(password: str, name: str = "wang") -> Any:
            return await client.post("/api/v1/auth/login", json={"username": name, "password": password})

        first = await attempt("wrong-password-0000")
        unknown = await attempt("wrong-password-0000", name="nobody-here")
        assert first.status_code == unknown.status_code == 401
        assert first.json()["detail"] == unknown.json()["detail"], "an unknown user reads like a wrong password"
        assert (await attempt("wrong-password-1111")).status_code == 401
        locked = await attempt("wrong-password-2222")
        assert locked.status_code == 429 and locked.headers["content-type"] == PROBLEM
        assert 1 <= int(locked.headers["Retry-After"]) <= 2 and "锁定" in locked.json()["detail"]
        still = await attempt(PASSWORD)
        assert still.status_code == 429, "locked even with the right password"
        await asyncio.sleep(2.1)
        assert (await attempt(PASSWORD)).status_code == 200, "the lockout expired"
    events = [(e["event"], e["subject"]) for e in (await hub.api.get("/api/v1/audit/identity")).json()]
    assert events[:7] == [
        ("login.success", "wang"),
        ("login.refused", "wang"),
        ("login.locked", "wang"),
        ("login.failure", "wang"),
        ("login.failure", "wang"),
        ("login.failure", "nobody-here"),
        ("login.failure", "wang"),
    ]


async def test_one_address_is_slowed_across_user_names(mosquitto: int, tmp_path: Path) -> None:
    source = identity_deployment(tmp_path)
    async with (
        running_hub(
            mosquitto=mosquitto, deployment=source, data_dir=tmp_path / "data", login_address_failures=3
        ) as hub,
        anonymous(hub) as client,
    ):
        for name in ("ann", "bob", "cat"):
            answer = await client.post("/api/v1/auth/login", json={"username": name, "password": "x" * 12})
            assert answer.status_code == 401
        limited = await client.post("/api/v1/auth/login", json={"username": "dan", "password": "x" * 12})
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
        assert "too many failed logins" in limited.json()["detail"]


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(hub: Hub) -> None:
    await add_users(hub, "wang")
    first = await login_tokens(hub, "wang")
    assert first["token_type"] == "Bearer" and 890 <= first["expires_in"] <= 900, "15 minutes by default"
    async with anonymous(hub) as client:

        async def me(access: str) -> int:
            return (await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {access}"})).status_code

        async def refresh(token: str) -> Any:
            return await client.post("/api/v1/auth/refresh", json={"refresh_token": token})

        assert await me(first["access_token"]) == 200
        second = (await refresh(first["refresh_token"])).json()
        assert second["refresh_token"] != first["refresh_token"]
        assert await me(second["access_token"]) == 200
        assert await me(first["access_token"]) == 401, "the old access token ends with the rotation"
        reused = await refresh(first["refresh_token"])
        assert reused.status_code == 401 and "revoked" in reused.json()["detail"]
        assert await me(second["access_token"]) == 401, "the reuse revoked the whole session"
        assert (await refresh(second["refresh_token"])).status_code == 401

        third = await login_tokens(hub, "wang")
        out = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {third['access_token']}"})
        assert out.json() == {"sessions_revoked": 1}
        assert await me(third["access_token"]) == 401 and (await refresh(third["refresh_token"])).status_code == 401

        phone, laptop = await login_tokens(hub, "wang"), await login_tokens(hub, "wang")
        everywhere = await client.post(
            "/api/v1/auth/logout-all", headers={"Authorization": f"Bearer {phone['access_token']}"}
        )
        assert everywhere.json() == {"sessions_revoked": 2}
        assert await me(laptop["access_token"]) == 401 and await me(phone["access_token"]) == 401
    events = [e["event"] for e in (await hub.api.get("/api/v1/audit/identity")).json()]
    assert {"session.reuse", "logout", "logout.all"} <= set(events)


async def test_api_tokens_are_scoped_listed_revoked_and_stored_only_hashed(hub: Hub) -> None:
    made = await hub.api.post(
        "/api/v1/tokens", json={"name": "wecom-bot", "role": "grid_manager", "person": "zhang-wei"}
    )
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    assert token.startswith("anju_it_") and len(token) > 40
    a, b = await two_alerts(hub)
    async with anonymous(hub) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert [x["id"] for x in (await client.get("/api/v1/alerts", headers=bearer)).json()] == [b]
        assert_not_found(await client.get(f"/api/v1/alerts/{a}", headers=bearer))
        listed = (await hub.api.get("/api/v1/tokens")).json()
        assert [t["name"] for t in listed] == ["wecom-bot"] and "token" not in listed[0]
        assert (await hub.api.delete(f"/api/v1/tokens/{token_id}")).json()["revoked_by"] == "static-token"
        assert (await client.get("/api/v1/alerts", headers=bearer)).status_code == 401
        assert_not_found(await hub.api.delete(f"/api/v1/tokens/{token_id}"))
    stored = b"".join(p.read_bytes() for p in (hub.settings.data_dir).glob("identity.sqlite3*"))
    assert token.encode() not in stored, "the plaintext token is nowhere in the database or its WAL"
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    events = [(e["event"], e["subject"]) for e in (await hub.api.get("/api/v1/audit/identity")).json()]
    assert events[:2] == [("token.revoked", f"token:{token_id}"), ("token.created", f"token:{token_id}")]


async def test_cookie_session_needs_the_csrf_header_for_changes(hub: Hub) -> None:
    await add_users(hub, "wang")
    a, _ = await two_alerts(hub)
    async with anonymous(hub) as client:
        answer = await client.post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD,
                                                               "mode": "cookie"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        cookies = answer.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("anju_session="))
        csrf_cookie = next(c for c in cookies if c.startswith("anju_csrf="))
        for flag in ("Secure", "HttpOnly", "SameSite=strict"):
            assert flag.lower() in session_cookie.lower(), (flag, session_cookie)
        assert "httponly" not in csrf_cookie.lower() and "samesite=strict" in csrf_cookie.lower()
        csrf = answer.json()["csrf_token"]
        jar = f"{session_cookie.split(';')[0]}; {csrf_cookie.split(';')[0]}"
        assert (await client.get(f"/api/v1/alerts/{a}", headers={"Cookie": jar})).status_code == 200
        path = f"/api/v1/alerts/{a}/acknowledge"
        missing = await client.post(path, json={"by": "wang-li"}, headers={"Cookie": jar})
        assert missing.status_code == 403 and missing.headers["content-type"] == PROBLEM
        assert "CSRF" in missing.json()["detail"]
        wrong = await client.post(path, json={"by": "wang-li"}, headers={"Cookie": jar, "X-CSRF-Token": "anju_cs_x"})
        assert wrong.status_code == 403
        taken = await client.post(path, json={"by": "wang-li"}, headers={"Cookie": jar, "X-CSRF-Token": csrf})
        assert taken.status_code == 200 and taken.json()["state"] == "acknowledged"
        session_token = session_cookie.split(";")[0].split("=", 1)[1]
        as_bearer = await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {session_token}"})
        assert as_bearer.status_code == 401, "a cookie session is not a bearer token (it would skip the CSRF check)"
        out = await client.post("/api/v1/auth/logout", headers={"Cookie": jar, "X-CSRF-Token": csrf})
        assert out.status_code == 200 and any("anju_session=" in c for c in out.headers.get_list("set-cookie"))
        assert (await client.get(f"/api/v1/alerts/{a}", headers={"Cookie": jar})).status_code == 401


async def test_passwords_are_never_logged_or_stored_and_role_changes_are_audited(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await add_users(hub, "wang")
    await login_tokens(hub, "wang")
    async with anonymous(hub) as client:
        for _ in range(3):
            await client.post("/api/v1/auth/login", json={"username": "wang", "password": PASSWORD + "x"})
    new_password = "Second-lantern-harbour-8"
    changed = await hub.api.patch("/api/v1/users/wang", json={"password": new_password})
    assert changed.status_code == 200
    role = await hub.api.patch("/api/v1/users/wang", json={"role": "community_committee", "person": None})
    assert role.json()["role"] == "community_committee"
    tokens = await login_tokens(hub, "wang", new_password)
    async with anonymous(hub) as client:
        me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.json()["community_wide"] is True, "the new role is in force"
    audit = (await hub.api.get("/api/v1/audit/identity")).text
    stored = b"".join(p.read_bytes() for p in hub.settings.data_dir.glob("identity.sqlite3*"))
    for secret in (PASSWORD, new_password):
        assert secret not in caplog.text
        assert secret not in audit
        assert secret.encode() not in stored
    entries = (await hub.api.get("/api/v1/audit/identity")).json()
    (change,) = [e for e in entries if e["event"] == "user.role"]
    assert (
        change["actor"] == "static-token" and "grid_manager person=wang-li -> community_committee" in change["detail"]
    )
    assert any(e["event"] == "user.password" for e in entries)


async def test_bad_input_is_refused_with_problem_details_naming_the_field(hub: Hub) -> None:
    async def add(**body: Any) -> Any:
        user = {"name": "li", "role": "grid_manager", "person": "wang-li", "password": PASSWORD, **body}
        answer = await hub.api.post("/api/v1/users", json=user)
        assert answer.headers["content-type"] == PROBLEM, answer.text
        return answer

    unknown_role = await add(role="mayor")
    assert unknown_role.status_code == 422 and "role" in unknown_role.json()["detail"]
    weak = await add(password="short")
    assert weak.status_code == 422 and weak.json()["detail"].startswith("password:")
    assert (await add(password="")).status_code == 422
    assert "用户名" in (await add(password="li" + "-li-" * 4 + "1234")).json()["detail"], "contains the user name"
    assert "common" in (await add(password="password1234")).json()["detail"]
    stranger = await add(person="nobody")
    assert stranger.status_code == 422 and stranger.json()["detail"].startswith("person:")
    unmanaged = await add(person="chen-subdistrict")
    assert unmanaged.status_code == 422 and "manages a grid" in unmanaged.json()["detail"]
    assert (await hub.api.post("/api/v1/users", json={"name": "li", "role": "grid_manager", "person": "wang-li",
                                                       "password": PASSWORD})).status_code == 201  # fmt: skip
    assert (await add()).status_code == 409
    missing = await hub.api.patch("/api/v1/users/nobody", json={"disabled": True})
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    async with anonymous(hub) as client:
        malformed = await client.post(
            "/api/v1/auth/login",
            content=b'{"username": "li", "password": ',
            headers={"Content-Type": "application/json"},
        )
        assert malformed.status_code == 422 and malformed.headers["content-type"] == PROBLEM
        assert "json" in malformed.json()["detail"].lower()
        empty = await client.post("/api/v1/auth/login", json={"username": "li", "password": ""})
        assert empty.status_code == 422 and "password" in empty.json()["detail"]
        for body in ({"usrname": "li", "password": PASSWORD}, {"username": "li", "password": PASSWORD * 20}):
            refused = await client.post("/api/v1/auth/login", json=body)
            assert refused.status_code == 422 and PASSWORD not in refused.text, "a refusal never echoes a password"


async def test_an_alert_escalated_to_a_property_company_comes_into_its_view(mosquitto: int, tmp_path: Path) -> None:
    source = identity_deployment(tmp_path, answer_within_s=2)
    async with running_hub(mosquitto=mosquitto, deployment=source, data_dir=tmp_path / "data") as hub:
        await add_users(hub, "prop-b")
        answer = await hub.api.post("/api/v1/events", json={"events": [lane_event("grid-1", "b1-east")]})
        alert = answer.json()["taken"][0]["alert_id"]
        async with session(hub, "prop-b") as prop_b:
            assert_not_found(await prop_b.get(f"/api/v1/alerts/{alert}"))

            async def seen() -> bool:
                return (await prop_b.get(f"/api/v1/alerts/{alert}")).status_code == 200

            await eventually(seen, timeout_s=15)
            assert (await prop_b.get(f"/api/v1/alerts/{alert}")).json()["escalation_level"] >= 1


async def test_the_live_stream_carries_only_what_the_caller_may_see(hub: Hub) -> None:
    await add_users(hub, "wang", "zhang")
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang:
        for refused in (
            await zhang.get("/api/v1/stream", params={"grid": "grid-1"}),
            await zhang.get("/api/v1/stream", params={"gateway": "gw-b1"}),
        ):
            assert_not_found(refused)
        mine, other = Listener(), Listener()
        async with (
            wang.stream("GET", "/api/v1/stream", timeout=None) as wang_stream,
            zhang.stream("GET", "/api/v1/stream", timeout=None) as zhang_stream,
        ):
            readers = [asyncio.create_task(mine.read(wang_stream)), asyncio.create_task(other.read(zhang_stream))]

            async def both_ready() -> bool:
                return bool(mine.named("hello") and other.named("hello"))

            await eventually(both_ready)
            async with gateway(hub.mqtt_port) as gw:
                await gw.publish(1, Reading("gas-b1-301", T0, 27.4, "%LEL"), channel=Channel.ALARM)
                await gw.ack()

            async def wang_saw_it() -> bool:
                sensors = {s["sensor"] for e in mine.named("sensors") for s in e.data["sensors"]}
                return bool(mine.named("alert")) and "gas-b1-301" in sensors

            await eventually(wang_saw_it)
            await asyncio.sleep(1.5)  # a sensor period more for anything that would leak to zhang
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        assert other.named("alert") == [] and other.named("sensors") == [], "grid-2's manager sees nothing of grid-1"


async def test_a_user_acts_as_themself_and_an_integration_names_who_acted(hub: Hub) -> None:
    await add_users(hub, "wang")
    a, _ = await two_alerts(hub)
    async with session(hub, "wang") as wang:
        other = await wang.post(f"/api/v1/alerts/{a}/acknowledge", json={"by": "zhang-wei"})
        assert other.status_code == 403 and other.headers["content-type"] == PROBLEM
        assert "wang-li" in other.json()["detail"] and "zhang-wei" in other.json()["detail"]
        assert (await wang.get(f"/api/v1/alerts/{a}")).json()["state"] == "open", "nothing was done in another's name"
        own = await wang.post(f"/api/v1/alerts/{a}/acknowledge", json={"by": "wang-li"})
        assert own.status_code == 200 and own.json()["acknowledged_by"] == "wang-li"
    relayed = await hub.api.post(f"/api/v1/alerts/{a}/en-route", json={"by": "wang-li", "note": "via WeCom"})
    assert relayed.status_code == 200, "the static token is an integration: it says who acted"
    trail = (await hub.api.get(f"/api/v1/alerts/{a}/transitions")).json()
    assert [(t["to_state"], t["by"]) for t in trail if t["from_state"] != t["to_state"]][1:] == [
        ("acknowledged", "wang-li"),
        ("en_route", "wang-li"),
    ]


async def test_a_property_company_silences_only_its_own_detectors_for_a_test(hub: Hub) -> None:
    await add_users(hub, "prop-a", "prop-b", "committee")
    ends = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    window = {
        "by": "li-property",
        "reason": "1栋烟感年度测试",
        "ends_at": ends,
        "sensors": ["smoke-b1-f1", "smoke-b1-f2"],
    }
    async with session(hub, "prop-a") as prop_a, session(hub, "prop-b") as prop_b, session(hub, "committee") as c:
        taken = await prop_a.post("/api/v1/silences", json=window)
        assert taken.status_code == 201, taken.text
        silence = taken.json()["id"]
        theirs = await prop_a.post("/api/v1/silences", json={**window, "sensors": ["smoke-b1-f1", "smoke-b2-f1"]})
        assert_not_found(theirs)
        assert "smoke-b2-f1" in theirs.json()["detail"] and "smoke-b1-f1" not in theirs.json()["detail"]
        wide = await prop_a.post("/api/v1/silences", json={**window, "grids": ["grid-1"]})
        assert wide.status_code == 422 and "sensors" in wide.json()["detail"]
        assert (await prop_a.post("/api/v1/silences", json={**window, "sensors": []})).status_code == 422
        assert [s["id"] for s in (await prop_a.get("/api/v1/silences")).json()] == [silence]
        assert (await prop_b.get("/api/v1/silences")).json() == [], "another company's window is not in view"
        assert_not_found(await prop_b.post(f"/api/v1/silences/{silence}/lift", json={"by": "zhou-property"}))
        committee_wide = await c.post(
            "/api/v1/silences", json={**window, "by": "committee", "sensors": [], "grids": ["grid-2"]}
        )
        assert committee_wide.status_code == 201, committee_wide.text
        assert len((await c.get("/api/v1/silences")).json()) == 2
        lifted = await prop_a.post(f"/api/v1/silences/{silence}/lift", json={"by": "li-property"})
        assert lifted.status_code == 200 and lifted.json()["lifted_by"] == "li-property"


async def test_recent_risk_events_say_what_became_of_each_within_the_callers_view(hub: Hub) -> None:
    await add_users(hub, "wang", "zhang")
    a, b = await two_alerts(hub)
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    silenced = await hub.api.post(
        "/api/v1/silences", json={"by": "committee", "reason": "通道清理", "ends_at": ends, "grids": ["grid-2"]}
    )
    assert silenced.status_code == 201, silenced.text
    again = await hub.api.post("/api/v1/events", json={"events": [lane_event("grid-2", "b2-east")]})
    assert again.status_code == 202, again.text
    everything = (await hub.api.get("/api/v1/risk-events")).json()
    by_key = {e["key"]: e for e in everything}
    gas = next(e for e in everything if e["sensor"] == "gas-b1-301")
    assert (gas["outcome"], gas["alert_id"], gas["grade"], gas["status"]) == ("taken", a, "III", "firing")
    west = next(e for e in everything if e["key"].endswith("cam-b2-west/fire-lane"))
    assert (west["outcome"], west["alert_id"]) == ("taken", b)
    east = next(e for e in everything if e["key"].endswith("cam-b2-east/fire-lane"))
    assert (east["outcome"], east["alert_id"]) == ("muted", None), "the silence held it back"
    assert len(by_key) == 3 and everything[0]["key"] == east["key"], "newest first"
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang:
        assert [e["sensor"] for e in (await wang.get("/api/v1/risk-events")).json()] == ["gas-b1-301"]
        assert {e["grid"] for e in (await zhang.get("/api/v1/risk-events")).json()} == {"grid-2"}
    only = (await hub.api.get("/api/v1/risk-events", params={"grid": "grid-1", "status": "firing"})).json()
    assert [e["alert_id"] for e in only] == [a]
    assert (await hub.api.get("/api/v1/risk-events", params={"status": "on"})).status_code == 422


async def test_an_alert_assigned_to_someone_comes_into_their_view(hub: Hub) -> None:
    await add_users(hub, "wang", "zhang")
    a, _ = await two_alerts(hub)
    async with session(hub, "wang") as wang, session(hub, "zhang") as zhang:
        assert_not_found(await zhang.get(f"/api/v1/alerts/{a}"))
        handed = await wang.post(f"/api/v1/alerts/{a}/assign", json={"by": "wang-li", "to": "zhang-wei"})
        assert handed.status_code == 200 and handed.json()["assigned_to"] == ["zhang-wei"]
        assert (await zhang.get(f"/api/v1/alerts/{a}")).status_code == 200
        assert a in [x["id"] for x in (await zhang.get("/api/v1/alerts")).json()]
        taken = await zhang.post(f"/api/v1/alerts/{a}/acknowledge", json={"by": "zhang-wei"})
        assert taken.status_code == 200 and taken.json()["acknowledged_by"] == "zhang-wei"
        (
            assert_not_found(await zhang.get("/api/v1/readings", params={"sensor": "gas-b1-301"})),
            "the alert, not the grid",
        )
