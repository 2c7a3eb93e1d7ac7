"""AlertService end to end: real SQLite, real HTTP deliveries to the real sink on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from alerts import (
    Alert,
    AlertService,
    AlertState,
    AlertStore,
    Directory,
    Grade,
    Notification,
    RiskEvent,
    Transition,
    TransitionError,
    WebhookReceiver,
)
from alerts.sink import RunningSink, Sink, SinkResponse, start_sink
from hub.demo.processes import free_port
from tests.alerts.support import SECRET, directory_for, event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

FAST = {"retry_base_s": 0.05, "retry_max_s": 0.2}


class ScriptedSink(Sink):
    """Answers with the scripted statuses first, then behaves like the real sink."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(secret=SECRET)
        self.script = list(statuses)
        self.attempts = 0

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        self.attempts += 1
        if self.script:
            return SinkResponse(self.script.pop(0), "scripted")
        return super().handle(method, path, headers, body)


def _service(store: AlertStore, directory: Directory, receiver: WebhookReceiver, **kw: object) -> AlertService:
    return AlertService(store=store, directory=directory, receiver=receiver, **{**FAST, **kw})  # type: ignore[arg-type]


async def test_open_notifies_within_a_second_with_signed_body(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(sink.url), receiver) as service:
            started = time.monotonic()
            alert = await service.submit(event())
            assert alert is not None and alert.state is AlertState.OPEN and alert.grade is Grade.III
            await wait_until(lambda: len(sink.sink.received) == 1, timeout_s=1.0)
            assert time.monotonic() - started < 1.0
            await wait_until(lambda: service.counters.notifications_sent_total == 1)
            assert service.counters.alerts_opened_total[Grade.III] == 1
        body = sink.sink.received[0]
        assert body["idempotency_key"] == f"{alert.id}:1:zhang-wei:0"
        assert body["grade"] == {"number": 3, "roman": "III", "label_zh": "较大", "label_en": "relatively major",
                                 "colour": "yellow", "colour_zh": "黄色"}  # fmt: skip
        assert body["message"].startswith("【III级 黄色 较大】红星社区 1栋301厨房 可燃气体 27.4 %LEL ≥ 25 %LEL")
        assert body["event_time"].endswith("Z") and body["reason"] == "opened"
        stored = store.get(alert.id)
        assert stored is not None and stored.notified_at_ms is not None
        [row] = store.notifications(alert.id)
        assert (row.status, row.attempts) == ("sent", 1)


async def test_dedup_upgrade_and_cleared(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(sink.url), receiver) as service:
            first = await service.submit(event())
            same = await service.submit(event(value=28.0))
            lower = await service.submit(event(value=12.0, grade=Grade.IV, rule="pre-warning"))
            assert first and same and lower and first.id == same.id == lower.id
            assert lower.grade is Grade.III and lower.last_event.value == 12.0 and lower.revision == 1
            upgraded = await service.submit(event(value=55.0, grade=Grade.I, rule="level-2 alarm", threshold=50.0))
            assert upgraded and upgraded.grade is Grade.II and upgraded.revision == 2  # I capped at II
            cleared = await service.submit(event(status="cleared", value=3.0))
            assert cleared and cleared.cleared_at_ms is not None and cleared.state is AlertState.OPEN
            again = await service.submit(event(status="cleared", value=2.0))
            assert again and again.revision == 3
            await wait_until(lambda: len(sink.sink.received) == 3)
            reasons = [b["reason"] for b in sink.sink.received]
            assert reasons == ["opened", "upgraded", "cleared"]
            assert sink.sink.received[1]["message_zh"].startswith("【升级 II级 橙色 重大】")
            assert sink.sink.received[2]["message_zh"].startswith("【已恢复 II级 橙色】")
            assert await service.submit(event(key="other/key", status="cleared")) is None
            assert len(await service.list_alerts()) == 1
            notes = [t.note for t in await service.transitions(first.id) if t.channel == "event"]
            assert notes[1] == "grade III → II" and "已恢复" in notes[2]
            delivered = [t.note for t in await service.transitions(first.id) if t.channel == "webhook"]
            assert delivered[0] == "opened notification to zhang-wei (target 0): delivered"


