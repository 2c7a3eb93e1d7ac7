"""docs/metrics.md names every series a running hub exposes on /metrics, and nothing it does not (issue 7)."""

import re
from pathlib import Path

import pytest

from tests.hub.harness import Hub, running_hub

pytestmark = pytest.mark.anyio
DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


@pytest.fixture
async def hub(mosquitto: int, demo_deployment: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as running:
        yield running


async def test_every_exposed_series_is_documented_with_its_type_and_nothing_else(hub: Hub) -> None:
    text = (await hub.api.get("/metrics")).text
    exposed = dict(re.findall(r"^# TYPE (anju_\w+) (\w+)$", text, re.M))
    rows = dict(re.findall(r"^\| `(anju_\w+)` \| (\w+) \|", DOC.read_text(encoding="utf-8"), re.M))
    assert sorted(set(exposed) - set(rows)) == [], "exposed but not documented"
    assert sorted(set(rows) - set(exposed)) == [], "documented but not exposed"
    assert {name: kind for name, kind in rows.items() if exposed[name] != kind} == {}, "type differs"
