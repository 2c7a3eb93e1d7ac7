"""SMS (issue 6) through a generic HTTP gateway and Alibaba Cloud SMS's request format, each against a local server
speaking it: the bearer token; the sorted, percent-encoded, HMAC-SHA1-signed form; the answers' codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from alerts import AlertService, Directory, Grid, Person, WebhookReceiver
from alerts.directory import SmsTarget
from alerts.receivers.sms import SmsGateway
from alerts.sink import Sink, SinkResponse, start_sink
from tests.alerts.support import event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

TOKEN = "gateway-token-0123456789abcdef"
KEY_ID = "LTAI5tExampleKeyId"
KEY_SECRET = "ExampleKeySecret0123456789abcd"


class GenericGateway(Sink):
    def __init__(self, *statuses: int) -> None:
        super().__init__(secret="unused-by-sms-000000")
        self.statuses = list(statuses)
        self.messages: list[dict[str, Any]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return SinkResponse(401, "bad token")
        if self.statuses:
            return SinkResponse(self.statuses.pop(0), "scripted")
        self.messages.append(json.loads(body))
        return SinkResponse(200, '{"ok": true}')


def _encode(text: str) -> str:  # written from Alibaba Cloud's RPC signature description, apart from the receiver's
    return urllib.parse.quote(text, safe="~")


class AliyunGateway(Sink):
    def __init__(self, *codes: str) -> None:
        super().__init__(secret="unused-by-sms-000000")
        self.codes = list(codes)
        self.requests: list[dict[str, str]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        params = dict(urllib.parse.parse_qsl(body.decode()))
        signature = params.pop("Signature", "")
        canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
        to_sign = "POST&%2F&" + _encode(canonical)
        expected = base64.b64encode(hmac.new(f"{KEY_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest())
        if signature != expected.decode():
            return SinkResponse(400, json.dumps({"Code": "SignatureDoesNotMatch", "Message": "bad signature"}))
        required = {"Action": "SendSms", "Version": "2017-05-25", "SignatureMethod": "HMAC-SHA1", "AccessKeyId": KEY_ID}
        if any(params.get(k) != v for k, v in required.items()):
            return SinkResponse(400, json.dumps({"Code": "MissingParameter", "Message": str(params)}))
        if self.codes:
            code = self.codes.pop(0)
            return SinkResponse(200, json.dumps({"Code": code, "Message": "scripted"}))
        self.requests.append(params)
        return SinkResponse(200, json.dumps({"Code": "OK", "Message": "OK", "BizId": "1"}))


def directory() -> Directory:
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[Person(id="zhang-wei", name="张伟", targets=(SmsTarget(phone="+8613800000000"),))],
    )


async def deliver(gateway: SmsGateway | None, tmp_path: Path) -> AlertService:
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver(sms=gateway) as receiver,
            AlertService(
                store=store, directory=directory(), receiver=receiver, retry_base_s=0.05, retry_max_s=0.1
            ) as alerts,  # fmt: skip
        ):
            await alerts.submit(event())

            def ended() -> bool:
                counters = alerts.counters  # a snapshot: read it afresh each time
                return counters.notifications_sent_total + counters.notification_failures_total["permanent"] > 0

            await wait_until(ended)
    return alerts


async def test_a_generic_gateway_gets_the_text_with_its_token_after_a_503(tmp_path: Path) -> None:
    async with start_sink(GenericGateway(503)) as server:
        gateway = SmsGateway(format="generic", url=f"http://127.0.0.1:{server.port}/sms", token=TOKEN)
        alerts = await deliver(gateway, tmp_path)
        [message] = server.sink.messages  # type: ignore[attr-defined]
    assert alerts.counters.notification_failures_total["retryable"] == 1
    assert message["to"] == "+8613800000000" and message["text"].startswith("【III级 黄色 较大】红星社区 1栋301厨房")


@pytest.mark.parametrize(("codes", "sent"), [(("isv.BUSINESS_LIMIT_CONTROL",), 1), (("isv.MOBILE_NUMBER_ILLEGAL",), 0)])
async def test_the_aliyun_format_is_signed_and_its_codes_decide(
    tmp_path: Path, codes: tuple[str, ...], sent: int
) -> None:
    async with start_sink(AliyunGateway(*codes)) as server:
        gateway = SmsGateway(format="aliyun", url=f"http://127.0.0.1:{server.port}/", access_key_id=KEY_ID,
                             access_key_secret=KEY_SECRET, sign_name="安居社区", template_code="SMS_1")  # fmt: skip
        alerts = await deliver(gateway, tmp_path)
        requests = server.sink.requests  # type: ignore[attr-defined]
    assert alerts.counters.notifications_sent_total == sent
    if sent:
        [params] = requests
        assert params["PhoneNumbers"] == "13800000000" and params["SignName"] == "安居社区"
        assert json.loads(params["TemplateParam"])["grade"] == "III级黄色"
        assert alerts.counters.notification_failures_total["retryable"] == 1, "flow control is retried"
    else:
        assert alerts.counters.notification_failures_total["permanent"] == 1


async def test_a_wrong_secret_is_refused_and_no_gateway_is_said_plainly(tmp_path: Path) -> None:
    async with start_sink(AliyunGateway()) as server:
        wrong = SmsGateway(format="aliyun", url=f"http://127.0.0.1:{server.port}/", access_key_id=KEY_ID,
                           access_key_secret="not-the-secret", sign_name="安居社区", template_code="SMS_1")  # fmt: skip
        assert (await deliver(wrong, tmp_path)).counters.notification_failures_total["permanent"] == 1
    (tmp_path / "none").mkdir()
    assert (await deliver(None, tmp_path / "none")).counters.notification_failures_total["permanent"] == 1


def test_a_phone_must_be_a_mainland_mobile() -> None:
    with pytest.raises(ValueError, match="mobile"):
        SmsTarget(phone="028-12345678")
