"""Risk events from another system (``POST /api/v1/events``), one alert per condition: rows for the list tests."""

from datetime import UTC, datetime
from typing import Any

from tests.hub.harness import Hub


def event(n: int, *, grid: str = "grid-1", place: str = "b1", **changes: Any) -> dict[str, Any]:
    """A risk event from another system, one condition (hence one alert) per ``n``."""
    return {
        "system": "video-ai",
        "id": f"cam-{place}/lane-{n}",
        "grade": "IV",
        "grid": grid,
        "place": place,
        "kind": "fire-lane-blocked",
        "location_zh": f"红星社区 {place} 消防通道 {n}",
        "rule": "fire lane blocked",
        "time": datetime.now(UTC).isoformat(),
        **changes,
    }


async def raise_events(hub: Hub, *events: dict[str, Any]) -> None:
    answer = await hub.api.post("/api/v1/events", json={"events": list(events)})
    assert answer.status_code == 202 and not answer.json().get("refused"), answer.text
