"""Grouping and volume caps (issue 6): a storm of alerts from one building reaches each person as a bounded number
of pages; nothing is lost, another building's alert is not held, and the windows survive a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from alerts import AlertService, Directory, Grade, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.escalation import EscalationPolicy
from alerts.grouping import HOUR_MS, OVER_CAP, GroupingPolicy, PageWindows
from alerts.message import DIGEST_ITEMS
from alerts.sink import RunningSink, Sink, SinkResponse, start_sink
from tests.alerts.support import SECRET, T0, Clock, event, open_alert_store, wait_until

pytestmark = pytest.mark.usefixtures("alerts_engine")

POLICY = GroupingPolicy(interval_s={Grade.II: 10, Grade.III: 10, Grade.IV: 300}, max_pages_per_hour=5)
S = 1000


# --- windows ------------------------------------------------------------------------------------------------


def test_first_page_goes_at_once_then_one_page_per_interval() -> None:
    windows = PageWindows(POLICY)
    group = "IV:hongxing/1栋"
    assert windows.schedule("zhang", 0, group, Grade.IV, T0) == (group, T0)
    assert windows.schedule("zhang", 0, group, Grade.IV, T0 + 1 * S) == (group, T0 + 300 * S)
    assert windows.schedule("zhang", 0, group, Grade.IV, T0 + 200 * S) == (group, T0 + 300 * S)  # rides along
    assert windows.schedule("zhang", 0, group, Grade.IV, T0 + 301 * S) == (group, T0 + 600 * S)
    assert windows.schedule("zhang", 0, group, Grade.IV, T0 + 2000 * S) == (group, T0 + 2000 * S)  # quiet again
    urgent = "III:hongxing/1栋"  # grades I–III: within GB/T 45839's 15 s
    assert windows.schedule("li", 0, urgent, Grade.III, T0) == (urgent, T0)
    assert windows.schedule("li", 0, urgent, Grade.III, T0 + 2 * S) == (urgent, T0 + 10 * S)


def test_a_channel_that_takes_a_page_a_minute_gets_a_longer_window() -> None:
    windows = PageWindows(POLICY)
    group = "II:hongxing/1栋"
    assert windows.schedule("zhang", 1, group, Grade.II, T0, min_interval_ms=60 * S) == (group, T0)
    assert windows.schedule("zhang", 1, group, Grade.II, T0 + 5 * S, min_interval_ms=60 * S) == (group, T0 + 60 * S)
    assert windows.schedule("zhang", 0, group, Grade.II, T0 + 5 * S) == (group, T0 + 5 * S)  # the app: its own lane


def test_groups_people_and_targets_do_not_wait_for_each_other() -> None:
    windows = PageWindows(POLICY)
    windows.schedule("zhang", 0, "III:hongxing/1栋", Grade.III, T0)
    assert windows.schedule("zhang", 0, "II:hongxing/1栋", Grade.II, T0 + S) == ("II:hongxing/1栋", T0 + S)
    assert windows.schedule("zhang", 0, "III:hongxing/2栋", Grade.III, T0 + S)[1] == T0 + S
    assert windows.schedule("zhang", 1, "III:hongxing/1栋", Grade.III, T0 + S)[1] == T0 + S
    assert windows.schedule("li", 0, "III:hongxing/1栋", Grade.III, T0 + S)[1] == T0 + S
    assert windows.schedule("zhang", 0, "II:hongxing/1栋", Grade.I, T0 + 2 * S)[1] == T0 + 11 * S  # 10 s


def test_cap_holds_grade_iv_pages_until_the_hour_is_over_but_never_i_to_iii() -> None:
    windows = PageWindows(POLICY)
    for n in range(5):  # five buildings, five pages: the cap
        assert windows.schedule("zhang", 0, f"III:hongxing/{n}", Grade.III, T0 + n * S)[1] == T0 + n * S
    held = windows.schedule("zhang", 0, "IV:hongxing/9", Grade.IV, T0 + 10 * S)
    assert held == (OVER_CAP, T0 + HOUR_MS)  # when the oldest of the five leaves the hour
    assert windows.schedule("zhang", 0, "IV:hongxing/8", Grade.IV, T0 + 11 * S) == held  # one digest
    assert windows.schedule("zhang", 0, "III:hongxing/9", Grade.III, T0 + 12 * S)[1] == T0 + 12 * S
    assert windows.schedule("zhang", 0, "II:hongxing/9", Grade.II, T0 + 12 * S)[1] == T0 + 12 * S
    assert windows.schedule("li", 0, "IV:hongxing/9", Grade.IV, T0 + 12 * S)[1] == T0 + 12 * S
    assert windows.schedule("zhang", 0, "IV:hongxing/7", Grade.IV, T0 + 12 * S, cap=50)[1] == T0 + 12 * S


def test_windows_rebuilt_from_the_outbox_continue() -> None:
    windows = PageWindows(POLICY)
    windows.load([("zhang", 0, "IV:hongxing/1栋", T0), ("zhang", 0, "IV:hongxing/1栋", T0 + 300 * S)])
    assert windows.schedule("zhang", 0, "IV:hongxing/1栋", Grade.IV, T0 + 100 * S)[1] == T0 + 300 * S


@pytest.mark.parametrize(
    "changes",
    [
        {"group_wait_s": -1},
        {"interval_s": {Grade.II: -5}},
        {"interval_s": {Grade.IV: 90_000}},
        {"interval_s": {Grade.III: 15}},
        {"max_pages_per_hour": 0},
    ],
)
def test_bad_policies_are_refused_by_name(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(changes))):
        GroupingPolicy(**changes)


# --- the service with a real receiver -------------------------------------------------------------------------


def directory(url: str, *, cap: int | None = None) -> Directory:
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[
            Person(
                id="zhang-wei",
                name="张伟",
                targets=(WebhookTarget(url=url, secret=SECRET),),
                max_pages_per_hour=cap,
            )
        ],
    )


def fire_event(n: int, clock: Clock, *, place: str = "1栋", grade: Grade = Grade.III, status: str = "firing") -> Any:
    return event(
        key=f"hongxing/smoke-{place}-{n}/smoke/alarm",
        sensor=f"smoke-{place}-{n}",
        kind="smoke",
        rule="alarm",
        location_zh=f"红星社区 {place} {n}号探测器",
        place=place,
        grade=grade,
        time_ms=clock.now_ms,
        status=status,
        unit="dB/m",
        value=0.2,
        threshold=0.1,
    )


@pytest.mark.anyio
async def test_storm_from_one_building_is_a_handful_of_pages_and_nothing_is_lost(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = Clock()
    changes = 0
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(
                store=store,
                directory=directory(sink.url),
                receiver=receiver,
                clock=clock,
                grouping=POLICY,
                escalation=EscalationPolicy([], {g: HOUR_MS for g in Grade}),  # the storm's pages, no reminders
            ) as alerts,
        ):
            # One minute of a building on fire: 200 detectors alarm, clear and alarm again (600 notifications) ...
            for second in range(60):
                for n in range(second * 200 // 60, (second + 1) * 200 // 60):
                    await alerts.submit(fire_event(n, clock))
                    changes += 1
                for n in range(0, 200, 20):
                    await alerts.submit(fire_event(n, clock, status="cleared" if second % 2 else "firing"))
                if second == 30:  # ... while a gas leak starts in another building: paged at once
                    await alerts.submit(event(place="3栋", time_ms=clock.now_ms))
                    await wait_until(lambda: any(b["sensor"] == "gas-b1-301" for b in sink.sink.received))
                clock.now_ms += S
            clock.now_ms = T0 + 70 * S  # every window has ended: the held changes go out
            await wait_until(lambda: all(n.status == "sent" for n in store.notifications()), timeout_s=10)
        rows = store.notifications()
    total = len(rows)  # counted once every one was sent: on a slower store some are still being written at T0 + 70 s
    received = sink.sink.received
    assert total > 400  # every change of every alert became a notification ...
    # ... and a handful of pages carried them: the first at once, then at most one per 10 s window, and the gas leak
    assert 3 <= len(received) <= 1 + 60 // 10 + 1, [(b["reason"], b["alert_key"]) for b in received]
    keys_in_pages = {item["idempotency_key"] for b in received for item in b.get("digest", {}).get("items", [])}
    keys_in_pages |= {b["idempotency_key"] for b in received if "digest" not in b}
    assert sum(b.get("digest", {}).get("count", 1) for b in received) == total  # none lost
    gas = next(b for b in received if b["sensor"] == "gas-b1-301")
    assert gas["reason"] == "opened" and "digest" not in gas
    digest = next(b for b in received if b["reason"] == "digest")
    assert digest["message_zh"].startswith("【汇总 III级 黄色")
    assert len(digest["digest"]["items"]) == DIGEST_ITEMS and digest["digest"]["more"] > 0
    assert len({item["alert_id"] for item in digest["digest"]["items"]}) == DIGEST_ITEMS  # one line per alert
    assert len(digest["digest"]["alert_ids"]) == digest["digest"]["alerts"]  # to take them all at once (API)
    listed = [key for b in received for key in b.get("digest", {}).get("keys", [b["idempotency_key"]])]
    assert len(listed) == len(set(listed)) == total  # each notification named by exactly one page
    assert keys_in_pages <= {n.key for n in rows}
    assert all(n.status == "sent" for n in rows)
    assert changes == 200


@pytest.mark.anyio
async def test_a_restart_keeps_the_window_and_a_failed_digest_is_retried_whole(tmp_path: Path) -> None:
    class FailingFirst(Sink):
        def __init__(self) -> None:
            super().__init__(secret=SECRET)
            self.failures = 0

        def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
            if b'"digest"' in body and self.failures == 0:
                self.failures += 1
                return SinkResponse(503, "busy")
            return super().handle(method, path, headers, body)

    clock = Clock()
    failing = FailingFirst()
    async with start_sink(failing) as running, WebhookReceiver() as receiver:
        with open_alert_store(tmp_path / "alerts.db") as store:
            async with AlertService(
                store=store, directory=directory(running.url), receiver=receiver, clock=clock, grouping=POLICY
            ) as alerts:
                await alerts.submit(fire_event(1, clock, grade=Grade.IV))
                await wait_until(lambda: len(failing.received) == 1)
        clock.now_ms += 10 * S
        with open_alert_store(tmp_path / "alerts.db") as store:  # the hub restarted
            async with AlertService(
                store=store, directory=directory(running.url), receiver=receiver, clock=clock, grouping=POLICY
            ) as alerts:
                for n in (2, 3, 4):
                    await alerts.submit(fire_event(n, clock, grade=Grade.IV))
                held = [n for n in store.notifications() if n.status == "pending"]
                assert {n.next_attempt_ms for n in held} == {T0 + 300 * S}  # the window before the restart holds
                clock.now_ms = T0 + 300 * S
                # the retry is scheduled from the clock when the failure is recorded: wait for the record, not the sink
                await wait_until(lambda: alerts.counters.notification_failures_total["retryable"] == 3)
                assert failing.failures == 1 and len(failing.received) == 1
                clock.now_ms += 60 * S  # past any backoff: the three go again, together, with the same key
                await wait_until(lambda: len(failing.received) == 2)
                # The "sent" records commit after the receiver answered (alerts/delivery.py): wait for them too.
                await wait_until(lambda: all(n.status == "sent" for n in store.notifications() if n.reason == "opened"))
                rows = store.notifications()
    digest = failing.received[1]
    assert digest["digest"]["count"] == 3 and digest["reason"] == "digest"
    opened = [n for n in rows if n.reason == "opened"]
    assert all(n.status == "sent" for n in opened) and sorted(n.attempts for n in opened) == [1, 2, 2, 2]