async def test_lifecycle_and_illegal_transitions(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(sink.url), receiver) as service:
            alert = await service.submit(event())
            assert alert is not None
            with pytest.raises(TransitionError) as caught:
                await service.resolve(alert.id, by="zhang-wei", note="x", channel="app")
            assert (caught.value.from_state, caught.value.to_state) == (AlertState.OPEN, AlertState.RESOLVED)
            acked = await service.acknowledge(alert.id, by="zhang-wei", channel="app")
            assert acked.state is AlertState.ACKNOWLEDGED and acked.acknowledged_by == "zhang-wei"
            with pytest.raises(TransitionError):
                await service.acknowledge(alert.id, by="zhang-wei", channel="app")
            done = await service.resolve(alert.id, by="zhang-wei", note="阀门已关闭 valve closed", channel="app")
            assert done.state is AlertState.RESOLVED and done.resolved_note == "阀门已关闭 valve closed"
            assert [a.id for a in await service.list_alerts(AlertState.RESOLVED)] == [alert.id]
            trail = [t for t in await service.transitions(alert.id) if t.channel != "webhook"]  # deliveries apart
            assert [(t.from_state, t.to_state, t.by, t.channel) for t in trail] == [
                (None, AlertState.OPEN, "anju", "event"),
                (AlertState.OPEN, AlertState.ACKNOWLEDGED, "zhang-wei", "app"),
                (AlertState.ACKNOWLEDGED, AlertState.RESOLVED, "zhang-wei", "app"),
            ]
            reopened = await service.submit(event())  # a resolved alert no longer dedups
            assert reopened is not None and reopened.id != alert.id


async def test_retry_500_twice_then_200(tmp_path: Path) -> None:
    scripted = ScriptedSink(500, 500)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            start_sink(scripted) as running,
            WebhookReceiver() as receiver,
            _service(store, directory_for(running.url), receiver) as service,
        ):
            alert = await service.submit(event())
            await wait_until(lambda: len(scripted.received) == 1)
            await wait_until(lambda: service.counters.notifications_sent_total == 1)
            assert scripted.attempts == 3
            assert service.counters.notification_failures_total["retryable"] == 2
        assert alert is not None
        [row] = store.notifications(alert.id)
        assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)


async def test_400_is_a_permanent_failure(tmp_path: Path) -> None:
    scripted = ScriptedSink(400)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            start_sink(scripted) as running,
            WebhookReceiver() as receiver,
            _service(store, directory_for(running.url), receiver) as service,
        ):
            alert = await service.submit(event())
            await wait_until(lambda: service.counters.notification_failures_total["permanent"] == 1)
            assert alert is not None
            await wait_until(lambda: store.notifications(alert.id)[0].status == "failed")
        [row] = store.notifications(alert.id)
        assert row.attempts == 1 and row.last_error is not None and "400" in row.last_error
        assert scripted.attempts == 1


async def test_max_attempts_gives_up(tmp_path: Path) -> None:
    scripted = ScriptedSink(503, 503, 503, 503)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            start_sink(scripted) as running,
            WebhookReceiver() as receiver,
            _service(store, directory_for(running.url), receiver, max_attempts=3) as service,
        ):
            await service.submit(event())
            await wait_until(lambda: service.counters.notification_failures_total["exhausted"] == 1)
        assert scripted.attempts == 3 and store.notifications()[0].status == "failed"


async def test_unknown_grid_is_unrouted_but_recorded(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(sink.url), receiver) as service:
            alert = await service.submit(event(grid="nowhere"))
            assert alert is not None and service.counters.unrouted_total == 1
            assert store.notifications() == []


async def test_restart_delivers_pending_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "alerts.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}/notify"
    sink = Sink(secret=SECRET, log_path=tmp_path / "sink.jsonl")
    # 1. The receiver is down: the alert and its notification are committed, delivery fails.
    with open_alert_store(db) as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(url), receiver) as service:
            alert = await service.submit(event())
            assert alert is not None
            await wait_until(lambda: store.notifications()[0].attempts >= 1)
        assert store.notifications()[0].status == "pending"
    # 2. A new process on the same database, receiver up: the pending notification goes out; dedup holds.
    async with start_sink(sink, port=port):
        with open_alert_store(db) as store:
            async with WebhookReceiver() as receiver, _service(store, directory_for(url), receiver) as service:
                await wait_until(lambda: len(sink.received) == 1)
                again = await service.submit(event(value=30.0))
                assert again is not None and again.id == alert.id and again.revision == 1
                await wait_until(lambda: store.notifications()[0].status == "sent")
        # 3. And once more: a confirmed delivery is never resent.
        with open_alert_store(db) as store:
            async with WebhookReceiver() as receiver, _service(store, directory_for(url), receiver) as service:
                await service.submit(event(status="cleared", value=1.0))
                await wait_until(lambda: len(sink.received) == 2)
    keys = [json.loads(line)["idempotency_key"] for line in (tmp_path / "sink.jsonl").read_text().splitlines()]
    assert keys == [f"{alert.id}:1:zhang-wei:0", f"{alert.id}:2:zhang-wei:0"]
    assert sink.duplicates == 0


