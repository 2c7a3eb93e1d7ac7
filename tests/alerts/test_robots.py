"""WeCom and DingTalk group robots (issue 6), each against a local server that speaks its protocol: the robot's
query parameters and signature checked, its JSON answers and error codes scripted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alerts import AlertService, Directory, Grid, Person, WebhookReceiver
from alerts.directory import DingTalkTarget, Target, WeComTarget
from alerts.receivers.robots import WECOM_MAX_BYTES
from alerts.sink import RunningSink, Sink, SinkResponse, start_sink
from tests.alerts.support import event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DING_TOKEN = "c3f1a8d5e0b94e6f8a7d2c1b0e9f8a7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f"
DING_SECRET = "SEC1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcd"


def ok() -> SinkResponse:
    return SinkResponse(200, '{"errcode":0,"errmsg":"ok"}')


def fail(code: int, message: str) -> SinkResponse:
    return SinkResponse(200, json.dumps({"errcode": code, "errmsg": message}))


class WeComServer(Sink):
    """The WeCom robot endpoint: ``POST /cgi-bin/webhook/send?key=KEY`` with a markdown message."""

    def __init__(self, *codes: int) -> None:
        super().__init__(secret="unused-by-robots-0000")
        self.codes = list(codes)
        self.messages: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        url = urllib.parse.urlsplit(path)
        if method != "POST" or url.path != "/cgi-bin/webhook/send":
            return SinkResponse(404, "not found")
        if urllib.parse.parse_qs(url.query).get("key") != [WECOM_KEY]:
            return fail(93000, "invalid webhook url")
        message = json.loads(body)
        if message.get("msgtype") != "markdown" or len(message["markdown"]["content"].encode()) > WECOM_MAX_BYTES:
            return fail(40008, "invalid message type")
        if self.codes:
            code = self.codes.pop(0)
            return fail(code, "api freq out of limit" if code == 45009 else "error")
        self.messages.append(message["markdown"]["content"])
        return ok()


class DingTalkServer(Sink):
    """The DingTalk robot endpoint with signing: ``POST /robot/send?access_token=T&timestamp=MS&sign=S``."""

    def __init__(self, *codes: int) -> None:
        super().__init__(secret="unused-by-robots-0000")
        self.codes = list(codes)
        self.messages: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        if method != "POST" or url.path != "/robot/send" or query.get("access_token") != [DING_TOKEN]:
            return fail(300001, "token is not exist")
        timestamp = int(query["timestamp"][0])
        if abs(timestamp - time.time() * 1000) > 3_600_000:
            return fail(310000, "sign not match, timestamp is too old")
        mac = hmac.new(DING_SECRET.encode(), f"{timestamp}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
        if query.get("sign") != [base64.b64encode(mac).decode()]:
            return fail(310000, "sign not match")
        if self.codes:
            return fail(self.codes.pop(0), "send too fast")
        self.messages.append(json.loads(body))
        return ok()


def robot_directory(target: Target) -> Directory:
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[Person(id="zhang-wei", name="张伟", targets=(target,))],
    )


@pytest.fixture
async def wecom() -> AsyncIterator[RunningSink]:
    async with start_sink(WeComServer(45009)) as running:
        yield running


async def deliver_one(target: Target, tmp_path: Path) -> AlertService:
    """Open one alert for ``target``'s person and wait until its delivery ended (sent or failed)."""
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver() as receiver,
            AlertService(
                store=store, directory=robot_directory(target), receiver=receiver, retry_base_s=0.05, retry_max_s=0.1
            ) as alerts,
        ):
            await alerts.submit(event())

            def ended() -> bool:
                failures = alerts.counters.notification_failures_total
                return alerts.counters.notifications_sent_total + failures["permanent"] + failures["exhausted"] > 0

            await wait_until(ended)
    return alerts


async def test_a_wecom_robot_gets_the_alert_in_markdown_after_a_rate_limit(wecom: RunningSink, tmp_path: Path) -> None:
    target = WeComTarget(url=f"http://127.0.0.1:{wecom.port}/cgi-bin/webhook/send", key=WECOM_KEY)
    alerts = await deliver_one(target, tmp_path)
    assert alerts.counters.notification_failures_total["retryable"] == 1, "errcode 45009 is retried"
    [content] = wecom.sink.messages  # type: ignore[attr-defined]
    assert content.startswith("#### 【III级 黄色 较大】红星社区 1栋301厨房 可燃气体 27.4 %LEL ≥ 25 %LEL")
    assert "接收人 To: 张伟" in content and "\n> [grade III" in content, content


async def test_a_wrong_wecom_key_is_a_permanent_failure(wecom: RunningSink, tmp_path: Path) -> None:
    target = WeComTarget(url=f"http://127.0.0.1:{wecom.port}/cgi-bin/webhook/send", key="not-the-key-0000000")
    alerts = await deliver_one(target, tmp_path)
    assert alerts.counters.notification_failures_total["permanent"] == 1
    assert alerts.counters.notifications_sent_total == 0


@pytest.mark.parametrize(("secret", "codes", "sent"), [(DING_SECRET, (130101,), 1), ("SECwrong" + "0" * 56, (), 0)])
async def test_a_dingtalk_robot_checks_the_signature(
    tmp_path: Path, secret: str, codes: tuple[int, ...], sent: int
) -> None:
    async with start_sink(DingTalkServer(*codes)) as server:
        target = DingTalkTarget(
            url=f"http://127.0.0.1:{server.port}/robot/send", access_token=DING_TOKEN, secret=secret
        )
        alerts = await deliver_one(target, tmp_path)
        assert alerts.counters.notifications_sent_total == sent
        if sent:
            [message] = server.sink.messages  # type: ignore[attr-defined]
            assert message["msgtype"] == "markdown" and message["markdown"]["title"] == "III级 黄色 较大"
            assert alerts.counters.notification_failures_total["retryable"] == 1, "errcode 130101 is retried"
        else:
            assert alerts.counters.notification_failures_total["permanent"] == 1, "errcode 310000 is not retried"


def test_robot_targets_refuse_missing_secrets_and_keep_them_out_of_repr() -> None:
    with pytest.raises(ValueError, match="key"):
        WeComTarget(url="https://qyapi.weixin.qq.com/cgi-bin/webhook/send", key="")
    with pytest.raises(ValueError, match="access token"):
        DingTalkTarget(url="https://oapi.dingtalk.com/robot/send", access_token="", secret=DING_SECRET)
    with pytest.raises(ValueError, match="http"):
        WeComTarget(url="ftp://x", key=WECOM_KEY)
    shown = repr(
        DingTalkTarget(url="https://oapi.dingtalk.com/robot/send", access_token=DING_TOKEN, secret=DING_SECRET)
    )
    assert DING_TOKEN not in shown and DING_SECRET not in shown
