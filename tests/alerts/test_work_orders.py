"""Work orders (issue 6, 协同整治): dispatched from an alert to a department, done with evidence, verified; the alert
closes when they are; overdue ones page again once per deadline. Real SQLite and deliveries on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts import AlertService, AlertState, AlertStore, Directory, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.service import TransitionError, WorkOrderNotFoundError
from alerts.sink import RunningSink
from alerts.work_orders import Department, Evidence, WorkOrderState
from tests.alerts.support import MINUTE_MS, SECRET, Clock, event, open_alert_store, pages, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

GAS = Department(id="gas-company", name="燃气公司抢修中心", kind="gas", people=("zhao-gas",))


def service(store: AlertStore, url: str, receiver: WebhookReceiver, clock: Clock) -> AlertService:
    target = (WebhookTarget(url=url, secret=SECRET),)
    directory = Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[
            Person(id="zhang-wei", name="张伟", targets=target),
            Person(id="zhao-gas", name="赵刚", targets=target),
        ],
    )
    return AlertService(store=store, directory=directory, receiver=receiver, clock=clock, departments=[GAS])


def photo(phase: str, clock: Clock) -> Evidence:
    return Evidence(phase=phase, url=f"https://files.example.cn/{phase}.jpg", by="zhao-gas", time_ms=clock.now_ms)


async def test_a_work_order_from_dispatch_to_a_closed_alert(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            due = clock.now_ms + 4 * 60 * MINUTE_MS
            order = await alerts.dispatch(
                alert.id,
                department="gas-company",
                task="检修301厨房燃气管道",
                due_ms=due,
                by="zhang-wei",
                channel="app",
            )
            await wait_until(lambda: pages(sink, "dispatched") == ["zhao-gas"])
            body = next(b for b in sink.sink.received if b["reason"] == "dispatched")
            assert body["work_order"]["department_name"] == "燃气公司抢修中心" and body["work_order"]["task"]
            task = body["work_order"]["task"]
            assert f"工单 燃气公司抢修中心：{task}" in body["message_zh"] and f"{task}, due " in body["message_en"]
            assert body["message_zh"].startswith("【派单 III级 黄色 较大】")
            await alerts.work_order_step(order.id, WorkOrderState.ACCEPTED, by="zhao-gas", channel="app",
                                         evidence=[photo("before", clock)])  # fmt: skip
            with pytest.raises(TransitionError, match="after"):
                await alerts.work_order_step(order.id, WorkOrderState.DONE, by="zhao-gas", channel="app")
            done = await alerts.work_order_step(order.id, WorkOrderState.DONE, by="zhao-gas", channel="app",
                                                note="更换接头", evidence=[photo("after", clock)])  # fmt: skip
            assert [e.phase for e in done.evidence] == ["before", "after"]
            await alerts.submit(event(status="cleared", value=1.0))
            await alerts.resolve(alert.id, by="zhang-wei", channel="app", note="燃气公司已检修")
            await alerts.verify(alert.id, by="li-committee", channel="app")
            with pytest.raises(TransitionError, match="not verified or cancelled"):
                await alerts.close(alert.id, by="li-committee", channel="app")
            await alerts.work_order_step(order.id, WorkOrderState.VERIFIED, by="li-committee", channel="app")
            closed = await alerts.get(alert.id)
            assert closed is not None and closed.state is AlertState.CLOSED, "the last verified order closes it"
            notes = [t.note for t in await alerts.transitions(alert.id) if t.channel != "webhook"]
            assert any(n.startswith(f"work order {order.id} to 燃气公司抢修中心") for n in notes)
            assert notes[-1] == "closed: every work order verified"
            [kept] = await alerts.work_orders(alert.id)
            assert kept.state is WorkOrderState.VERIFIED and len(kept.evidence) == 2
            with pytest.raises(TransitionError, match="closed"):
                await alerts.dispatch(alert.id, department="gas-company", task="x", due_ms=clock.now_ms + 1,
                                      by="zhang-wei", channel="app")  # fmt: skip


async def test_an_overdue_order_pages_again_once_per_deadline(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "alerts.db"
    with open_alert_store(path) as store:
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            alert = await alerts.submit(event())
            assert alert is not None
            await alerts.acknowledge(alert.id, by="zhang-wei", channel="app")
            await alerts.on_site(alert.id, by="zhang-wei", channel="app")
            order = await alerts.dispatch(alert.id, department="gas-company", task="检修", by="zhang-wei",
                                          due_ms=clock.now_ms + 60 * MINUTE_MS, channel="app")  # fmt: skip
            clock.now_ms += 60 * MINUTE_MS
            await alerts.escalate_due()
            await wait_until(lambda: pages(sink, "work_order_overdue") == ["zhang-wei", "zhao-gas"])
    with open_alert_store(path) as store:  # after a restart the same deadline is not reminded again
        async with WebhookReceiver() as receiver, service(store, sink.url, receiver, clock) as alerts:
            await alerts.escalate_due()
            assert alerts.counters.work_orders_overdue_total == 0
            rejected = await alerts.work_order_step(order.id, WorkOrderState.CANCELLED, by="zhang-wei", channel="app")
            assert rejected.state is WorkOrderState.CANCELLED
            with pytest.raises(WorkOrderNotFoundError):
                await alerts.work_order_step("wo-nope", WorkOrderState.ACCEPTED, by="x", channel="app")
            with pytest.raises(ValueError, match="no department 'water'"):
                await alerts.dispatch(alert.id, department="water", task="x", due_ms=clock.now_ms + 1, by="x",
                                      channel="app")  # fmt: skip
    assert len(pages(sink, "work_order_overdue")) == 2


def test_a_department_needs_a_known_kind_and_people() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Department(id="x", name="x", kind="police", people=("a",))
    with pytest.raises(ValueError, match="nobody"):
        Department(id="x", name="x", kind="gas", people=())
    with pytest.raises(ValueError, match="http"):
        Evidence(phase="after", url="file:///etc/passwd", by="a", time_ms=0)
