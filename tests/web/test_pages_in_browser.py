"""The web pages in a real browser (headless Chromium, driven by Playwright) against a real hub: a grid manager logs
in, sees the alerts of their grids arrive live, takes and resolves one in a few taps; the detail page shows the
readings and the timeline; residents read the public notices without logging in."""

import json
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Route, async_playwright, expect

from protocol import Reading
from protocol.topics import Channel
from tests.conftest import require_service
from tests.hub.harness import T0, Hub, eventually, gateway, running_hub
from tests.hub.identity_support import PASSWORD, add_users, identity_deployment

pytestmark = pytest.mark.anyio
expect.set_options(timeout=15_000)
"""An expectation waits up to 15 s, not Playwright's 5 s: with the soak and another test file beside, a page's next
request can take that long. Each still fails if the page never gets there."""


@pytest.fixture
async def hub(mosquitto: int, tmp_path: Path) -> AsyncIterator[Hub]:
    async with running_hub(
        mosquitto=mosquitto, deployment=identity_deployment(tmp_path), data_dir=tmp_path / "data"
    ) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require_service("chromium", chromium)
    assert chromium is not None
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


ARTIFACTS = Path(__file__).resolve().parents[2] / "run" / "test-artifacts" / "web"
"""Screenshots of each page the tests visit, at a phone's and a desktop's size (kept for review, not compared)."""
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1366, "height": 800}}


