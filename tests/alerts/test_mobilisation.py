"""Mobilisation in emergency mode (issue 6, Art. 25–26): notices to the area's broadcast receivers, volunteers asked
and answering, measures for property companies confirmed or overdue, and the printable summary. Real SQLite, real
deliveries on loopback: the signed-webhook sink and a local server speaking the WeCom group robot's protocol."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from alerts import AlertService, AlertStore, Directory, Grid, Person, WebhookReceiver, WebhookTarget
from alerts.directory import WeComTarget
from alerts.emergency import EmergencyDesk, MeasureNotFoundError, VolunteerNotFoundError
from alerts.incident_summary import summary_html
from alerts.incidents import HouseholdStatus
from alerts.mobilisation import NOTICE_ZH_MAX_CHARS, Answer, Broadcast, Volunteer, mobilised_skills
from alerts.service import IncidentNotFoundError, TransitionError, wall_clock_ms
from alerts.sink import RunningSink, Sink, SinkResponse, start_sink
from alerts.work_orders import Department
from tests.alerts.support import MINUTE_MS, SECRET, Clock, event, open_alert_store, pages, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

WECOM_KEY = "0d2f5c1e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
PROPERTY = Department(id="property", name="阳光物业", kind="property", people=("li-property",))


class WeComRobot(Sink):
    """A WeCom group robot: ``POST /cgi-bin/webhook/send?key=KEY``, a markdown message; answers errcode 45009 (rate
    limit) to the first ``limited`` messages."""

    def __init__(self, limited: int = 0) -> None:
        super().__init__(secret="unused-by-robots-0000")
        self.limited = limited
        self.messages: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        url = urllib.parse.urlsplit(path)
        if urllib.parse.parse_qs(url.query).get("key") != [WECOM_KEY]:
            return SinkResponse(200, '{"errcode":93000,"errmsg":"invalid webhook url"}')
        if self.limited:
            self.limited -= 1
            return SinkResponse(200, '{"errcode":45009,"errmsg":"api freq out of limit"}')
        self.messages.append(json.loads(body)["markdown"]["content"])
        return SinkResponse(200, '{"errcode":0,"errmsg":"ok"}')


def directory(url: str) -> Directory:
    target = (WebhookTarget(url=url, secret=SECRET),)
    names = {"zhang-wei": "张伟", "li-property": "李强", "chen": "陈静"}
    return Directory(
        grids=[Grid(id="g1", name="第一网格（1栋）", managers=("zhang-wei",)),
               Grid(id="g2", name="第二网格（2栋）", managers=("zhang-wei",))],
        people=[Person(id=pid, name=name, targets=target) for pid, name in names.items()],
    )  # fmt: skip


def volunteers(url: str) -> list[Volunteer]:
    target = (WebhookTarget(url=url, secret=SECRET),)
    return [
        Volunteer(id="liu-yang", name="刘洋", community="hongxing", skills=("first-aid",), grids=("g1",),
                  targets=target),
        Volunteer(id="wu-min", name="吴敏", community="hongxing", skills=("electrician", "first-aid"), targets=target),
        Volunteer(id="sun-li", name="孙丽", community="hongxing", skills=("elder-care",), grids=("g2",),
                  targets=target),
    ]  # fmt: skip


def audit_notes(path: Path, subject: str) -> list[str]:
    """The audit log's notes about ``subject``, read through a second connection to the database, as an auditor
    would."""
    with open_alert_store(path) as store:
        return [row.note for row in store.audit_rows(after=0, limit=100_000) if row.subject == subject]


@asynccontextmanager
async def running(
    store: AlertStore, sink: RunningSink, clock: Callable[[], int], broadcasts: Sequence[Broadcast] = ()
) -> AsyncIterator[tuple[AlertService, EmergencyDesk]]:
    people = directory(sink.url)
    async with (
        WebhookReceiver() as receiver,
        AlertService(store=store, directory=people, receiver=receiver, clock=clock) as alerts,
        EmergencyDesk(store=store, directory=people, receiver=receiver, volunteers=volunteers(sink.url),
                      broadcasts=broadcasts, departments=[PROPERTY], community_name="红星社区", clock=clock,
                      retry_base_s=0.05, retry_max_s=0.1) as desk,
    ):  # fmt: skip
        yield alerts, desk


async def test_a_notice_reaches_the_areas_broadcast_receivers_once_and_is_listed(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = wall_clock_ms  # the robot's rate limit is retried after a real wait
    async with start_sink(WeComRobot(limited=1)) as robot:
        broadcasts = [
            Broadcast(id="b1-group", name="1栋居民群", community="hongxing", grids=("g1",),
                      target=WeComTarget(url=f"http://127.0.0.1:{robot.port}/cgi-bin/webhook/send", key=WECOM_KEY)),
            Broadcast(id="b1-pa", name="1栋应急广播", community="hongxing", grids=("g1",),
                      target=WebhookTarget(url=sink.url, secret=SECRET)),
            Broadcast(id="b2-group", name="2栋居民群", community="hongxing", grids=("g2",),
                      target=WebhookTarget(url=sink.url, secret=SECRET)),
        ]  # fmt: skip
        path = tmp_path / "alerts.db"
        with open_alert_store(path) as store:
            async with running(store, sink, clock, broadcasts) as (alerts, desk):
                incident = await alerts.declare_incident(community="hongxing", kind="fire", title="1栋火灾", by="chen",
                                                         grids=["g1"])  # fmt: skip
                with pytest.raises(ValueError, match=f"text_zh has {NOTICE_ZH_MAX_CHARS + 1} characters; at most"):
                    await desk.send_notice(incident.id, text_zh="请" * (NOTICE_ZH_MAX_CHARS + 1), by="chen")
                with pytest.raises(IncidentNotFoundError, match="inc-nope"):
                    await desk.send_notice("inc-nope", text_zh="请撤离", by="chen")
                notice = await desk.send_notice(
                    incident.id, text_zh="1栋住户请立即从东侧楼梯撤离，勿乘电梯。",
                    text_en="Residents of building 1: leave now by the east stairs; do not use the lifts.", by="chen",
                )  # fmt: skip
                assert notice.broadcasts == ("b1-group", "b1-pa"), "the receivers of the area, not building 2's"
                await wait_until(lambda: len(robot.sink.messages) == 1 and pages(sink, "incident_notice") == ["b1-pa"])  # type: ignore[attr-defined]
                [content] = robot.sink.messages  # type: ignore[attr-defined]
                assert content.startswith("#### 【紧急通知】1栋火灾：1栋住户请立即从东侧楼梯撤离"), content
                assert "> [Emergency notice] Residents of building 1" in content and "1栋居民群" in content
                body = next(b for b in sink.sink.received if b["reason"] == "incident_notice")
                assert body["incident_id"] == incident.id and body["location_zh"] == "红星社区 第一网格（1栋）"
                assert body["notice"]["text_en"].startswith("Residents") and body["grade"]["roman"] == "II"
                assert desk.counters.messages.failures_total["retryable"] == 1, "the robot's rate limit is retried"
                # a receiver has the message before the outbox records its answer; sent_total counts the record
                await wait_until(lambda: desk.counters.messages.sent_total == 2)
                board = await desk.board(incident.id)
                assert [(m.recipient_id, m.status) for m in board.deliveries(notice.id)] == [
                    ("b1-group", "sent"), ("b1-pa", "sent")
                ]  # fmt: skip
                await alerts.close_incident(incident.id, by="chen")
                with pytest.raises(TransitionError, match="closed"):
                    await desk.send_notice(incident.id, text_zh="解除", by="chen")
        with open_alert_store(path) as store:  # after a restart nothing is sent again
            async with running(store, sink, clock, broadcasts) as (_, desk):
                assert [n.id for n in (await desk.board(incident.id)).notices] == [notice.id]
            assert len(robot.sink.messages) == 1 and sink.sink.duplicates == 0  # type: ignore[attr-defined]
            assert store.verify_audit().intact
        audit = audit_notes(path, incident.id)
        assert any(n.startswith(f"notice {notice.id} to b1-group, b1-pa: 1栋住户") for n in audit)
        assert "incident_notice to broadcast b1-group (target 0): delivered" in audit


async def test_a_pending_notice_goes_out_after_a_restart(sink: RunningSink, tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"

    def group(robot: RunningSink) -> list[Broadcast]:
        target = WeComTarget(url=f"http://127.0.0.1:{robot.port}/cgi-bin/webhook/send", key=WECOM_KEY)
        return [Broadcast(id="b-group", name="居民群", community="hongxing", target=target)]

    async with start_sink(WeComRobot(limited=1000)) as busy:
        with open_alert_store(path) as store:
            async with running(store, sink, wall_clock_ms, group(busy)) as (alerts, desk):
                incident = await alerts.declare_incident(community="hongxing", kind="flood", title="内涝", by="chen")
                await desk.send_notice(incident.id, text_zh="地下车库暂停使用", by="chen")
                await wait_until(lambda: desk.counters.messages.failures_total["retryable"] >= 1)
    async with start_sink(WeComRobot()) as robot:  # the hub restarts; the group's robot answers again (a new URL)
        with open_alert_store(path) as store:
            async with running(store, sink, wall_clock_ms, group(robot)) as (_, desk):
                await wait_until(lambda: len(robot.sink.messages) == 1)  # type: ignore[attr-defined]
                await wait_until(lambda: desk.counters.messages.sent_total == 1)  # counted once it is on record
    assert "incident_notice to broadcast b-group (target 0): delivered" in audit_notes(path, incident.id)


async def test_no_broadcast_receiver_for_the_area_is_an_error_naming_it(sink: RunningSink, tmp_path: Path) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with running(store, sink, Clock()) as (alerts, desk):
            incident = await alerts.declare_incident(community="hongxing", kind="flood", title="地下室进水", by="chen")
            with pytest.raises(ValueError, match=r"no broadcast receiver covers .*红星社区（全社区）.*broadcasts:"):
                await desk.send_notice(incident.id, text_zh="请勿进入地下室", by="chen")


async def test_volunteers_of_the_area_are_asked_and_those_available_are_mobilised(
    sink: RunningSink, tmp_path: Path
) -> None:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with running(store, sink, Clock()) as (alerts, desk):
            incident = await alerts.declare_incident(community="hongxing", kind="fire", title="1栋火灾", by="chen",
                                                     grids=["g1"])  # fmt: skip
            asked = await desk.call_volunteers(incident.id, by="chen")
            assert [c.volunteer_id for c in asked] == ["liu-yang", "wu-min"], "g1's and the whole community's"
            await wait_until(lambda: pages(sink, "volunteer_call") == ["liu-yang", "wu-min"])
            body = next(b for b in sink.sink.received if b["recipient"]["id"] == "liu-yang")
            assert body["message_zh"].startswith("【志愿者集结】红星社区 第一网格（1栋） 1栋火灾")
            assert body["answer"]["path"] == f"/api/v1/incidents/{incident.id}/volunteers/liu-yang/answer"
            assert await desk.call_volunteers(incident.id, by="chen") == [], "nobody is asked twice"
            with pytest.raises(VolunteerNotFoundError, match="no volunteer 'nobody'"):
                await desk.call_volunteers(incident.id, by="chen", volunteers=["nobody"])
            with pytest.raises(TransitionError, match="孙丽 was not asked to join"):
                await desk.answer(incident.id, "sun-li", answer=Answer.AVAILABLE)
            [extra] = await desk.call_volunteers(incident.id, by="chen", volunteers=["sun-li"])  # on demand
            assert extra.volunteer_id == "sun-li"
            await desk.answer(incident.id, "liu-yang", answer=Answer.AVAILABLE, note="10分钟到")
            await desk.answer(incident.id, "wu-min", answer=Answer.AVAILABLE)
            await desk.answer(incident.id, "wu-min", answer=Answer.UNAVAILABLE, by="chen", note="电话告知在外地")
            board = await desk.board(incident.id)
            assert [c.volunteer_id for c in board.mobilised()] == ["liu-yang"]
            assert mobilised_skills(board.callouts, board.volunteers) == {"first-aid": 1}
            wu = next(c for c in board.callouts if c.volunteer_id == "wu-min")
            assert (wu.answer, wu.answered_by, wu.note) == (Answer.UNAVAILABLE, "chen", "电话告知在外地")
            with pytest.raises(IncidentNotFoundError):
                await desk.answer("inc-nope", "liu-yang", answer=Answer.AVAILABLE)
        assert store.verify_audit().intact


async def test_a_measure_is_notified_reminded_once_when_overdue_and_confirmed_once(
    sink: RunningSink, tmp_path: Path
) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with running(store, sink, clock) as (alerts, desk):
            incident = await alerts.declare_incident(community="hongxing", kind="flood", title="暴雨内涝", by="chen")
            due = clock.now_ms + 30 * MINUTE_MS
            with pytest.raises(ValueError, match=r"no department 'gas-company' \(known: property\)"):
                await desk.assign_measure(incident.id, department="gas-company", text="关阀", due_ms=due, by="chen")
            with pytest.raises(ValueError, match="deadline must be after"):
                await desk.assign_measure(incident.id, department="property", text="x", due_ms=clock.now_ms, by="chen")
            measure = await desk.assign_measure(incident.id, department="property", text="关闭地下车库入口，设置挡水板",
                                                due_ms=due, by="chen")  # fmt: skip
            await wait_until(lambda: pages(sink, "measure_assigned") == ["li-property"])
            body = next(b for b in sink.sink.received if b["reason"] == "measure_assigned")
            assert body["message_zh"].startswith("【应急措施】暴雨内涝：请阳光物业于2026-09-21 22:43 UTC+8前"), body[
                "message_zh"
            ]
            assert body["measure"]["confirm_path"].endswith(f"/measures/{measure.id}/confirm")
            clock.now_ms = due + 1
            await wait_until(lambda: pages(sink, "measure_overdue") == ["chen", "li-property"])
            assert await desk.remind_overdue() == [], "once per deadline"
            assert desk.counters.measures_overdue_total == 1
            assert [m.id for m in (await desk.board(incident.id)).overdue()] == [measure.id]
            with pytest.raises(ValueError, match="'zhang-wei' is not one of 阳光物业's people"):
                await desk.confirm_measure(incident.id, measure.id, by="zhang-wei", note="已关闭")
            with pytest.raises(ValueError, match="needs a note"):
                await desk.confirm_measure(incident.id, measure.id, by="li-property", note=" ")
            confirmed = await desk.confirm_measure(incident.id, measure.id, by="li-property", note="入口已关闭")
            assert confirmed.confirmed_by == "li-property" and (await desk.board(incident.id)).overdue() == []
            with pytest.raises(TransitionError, match="already confirmed by li-property"):
                await desk.confirm_measure(incident.id, measure.id, by="li-property", note="again")
            with pytest.raises(MeasureNotFoundError, match="msr-nope"):
                await desk.confirm_measure(incident.id, "msr-nope", by="li-property", note="x")
        assert store.verify_audit().intact


async def test_a_refused_message_is_given_up_and_audited(sink: RunningSink, tmp_path: Path) -> None:
    wrong = WebhookTarget(url=sink.url, secret="not-the-sink-secret-0000")
    broadcast = Broadcast(id="b-pa", name="全社区广播", community="hongxing", target=wrong)
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with running(store, sink, Clock(), [broadcast]) as (alerts, desk):
            incident = await alerts.declare_incident(community="hongxing", kind="gas", title="燃气泄漏", by="chen")
            notice = await desk.send_notice(incident.id, text_zh="请关闭燃气总阀", by="chen")
            await wait_until(lambda: desk.counters.messages.failures_total["permanent"] == 1)
            [message] = (await desk.board(incident.id)).deliveries(notice.id)
            assert message.status == "failed" and "401" in (message.last_error or "")
        assert audit_notes(tmp_path / "alerts.db", incident.id)[-1].startswith(
            "incident_notice to broadcast b-pa (target 0): not delivered, gave up"
        )


async def test_the_printable_summary_shows_the_incident_for_the_sub_district(sink: RunningSink, tmp_path: Path) -> None:
    clock = Clock()
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with running(store, sink, clock) as (alerts, desk):
            alert = await alerts.submit(event(key="k/smoke-g1", grid="g1", kind="smoke", location_zh="1栋3层走道"))
            assert alert is not None
            incident = await alerts.declare_incident(community="hongxing", kind="fire", title="1栋火灾", by="chen",
                                                     grids=["g1"])  # fmt: skip
            await alerts.report_household(incident.id, household="1栋302", status=HouseholdStatus.NEEDS_HELP,
                                          by="liu-yang", note="独居老人 <行动不便>")  # fmt: skip
            await alerts.report_household(incident.id, household="1栋301", status=HouseholdStatus.SAFE, by="liu-yang")
            await desk.call_volunteers(incident.id, by="chen")
            await desk.answer(incident.id, "liu-yang", answer=Answer.AVAILABLE)
            await desk.assign_measure(incident.id, department="property", text="开启消防通道", by="chen",
                                      due_ms=clock.now_ms + MINUTE_MS)  # fmt: skip
            clock.now_ms += 2 * MINUTE_MS
            page = summary_html(await desk.board(incident.id))
    assert page.startswith("<!doctype html>") and '<html lang="zh-CN">' in page and "@page" in page
    assert page.index("突发事件情况报告") < page.index("Incident summary"), "Chinese first"
    for text in ("红星社区 第一网格（1栋）", "chen", "III级 黄色 较大", "1栋3层走道", "1栋302", "刘洋",
                 "独居老人 &lt;行动不便&gt;", "first-aid", "开启消防通道", "逾期未确认", "阳光物业"):  # fmt: skip
        assert text in page, text
    assert "1栋301" not in page, "only households needing help or unreachable are listed"
