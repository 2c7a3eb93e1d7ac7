"""The web pages as served (issue 7, issue 8's security headers): where each lives, their content types, the strict
Content-Security-Policy on the pages and the hardening headers on every answer. A real hub on loopback."""

from pathlib import Path

import pytest

from hub.web import CONTENT_SECURITY_POLICY, STATIC
from tests.hub.harness import Hub, running_hub

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


async def test_pages_and_their_files_are_served_with_a_strict_policy(hub: Hub) -> None:
    pages = (
        ("/app/", "inbox.html"),
        ("/app/login", "login.html"),
        ("/app/alerts/a-1", "alert.html"),
        ("/app/overview", "overview.html"),
        ("/app/sensors/gas-b1-101", "sensor.html"),
        ("/app/incidents", "incidents.html"),
        ("/app/incidents/i-1", "incidents.html"),
        ("/app/property", "property.html"),
        ("/public/", "public.html"),
    )
    for path, file in pages:
        page = await hub.api.get(path, headers={"Authorization": ""})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert page.text == (STATIC / file).read_text(encoding="utf-8")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-frame-options"] == "DENY" and page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in page.text and "style=" not in page.text, "no inline code under the CSP"
    for name, kind in (("anju.css", "text/css"), ("inbox.js", "javascript"), ("api.js", "javascript")):
        asset = await hub.api.get(f"/app/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
    assert (await hub.api.get("/app/static/nope.js")).status_code == 404
    assert (await hub.api.get("/app/static/../../config.py")).status_code == 404
    root = await hub.api.get("/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/app/"
    docs = await hub.api.get("/docs")
    assert "content-security-policy" not in docs.headers, "Swagger UI loads from its CDN: no page policy there"
    assert docs.headers["x-content-type-options"] == "nosniff"
    api = await hub.api.get("/api/v1/health")
    assert api.headers["x-frame-options"] == "DENY" and "content-security-policy" not in api.headers


def test_pages_load_nothing_from_elsewhere() -> None:
    """Everything a page loads comes from the hub: a site without internet access shows them whole."""
    for file in STATIC.iterdir():
        text = file.read_text(encoding="utf-8").replace("http://www.w3.org/2000/svg", "")  # a name, not a fetch
        for marker in ("http://", "https://", "//cdn", "@import"):
            assert marker not in text, (file.name, marker)