async def check_layout(page: Page, name: str) -> None:
    """At a phone's and a desktop's width: nothing wider than the window (no sideways scrolling), a screenshot each."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for size, viewport in SIZES.items():
        await page.set_viewport_size(viewport)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} at {size} size is {overflow} px wider than the window"
        await page.screenshot(path=str(ARTIFACTS / f"{name}-{size}.png"), full_page=True)
    await page.set_viewport_size(SIZES["phone"])


def base(hub: Hub) -> str:
    return f"http://127.0.0.1:{hub.settings.http_port}"


async def phone(browser: Browser, hub: Hub) -> tuple[Page, list[str]]:
    """A phone-sized page (the cookies are Secure: Chromium keeps them for http://127.0.0.1, a secure context) and
    the list its script errors go to (every test ends asserting it empty)."""
    context = await browser.new_context(viewport={"width": 390, "height": 844}, base_url=base(hub))
    page = await context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


async def first_alert_id(hub: Hub) -> str:
    async def found() -> str | None:
        alerts = (await hub.api.get("/api/v1/alerts")).json()
        return str(alerts[0]["id"]) if alerts else None

    answer: str = await eventually(found)
    return answer


async def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    await page.goto("/app/login?next=/app/")
    await page.fill("#username", name)
    await page.fill("#password", password)
    await page.click("button[type=submit]")
    if password == PASSWORD:
        await expect(page.locator("#who")).to_contain_text(name)  # the inbox, logged in


async def gas_alarm(hub: Hub, seq: int, sensor: str, value: float) -> None:
    gw = "gw-b1" if "-b1-" in sensor else "gw-b2"
    async with gateway(hub.mqtt_port, gw) as link:
        await link.publish(seq, Reading(sensor, T0 + seq * 1000, value, "%LEL"), channel=Channel.ALARM)
        await link.ack()


async def test_a_grid_manager_sees_alerts_arrive_live_and_takes_one_to_resolved(hub: Hub, browser: Browser) -> None:
    await add_users(hub, "wang", "zhang")
    await gas_alarm(hub, 1, "gas-b1-301", 27.4)
    page, errors = await phone(browser, hub)

    await log_in(page, "wang", "wrong-password-1")
    await expect(page.locator("#problem .banner")).to_contain_text("密码")
    assert page.url.endswith("/app/login?next=/app/"), "a wrong password stays on the form"
    await log_in(page, "wang")
    first = page.locator("#active article.card")
    await expect(first).to_have_count(1)
    await expect(first).to_contain_text("红星社区")
    await expect(first).to_contain_text("27.4 %LEL")
    await expect(page.locator("#status")).to_have_class("status live")
    await expect(first.locator(".deadline")).to_contain_text("升级 / escalates at")
    await check_layout(page, "inbox")

    # A second alarm in wang-li's grid arrives without a reload; one in zhang-wei's grid never shows here. The card
    # already shown stays the same node: a live update never swallows a tap in progress on it.
    await first.evaluate("card => { card.dataset.probe = 'kept'; }")
    await gas_alarm(hub, 2, "gas-b2-101", 30.0)
    await gas_alarm(hub, 3, "gas-b1-101", 26.0)
    await expect(page.locator("#active article.card")).to_have_count(2)
    await expect(page.locator("#active")).not_to_contain_text("2栋")
    await expect(page.locator("#active article.card", has_text="1栋301室")).to_have_attribute("data-probe", "kept")

    # One tap each: take it, on my way, on site, then resolve with a note.
    card = page.locator("#active article.card", has_text="1栋301室")
    await card.locator("button.primary", has_text="接单").click()
    await expect(card.locator(".deadline")).to_contain_text("到场时限 / on site by")  # the escalation stopped
    await expect(card.locator(".deadline")).not_to_contain_text("升级")
    for label in ("出发", "到场"):
        await card.locator("button.primary", has_text=label).click()
        await expect(card.locator("button.primary")).not_to_have_text(label)
    await card.locator("button.primary", has_text="处置完成").click()
    await expect(page.locator("#problem .banner")).to_contain_text("请填写处置说明")
    await card.locator("textarea").fill("关阀通风，燃气公司已检修")
    await card.locator("button.primary", has_text="处置完成").click()
    await expect(page.locator("#resolved article.card")).to_have_count(1)
    await expect(page.locator("#active article.card")).to_have_count(1)

    alerts: list[dict[str, Any]] = (await hub.api.get("/api/v1/alerts")).json()
    resolved = next(a for a in alerts if a["sensor"] == "gas-b1-301")
    assert (resolved["state"], resolved["resolved_by"]) == ("resolved", "wang-li")
    assert resolved["resolved_note"] == "关阀通风，燃气公司已检修"
    trail = (await hub.api.get(f"/api/v1/alerts/{resolved['id']}/transitions")).json()
    assert [t["channel"] for t in trail if t["by"] == "wang-li"] == ["api"] * 4
    assert errors == [], errors


async def test_the_inbox_keeps_the_newer_of_an_answer_and_a_late_event(hub: Hub, browser: Browser) -> None:
    """Events of the stream can arrive after the answer to a later step (or after a later event): the inbox keeps the
    alert as of its newest ``updated_at``, so 接单 is not shown again for an alert already taken. The stream is
    replaced by one that sends a newer and then an older version of the hub's own alert, in that order."""
    await add_users(hub, "wang")
    await gas_alarm(hub, 1, "gas-b1-301", 27.4)
    alert_id = await first_alert_id(hub)
    alert: dict[str, Any] = (await hub.api.get(f"/api/v1/alerts/{alert_id}")).json()
    updated = datetime.fromisoformat(alert["updated_at"])
    newer = alert | {
        "state": "acknowledged",
        "acknowledged_by": "wang-li",
        "updated_at": (updated + timedelta(seconds=5)).isoformat(),
    }
    older = alert | {"state": "open", "updated_at": (updated + timedelta(seconds=1)).isoformat()}

    def event(seq: int, changed: dict[str, Any], from_state: str) -> str:
        transition = {"from_state": from_state, "to_state": changed["state"], "by": "wang-li", "channel": "api"}
        data = {"seq": seq, "transition": transition | {"time": changed["updated_at"], "note": ""}, "alert": changed}
        return f"event: alert\nid: {seq}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

    streams: list[str] = []

    async def late_stream(route: Route) -> None:
        streams.append(route.request.url)
        body = event(1, newer, "open") + event(2, older, "acknowledged")
        await route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)

    page, errors = await phone(browser, hub)
    await page.route("**/api/v1/stream*", late_stream)
    await log_in(page, "wang")
    card = page.locator(f"#alert-{alert_id}")
    await expect(card).to_have_attribute("data-state", "acknowledged")

    async def reconnected() -> bool:  # the browser opened the stream again (it ended): both events came twice
        return len(streams) > 1

    await eventually(reconnected, timeout_s=30)
    await expect(card).to_have_attribute("data-state", "acknowledged")
    await expect(card.locator("button.primary")).to_have_text("出发 / On my way")
    assert errors == [], errors


