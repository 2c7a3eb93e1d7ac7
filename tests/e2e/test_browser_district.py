"""The district node's page (hub/district/, hub/web/static/district.js) in a real headless Chromium: a sub-district
official logs in on a phone, sees their communities' counts and open alerts — and nothing of another sub-district's —
and declares an incident in one of them; the layout is saved at a phone's and a desktop's size."""

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser_gas_leak import browser  # noqa: F401 - the fixture
from tests.hub.test_district import PASSWORD, District, district  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "run" / "test-artifacts" / "web"


def test_a_sub_district_sees_its_communities_and_declares_an_incident_from_the_page(
    district: District,  # noqa: F811
    browser: Browser,  # noqa: F811
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=district.base)
    page = context.new_page()
    page.clock.install()  # time flows; the 10-s refresh is fast-forwarded below
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    refused: list[str] = []
    page.on("response", lambda got: refused.append(f"{got.status} {got.url}") if got.status >= 400 else None)
    page.goto("/")
    expect(page).to_have_url(f"{district.base}/app/login?next=%2Fapp%2F")
    assert refused[0] == f"401 {district.base}/api/v1/auth/me", refused
    refused.clear()  # the page asked who is calling, was answered 401, and sent the browser to the login form
    page.fill("#username", "chen")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("#me")).to_contain_text("chen · 街道办事处")
    rows = page.locator("#communities tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("tr[data-community=jinjiang]")).to_contain_text("春熙路街道")
    expect(page.locator("tr[data-community=hongxing] td.grade-II")).to_have_text("1")
    expect(page.locator("tr[data-community=hongxing] td.gateways.offline")).to_have_text("1 / 2")
    expect(page.locator("tr[data-community=jinjiang] td.gateways")).to_have_text("—")  # not published yet
    expect(page.locator("#offline li")).to_have_count(1)
    expect(page.locator("#offline li[data-gateway='hongxing/gw-b2']")).to_contain_text("2栋地下车库")
    expect(page.locator("#alerts article[data-alert=hx-2]")).to_contain_text("已升级至第 1 级")
    expect(page.locator("#alerts article.card")).to_have_count(4)  # hx-1, hx-2, jj-1, jj-2: qingyang is not theirs
    expect(page.locator("#alerts article[data-alert=qy-1]")).to_have_count(0)
    expect(page.locator("input[name=community]")).to_have_count(2)

    page.select_option("#kind", "flood")
    page.fill("#title", "锦江暴雨内涝演练")
    page.check("input[name=community][value=jinjiang]")
    page.click("#declare-form button[type=submit]")
    card = page.locator("#declarations article.card", has_text="锦江暴雨内涝演练")
    expect(card).to_be_visible()
    expect(card.locator(".facts")).to_contain_text("chen")
    expect(card.locator("li[data-part=jinjiang]")).to_have_attribute("data-state", "pending")
    expect(card.locator("li")).to_have_count(1)

    # The 10-s refresh draws a section again only when what it shows changed: nothing here did.
    kept = ("#communities table", "#alerts article[data-alert=hx-1]", "#offline li")
    for selector in kept:  # a property, not an attribute: the page compares what it draws with the HTML shown
        page.locator(selector).evaluate("node => { node.anjuProbe = 'kept'; }")
    with page.expect_response(lambda answer: answer.url.endswith("/api/v1/communities/hongxing/gateways")):
        page.clock.fast_forward(11_000)  # the refresh's last request
    page.wait_for_timeout(500)
    for selector in kept:
        assert page.locator(selector).evaluate("node => node.anjuProbe") == "kept", f"{selector} was drawn again"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "district-phone.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone: the table must scroll inside its box"
    page.set_viewport_size({"width": 1366, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "district-desktop.png"), full_page=True)
    assert not errors and not refused, (errors, refused)
    context.close()