class ReadsLate(AlertStore):
    """A store whose commit returns only once the outbox loop has read the committed notification, and whose read
    answers only after that notification's delivery is on record: the read shows it pending, as a slow read on a busy
    database does (PostgreSQL under load)."""

    def __init__(self, target: str | Path, **options: Any) -> None:
        super().__init__(target, **options)
        self.committed, self.recorded, self.read = threading.Event(), threading.Event(), threading.Event()

    def commit_many(self, writes: Sequence[tuple[Alert, Sequence[Transition], Sequence[Notification]]]) -> None:
        super().commit_many(writes)
        self.committed.set()
        self.read.wait(timeout=5)  # the outbox loop polls at least once a second

    def due(self, *, now_ms: int, limit: int, exclude: Collection[str] = ()) -> list[Notification]:
        found = super().due(now_ms=now_ms, limit=limit, exclude=exclude)
        if found and self.committed.is_set() and not self.read.is_set():
            self.read.set()
            self.recorded.wait(timeout=5)
            time.sleep(0.2)  # the delivery's task, woken at the same time, leaves the keys in flight first
        return found

    def mark_sent_many(self, sent: Sequence[tuple[str, int]]) -> None:
        super().mark_sent_many(sent)
        self.recorded.set()


async def test_a_stale_outbox_read_does_not_send_a_notification_twice(sink: RunningSink, tmp_path: Path) -> None:
    """The service starts a committed notification at once; its outbox loop, reading meanwhile, may still see it
    pending after it was sent. Before the loop skipped what was taken during its read, that was a second page (a
    second phone call on a voice target), seen on PostgreSQL under CI's load."""
    with open_alert_store(tmp_path / "alerts.db", ReadsLate) as store:
        async with WebhookReceiver() as receiver, _service(store, directory_for(sink.url), receiver) as service:
            await service.submit(event())
            await wait_until(lambda: store.recorded.is_set() and service.counters.notifications_sent_total == 1)
            assert store.read.is_set(), "the loop read the outbox while the notification was on its way"
            await anyio.sleep(0.5)  # what the loop does with its stale read
        assert len(sink.sink.received) == 1 and sink.sink.duplicates == 0
        assert [n.status for n in store.notifications()] == ["sent"]


async def test_receiver_sees_same_bytes_on_retry(tmp_path: Path) -> None:
    """The body is frozen at commit: a retry carries the same bytes and a fresh valid signature."""
    bodies: list[bytes] = []

    class Capture(ScriptedSink):
        def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
            ts = headers["x-anju-timestamp"]
            mac = hmac.new(SECRET.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
            assert headers["x-anju-signature"] == f"sha256={mac}"
            bodies.append(body)
            return super().handle(method, path, headers, body)

    capture = Capture(502)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            start_sink(capture) as running,
            WebhookReceiver() as receiver,
            _service(store, directory_for(running.url), receiver) as service,
        ):
            await service.submit(event())
            await wait_until(lambda: len(capture.received) == 1)
    assert len(bodies) == 2 and bodies[0] == bodies[1]


async def test_a_stage_can_mute_events(sink: RunningSink, tmp_path: Path) -> None:
    async def silence_gas(e: RiskEvent) -> RiskEvent | None:
        return None if e.kind == "gas" else e

    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            _service(store, directory_for(sink.url), receiver, stages=[silence_gas]) as service,
        ):
            assert await service.submit(event()) is None
            assert service.counters.muted_total == 1
            assert await service.list_alerts() == []


async def test_several_events_are_judged_in_order_and_committed_together(sink: RunningSink, tmp_path: Path) -> None:
    ticks = iter(range(1_790_000_000_000, 1_790_000_000_000 + 10_000_000, 1_000))  # each call a second later
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            _service(store, directory_for(sink.url), receiver, clock=lambda: next(ticks)) as service,
        ):
            opened, upgraded, cleared, unknown = await service.submit_many(
                [
                    event(),
                    event(value=55.0, grade=Grade.II, rule="level-2 alarm", threshold=50.0),
                    event(status="cleared", value=3.0),
                    event(key="other/key", status="cleared"),
                ]
            )
            assert opened and upgraded and cleared and unknown is None
            assert opened.id == upgraded.id == cleared.id
            assert (opened.revision, upgraded.revision, cleared.revision) == (1, 2, 3)
            assert upgraded.grade is Grade.II and cleared.cleared_at_ms is not None
            steps = [t for t in await service.transitions(opened.id) if t.channel == "event"]
            assert len(steps) == 3 and len({t.time_ms for t in steps}) == 1, "one judgement, one commit"
            assert await service.submit_many([]) == []