async def test_the_detail_page_shows_readings_against_the_set_point_and_the_timeline(
    hub: Hub, browser: Browser
) -> None:
    await add_users(hub, "wang")
    await gas_alarm(hub, 1, "gas-b1-301", 27.4)

    alert = await first_alert_id(hub)
    page, errors = await phone(browser, hub)
    await log_in(page, "wang")
    await page.goto(f"/app/alerts/{alert}")
    await expect(page.locator("#alert article.card")).to_contain_text("gas-b1-301")
    await expect(page.locator("#chart svg.chart polyline.mean")).to_have_count(1)
    await expect(page.locator("#chart svg.chart line.limit")).to_have_count(1)
    await check_layout(page, "alert")
    await expect(page.locator("#timeline li").first).to_contain_text("待接单")
    await page.fill("#comment-text", "已电话联系住户")
    await page.click("#comment button[type=submit]")
    await expect(page.locator("#timeline li").last).to_contain_text("备注 / comment：已电话联系住户")
    await expect(page.locator("#timeline li").last).to_contain_text("wang-li")
    assert errors == [], errors


async def test_residents_read_the_public_notices_and_staff_pages_ask_for_a_login(hub: Hub, browser: Browser) -> None:
    published = await hub.api.post(
        "/api/v1/disclosures",
        json={
            "by": "wang-li",
            "subject_kind": "notice",
            "title": "消防演练通知",
            "text": "本周六上午十点 1 栋消防演练。",
        },
    )
    assert published.status_code == 201, published.text
    page, errors = await phone(browser, hub)
    await page.goto("/public/")
    await expect(page.locator("article.disclosure")).to_contain_text("消防演练通知")
    await expect(page.locator("#hazards")).to_contain_text("隐患")
    await check_layout(page, "public")
    await page.goto("/app/")
    await page.wait_for_url("**/app/login?next=%2Fapp%2F")
    await expect(page.locator("#username")).to_be_visible()
    assert errors == [], errors


async def test_the_overview_colours_each_sensor_by_state_live_and_a_sensor_shows_its_history(
    hub: Hub, browser: Browser
) -> None:
    await add_users(hub, "wang")
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, Reading("temp-b1-101", T0, 22.5, "Cel"))
        await gw.ack()
    page, errors = await phone(browser, hub)
    await log_in(page, "wang")
    await page.goto("/app/overview")
    tiles = page.locator("a.tile")
    await expect(tiles).to_have_count(10)  # grid-1's sensors: wang-li sees no other
    await expect(page.locator("#tile-temp-b1-101")).to_contain_text("22.5 Cel")
    await expect(page.locator("#tile-temp-b1-101")).to_have_attribute("data-state", "fresh")
    await expect(page.locator("#tile-gas-b1-301")).to_have_attribute("data-state", "unseen")
    await expect(page.locator("#status")).to_have_class("status live")
    await expect(page.locator("#count-gateways")).to_contain_text("网关离线 / gateways offline 1 / 1")

    # Live updates change the tiles, dots and floor buttons in place: a tap in progress on one is never swallowed.
    probed = ("#tile-gas-b1-301", "#dot-temp-b1-101", "#floors button:has-text('3 层')")
    for selector in probed:
        await page.locator(selector).evaluate("node => { node.dataset.probe = 'kept'; }")
    await gas_alarm(hub, 2, "gas-b1-301", 27.4)  # live: the value and the alarm colour, no reload
    await expect(page.locator("#tile-gas-b1-301")).to_have_attribute("data-state", "alarm-III")
    await expect(page.locator("#tile-gas-b1-301")).to_contain_text("27.4 %LEL")
    await expect(page.locator("#count-III")).to_contain_text("1")
    await expect(page.locator("svg.plan circle.dot")).to_have_count(3)  # floor 1 of building 1: gas, temperature, smoke
    for selector in probed:
        await expect(page.locator(selector)).to_have_attribute("data-probe", "kept")
    await page.locator("#floors button", has_text="3 层").click()
    await expect(page.locator("#dot-gas-b1-301")).to_have_attribute("data-state", "alarm-III")
    await expect(page.locator("#dot-temp-b1-101")).to_have_count(0), "another floor"
    await check_layout(page, "overview")

    await page.locator("#tile-gas-b1-301").click()
    await page.wait_for_url("**/app/sensors/gas-b1-301")
    await expect(page.locator("#sensor")).to_contain_text("可燃气体")
    await expect(page.locator("#chart svg.chart line.limit")).to_have_count(3)  # the kind's three set points
    await expect(page.locator("#chart svg.chart line.mark")).to_have_count(1)  # its alert
    await page.locator("#ranges button", has_text="7 天").click()
    await expect(page.locator("#ranges button[aria-pressed=true]")).to_have_text("7 天 / 7 d")
    await expect(page.locator("#range-note")).to_contain_text("1h")
    await check_layout(page, "sensor")
    assert errors == [], errors


