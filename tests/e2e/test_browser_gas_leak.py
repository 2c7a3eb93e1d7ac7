"""The grid manager's flow end to end in a real browser, fed by the simulator (issue 7): the demo's processes —
simulator, edge agents, Mosquitto, hub, webhook sink — with headless Chromium logged in as wang-li before the kitchen
gas leak starts. The alert must appear without a reload, be taken in one tap, and its escalation must stop."""

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from hub.demo.orchestrator import DEMO_USERS, create_demo_users, prepare
from tests.conftest import require_service
from tests.e2e.system import System, notifications, wait_for

pytestmark = pytest.mark.e2e

SPEED = 4.0
DURATION_S = 44.0  # simulated seconds: the leak passes 10 %LEL at ~13 s and 25 %LEL at ~21 s
ARTIFACTS = Path(__file__).resolve().parents[2] / "run" / "test-artifacts" / "web"


@pytest.fixture
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require_service("chromium", chromium)
    assert chromium is not None
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _alert(api: str, token: str, sensor: str) -> dict[str, object] | None:
    request = urllib.request.Request(f"{api}/api/v1/alerts", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        alerts: list[dict[str, object]] = json.load(answer)
    return next((a for a in alerts if a["sensor"] == sensor), None)


def test_a_gas_leak_appears_in_the_open_inbox_and_is_taken_in_one_tap(
    mosquitto: int, tmp_path: Path, browser: Browser
) -> None:
    plan = prepare(tmp_path / "run", mqtt_port=mosquitto)
    token = plan.token_file.read_text(encoding="utf-8").strip()
    system = System(plan, hub_mqtt_port=mosquitto, speed=SPEED, duration_s=DURATION_S)
    try:
        system.start("sink", "alerts.sink", "--port", str(plan.sink_port), "--secret-file", str(plan.secret_file),
                     "--log", str(plan.notifications), port=plan.sink_port)  # fmt: skip
        system.start_hub()
        logins = create_demo_users(plan, token)
        password = next(
            line.split("\t")[1] for line in logins.read_text(encoding="utf-8").splitlines() if line.startswith("wang\t")
        )
        assert DEMO_USERS["wang"] == ("grid_manager", "wang-li")
        page = browser.new_context(viewport={"width": 390, "height": 844}, base_url=plan.api).new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto("/app/login")
        page.fill("#username", "wang")
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page.locator("#status")).to_have_class("status live")
        expect(page.locator("#active")).to_contain_text("暂无待处理告警")

        system.start_sim()
        for gateway in plan.modbus_ports:
            system.start_edge(gateway)
        card = page.locator("#active article.card", has_text="1栋301室")
        expect(card).to_be_visible(timeout=60_000)  # arrives while the page stays open: no reload anywhere
        seen_s = time.monotonic()
        expect(card.locator(".deadline")).to_contain_text("升级 / escalates at")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "e2e-gas-leak-arrived.png"), full_page=True)

        card.locator("button.primary", has_text="接单").click()
        expect(card.locator(".deadline")).to_contain_text("到场时限 / on site by")
        page.screenshot(path=str(ARTIFACTS / "e2e-gas-leak-taken.png"), full_page=True)

        alert = _alert(plan.api, token, "gas-b1-301")
        assert alert is not None and alert["acknowledged_by"] == "wang-li" and alert["escalation_level"] == 0
        assert alert["state"] == "acknowledged" and alert["next_deadline"] is not None
        wait_for(lambda: any(n["sensor"] == "gas-b1-301" for n in notifications(plan)), system, "the page", 30)
        assert time.monotonic() - seen_s < 60
        assert errors == [], errors
    finally:
        system.stop()
