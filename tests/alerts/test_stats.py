"""Response-time statistics (issue 6): per person, grid and community, from the audit log's milestones."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, WebhookReceiver
from alerts.sink import RunningSink
from tests.alerts.support import MINUTE_MS, T0, Clock, directory_for, event, open_alert_store

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]


async def test_times_to_acknowledge_arrive_and_resolve(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(store=store, directory=directory_for(sink.url), receiver=receiver, clock=clock) as alerts,
        ):
            for n, ack_after_s in enumerate((60, 120, 600)):
                clock.now_ms = T0 + n * 60 * MINUTE_MS
                alert = await alerts.submit(event(key=f"k/{n}"))
                assert alert is not None
                clock.now_ms += ack_after_s * 1000
                await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
                clock.now_ms += 300_000
                await alerts.on_site(alert.id, by="zhang-wei", channel="app")
                await alerts.submit(event(key=f"k/{n}", status="cleared"))
                clock.now_ms += 600_000
                await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="ok")
            clock.now_ms = T0 + 5 * 60 * MINUTE_MS
            await alerts.submit(event(key="k/never"))
            clock.now_ms += 6 * MINUTE_MS
            await alerts.escalate_due()  # nobody answers: reminded (no chain), counted as not acknowledged
            by_person = await alerts.response_stats(since_ms=T0, until_ms=clock.now_ms, by="person")
            by_grid = await alerts.response_stats(since_ms=T0, until_ms=clock.now_ms, by="grid")
            later = await alerts.response_stats(since_ms=T0 + 90 * MINUTE_MS, until_ms=clock.now_ms, by="grid")
    manager, never = by_person
    assert (manager.group, manager.alerts, manager.unacknowledged) == ("zhang-wei", 3, 0)
    assert (manager.acknowledge_p50_s, manager.on_site_p50_s, manager.resolve_p50_s) == (120.0, 420.0, 1020.0)
    assert manager.acknowledge_p90_s == pytest.approx(504.0)  # inclusive quantiles of 60, 120, 600 s
    assert (never.group, never.alerts, never.unacknowledged, never.acknowledge_p50_s) == ("-", 1, 1, None)
    [grid] = by_grid
    assert (grid.group, grid.alerts, grid.unacknowledged) == ("hongxing-01", 4, 1)
    assert [g.alerts for g in later] == [2], "only alerts opened in the window count"