async def test_a_property_company_sees_its_faults_takes_its_work_orders_and_silences_a_detector_test(
    hub: Hub, browser: Browser
) -> None:
    await add_users(hub, "prop-a")
    async with gateway(hub.mqtt_port) as gw:
        await gw.publish(1, Reading("smoke-b1-f1", T0, 0.02, "dB/m"))
        await gw.ack()
    await gas_alarm(hub, 2, "gas-b1-301", 27.4)

    alert = await first_alert_id(hub)
    due = "2099-01-01T00:00:00+08:00"
    order = await hub.api.post(
        f"/api/v1/alerts/{alert}/work-orders",
        json={"by": "zhang-wei", "department": "property", "task": "检修 301 燃气管道", "due_at": due},
    )
    assert order.status_code == 201, order.text
    page, errors = await phone(browser, hub)
    await log_in(page, "prop-a")
    await page.goto("/app/property")
    building = page.locator("[data-building=b1]")
    await expect(building).to_contain_text("探测器 / detectors 10")
    await expect(building.locator("[data-sensor=gas-b1-301]")).to_contain_text("告警中")
    await expect(building.locator("[data-sensor=temp-b1-101]")).to_contain_text("未上报")
    await expect(building.locator("[data-sensor=smoke-b1-f1]")).to_have_count(0)  # reporting and fine
    await expect(page.locator("[data-building=b2]")).to_have_count(0)  # another company's building
    await check_layout(page, "property")

    await building.locator("[data-sensor=gas-b1-301] a").click()  # its chart, then back to the console
    await page.wait_for_url("**/app/sensors/gas-b1-301")
    await expect(page.locator("#chart svg.chart polyline.mean")).to_have_count(1)
    await page.go_back()
    card = page.locator(f"[data-order={order.json()['id']}]")
    await card.locator("button", has_text="接单").click()
    await expect(card.locator("button")).to_have_text("完成 / Done")
    await card.locator("button", has_text="完成").click()
    await expect(page.locator("#problem .banner")).to_contain_text("完工照片")
    await card.locator("input[type=url]").fill("http://127.0.0.1/photos/301-after.jpg")
    await card.locator("input[aria-label=note]").fill("更换阀门，复测正常")
    await card.locator("button", has_text="完成").click()
    await expect(card).to_contain_text("done")
    [done] = (await hub.api.get(f"/api/v1/alerts/{alert}/work-orders")).json()
    assert [(e["phase"], e["by"]) for e in done["evidence"]] == [("after", "li-property")]

    await page.select_option("#silence-building", "b1")
    await page.select_option("#silence-kind", "smoke")
    await page.fill("#silence-reason", "1栋烟感年度测试")
    await page.click("#silence button[type=submit]")
    window = page.locator("#silences article.card")
    await expect(window).to_contain_text("smoke-b1-f1、smoke-b1-f2、smoke-b1-f3")
    [running] = (await hub.api.get("/api/v1/silences", params={"running": "true"})).json()
    assert (running["created_by"], running["reason"]) == ("li-property", "1栋烟感年度测试")
    await window.locator("button", has_text="提前结束").click()
    await expect(page.locator("#silences")).to_contain_text("当前无静默")
    assert errors == [], errors


async def test_the_incident_board_counts_households_reported_from_it(hub: Hub, browser: Browser) -> None:
    await add_users(hub, "committee", "volunteer")
    declared = await hub.api.post(
        "/api/v1/incidents", json={"by": "committee", "kind": "fire", "title": "1栋火情", "grids": ["grid-1"]}
    )
    assert declared.status_code == 201, declared.text
    incident = declared.json()["id"]
    page, errors = await phone(browser, hub)
    await log_in(page, "volunteer")
    await page.goto("/app/incidents")
    await page.locator("a.button", has_text="事件看板").click()
    await page.wait_for_url(f"**/app/incidents/{incident}")
    await expect(page.locator("#board")).to_contain_text("1栋火情")
    for household, status in (("1-301", "needs-help"), ("1-302", "safe"), ("1-401", "safe")):
        await page.fill("#household", household)
        await page.select_option("#status", status)
        await page.click("#report button[type=submit]")
        await expect(page.locator("#households")).to_contain_text(household)
    await expect(page.locator("#counts [data-status=needs-help]")).to_contain_text("1")
    await expect(page.locator("#counts [data-status=safe]")).to_contain_text("2")

    # A report half typed outlives the board's refresh on a live alert: same form, same text, the caret still there.
    await page.fill("#household", "1-501")
    await page.fill("#note", "独居老人，电话未接")
    await page.locator("#report").evaluate("form => { form.dataset.probe = 'kept'; }")
    export = page.locator("#board a.button", has_text="导出")  # a property: the page compares the HTML it draws
    await export.evaluate("link => { link.anjuProbe = 'kept'; }")
    reported = await hub.api.post(
        f"/api/v1/incidents/{incident}/households", json={"by": "committee", "household": "1-601", "status": "safe"}
    )
    assert reported.status_code == 200, reported.text
    await gas_alarm(hub, 1, "gas-b1-301", 27.4)  # any alert change refreshes the board at once
    await expect(page.locator("#households")).to_contain_text("1-601")
    await expect(page.locator("#report")).to_have_attribute("data-probe", "kept")
    await expect(page.locator("#household")).to_have_value("1-501")
    await expect(page.locator("#note")).to_be_focused()
    assert await export.evaluate("link => link.anjuProbe") == "kept", "the unchanged head of the board was redrawn"
    await page.fill("#household", "")
    await page.fill("#note", "")
    await check_layout(page, "incident")
    await expect(page.locator("#households div").first).to_have_attribute("data-status", "needs-help")
    reports = (await hub.api.get(f"/api/v1/incidents/{incident}/households")).json()
    assert {(r["household"], r["reported_by"]) for r in reports} == {
        ("1-301", "liu-yang"),
        ("1-302", "liu-yang"),
        ("1-401", "liu-yang"),
        ("1-601", "committee"),
    }
    export = await hub.api.get(f"/api/v1/incidents/{incident}/export.csv")
    assert export.status_code == 200 and "1-301" in export.text
    assert errors == [], errors


async def test_the_pages_read_a_whole_list_by_following_the_next_links(hub: Hub, browser: Browser) -> None:
    """``apiAll`` (hub/web/static/api.js) in the browser: with pages of one or two rows it still gathers every open
    alert and every sensor the committee may see — what the overview and the inbox need when a list outgrows a page."""
    await add_users(hub, "committee")
    for seq, sensor in enumerate(("gas-b1-101", "gas-b1-201", "gas-b1-301"), start=1):
        await gas_alarm(hub, seq, sensor, 30.0)

    async def three_open() -> bool:
        return len((await hub.api.get("/api/v1/alerts?active=true")).json()) == 3

    await eventually(three_open)
    page, errors = await phone(browser, hub)
    await log_in(page, "committee")
    script = """async () => {
      const { apiAll } = await import("/app/static/api.js");
      const alerts = await apiAll("/alerts?active=true&limit=1");
      const sensors = await apiAll("/sensors?limit=2", { key: "sensors" });
      return { alerts: alerts.map((a) => a.id), sensors: sensors.sensors.map((s) => s.sensor) };
    }"""
    gathered: dict[str, Any] = await page.evaluate(script)
    committee = await page.evaluate("""async () => {
      const response = await fetch("/api/v1/sensors?limit=5000", { credentials: "same-origin" });
      return (await response.json()).sensors.map((s) => s.sensor);
    }""")
    every_alert = [a["id"] for a in (await hub.api.get("/api/v1/alerts?active=true")).json()]
    assert sorted(gathered["alerts"]) == sorted(every_alert) and len(every_alert) == 3, "three pages of one"
    assert len(committee) > 2 and gathered["sensors"] == committee, "pages of two, in the list's order"
    assert errors == []
