"""Voice calls for grades I–II (issue 6) through a generic call API and Alibaba Cloud VMS's request format
(``SingleCallByTts``), each against a local server speaking it: the bearer token; the sorted, percent-encoded,
HMAC-SHA1-signed form recomputed server-side; the answers' statuses and codes; a provider that does not answer in
time; and grades III–IV delivered without a call."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from alerts import AlertService, Directory, Grade, Grid, Person, WebhookReceiver
from alerts.directory import VoiceTarget
from alerts.receivers.base import PermanentDeliveryError
from alerts.receivers.voice import VOICE_MAX_CHARS, VoiceGateway, call_ref, calls_for, voice_text
from alerts.sink import Sink, SinkResponse, start_sink
from tests.alerts.support import event, open_alert_store, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("alerts_engine")]

TOKEN = "voice-token-0123456789abcdef"
KEY_ID = "LTAI5tExampleKeyId"
KEY_SECRET = "ExampleKeySecret0123456789abcd"
MOBILE = "+8613800000000"


class GenericProvider(Sink):
    """A call API: ``POST /calls`` with a bearer token and ``{"to", "text", "idempotency_key", "callback_id", …}``;
    a number it cannot call is a 422."""

    def __init__(self, *statuses: int) -> None:
        super().__init__(secret="unused-by-voice-0000")
        self.statuses = list(statuses)
        self.calls: list[dict[str, Any]] = []
        self.keys: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        if method != "POST" or path != "/calls":
            return SinkResponse(404, "not found")
        if headers.get("authorization") != f"Bearer {TOKEN}":
            return SinkResponse(401, "bad token")
        call = json.loads(body)
        if not str(call.get("to", "")).startswith("+86") or not str(call["to"])[3:].isdigit():
            return SinkResponse(400, "invalid number")
        if self.statuses:
            return SinkResponse(self.statuses.pop(0), "scripted")
        self.calls.append(call)
        self.keys.append(headers.get("idempotency-key", ""))
        return SinkResponse(200, json.dumps({"call_id": f"c-{len(self.calls)}"}))


def _encode(text: str) -> str:  # written from Alibaba Cloud's RPC signature description, apart from the receiver's
    return urllib.parse.quote(text, safe="~")


class AliyunVms(Sink):
    """Alibaba Cloud VMS's RPC endpoint: the signature recomputed from the form, the action's parameters checked."""

    def __init__(self, *codes: str) -> None:
        super().__init__(secret="unused-by-voice-0000")
        self.codes = list(codes)
        self.requests: list[dict[str, str]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        params = dict(urllib.parse.parse_qsl(body.decode()))
        signature = params.pop("Signature", "")
        canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
        to_sign = "POST&%2F&" + _encode(canonical)
        expected = base64.b64encode(hmac.new(f"{KEY_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(signature, expected.decode()):
            return SinkResponse(400, json.dumps({"Code": "SignatureDoesNotMatch", "Message": "bad signature"}))
        required = {"Action": "SingleCallByTts", "Version": "2017-05-25", "SignatureMethod": "HMAC-SHA1",
                    "SignatureVersion": "1.0", "AccessKeyId": KEY_ID, "TtsCode": "TTS_100001"}  # fmt: skip
        if any(params.get(k) != v for k, v in required.items()) or len(params.get("OutId", "").encode()) > 15:
            return SinkResponse(400, json.dumps({"Code": "isv.INVALID_PARAMETERS", "Message": str(params)}))
        if not params.get("CalledNumber", "").isdigit() or params.get("PlayTimes") not in ("1", "2", "3"):
            return SinkResponse(200, json.dumps({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "号码格式非法"}))
        if self.codes:
            return SinkResponse(200, json.dumps({"Code": self.codes.pop(0), "Message": "scripted"}))
        self.requests.append(params)
        return SinkResponse(200, json.dumps({"Code": "OK", "Message": "OK", "CallId": "116012354148^10281378"}))


@asynccontextmanager
async def silent_then(provider: GenericProvider) -> AsyncIterator[int]:
    """A port whose first request gets no answer (a provider that hangs) and later ones ``provider``'s."""
    hung, closing = asyncio.Event(), asyncio.Event()
    handlers: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if not hung.is_set():
                hung.set()
                await closing.wait()  # the client gives up long before
                return
            method, path, _ = lines[0].split(" ", 2)
            answer = provider.handle(method, path, headers, body)
            text = answer.text.encode()
            writer.write(
                f"HTTP/1.1 {answer.status} X\r\nContent-Length: {len(text)}\r\nConnection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        closing.set()
        server.close()
        await asyncio.gather(*handlers)
        await server.wait_closed()


def directory(phone: str = MOBILE) -> Directory:
    return Directory(
        grids=[Grid(id="hongxing-01", name="红星一网格", managers=("zhang-wei",))],
        people=[Person(id="zhang-wei", name="张伟", targets=(VoiceTarget(phone=phone),))],
    )


async def deliver(
    gateway: VoiceGateway | None, tmp_path: Path, *, grade: Grade = Grade.II, phone: str = MOBILE, timeout_s: float = 5
) -> tuple[AlertService, WebhookReceiver]:
    """Open one alert of ``grade`` for a person with one voice target; wait until its delivery ended."""
    with open_alert_store(tmp_path / "alerts.db") as store:
        async with (
            WebhookReceiver(voice=gateway, timeout_s=timeout_s) as receiver,
            AlertService(
                store=store, directory=directory(phone), receiver=receiver, retry_base_s=0.05, retry_max_s=0.1
            ) as alerts,  # fmt: skip
        ):
            await alerts.submit(event(grade=grade))

            def ended() -> bool:
                counters = alerts.counters  # a snapshot: read it afresh each time
                return counters.notifications_sent_total + counters.notification_failures_total["permanent"] > 0

            await wait_until(ended)
    return alerts, receiver


def generic(port: int) -> VoiceGateway:
    return VoiceGateway(format="generic", url=f"http://127.0.0.1:{port}/calls", token=TOKEN)


def aliyun(port: int, *, secret: str = KEY_SECRET, show: str = "") -> VoiceGateway:
    return VoiceGateway(format="aliyun", url=f"http://127.0.0.1:{port}/", access_key_id=KEY_ID,
                        access_key_secret=secret, tts_code="TTS_100001", called_show_number=show)  # fmt: skip


async def test_a_generic_provider_calls_with_the_spoken_text_after_a_503(tmp_path: Path) -> None:
    async with start_sink(GenericProvider(503)) as server:
        alerts, _ = await deliver(generic(server.port), tmp_path)
        provider: GenericProvider = server.sink  # type: ignore[assignment]
    assert alerts.counters.notification_failures_total["retryable"] == 1, "a 503 is retried"
    [call] = provider.calls
    assert call["to"] == MOBILE and call["play_times"] == 2
    spoken = "安居安全告警：II级 橙色 重大，红星社区 1栋301厨房 可燃气体 27.4 %爆炸下限 达到或超过 25"
    assert call["text"].startswith(spoken), call["text"]
    assert "GB/T" not in call["text"] and call["text"].endswith("请立即处理，并在应用中接单。")
    assert provider.keys == [call["idempotency_key"]] and call["callback_id"] == call_ref(call["idempotency_key"])


@pytest.mark.parametrize("status", [400, 422])
async def test_a_number_the_provider_refuses_is_a_permanent_failure(tmp_path: Path, status: int) -> None:
    async with start_sink(GenericProvider(status)) as server:
        alerts, _ = await deliver(generic(server.port), tmp_path)
    failures = alerts.counters.notification_failures_total
    assert failures["permanent"] == 1 and failures["retryable"] == 0
    assert alerts.counters.notifications_sent_total == 0


async def test_a_provider_that_does_not_answer_in_time_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = GenericProvider()
    async with silent_then(provider) as port:
        alerts, _ = await deliver(generic(port), tmp_path, timeout_s=0.3, phone="028-12345678")
    assert alerts.counters.notification_failures_total["retryable"] == 1, "the timeout is retried"
    assert "voice: timeout: no answer within 0.3 s" in caplog.text
    [call] = provider.calls
    assert call["to"] == "+862812345678", "a fixed line in E.164: the area code without its 0"


@pytest.mark.parametrize("grade", [Grade.III, Grade.IV])
async def test_grades_iii_and_iv_are_delivered_without_a_call(tmp_path: Path, grade: Grade) -> None:
    async with start_sink(GenericProvider()) as generic_server, start_sink(AliyunVms()) as aliyun_server:
        for gateway, where in ((generic(generic_server.port), "generic"), (aliyun(aliyun_server.port), "aliyun")):
            (tmp_path / where).mkdir()
            alerts, receiver = await deliver(gateway, tmp_path / where, grade=grade)
            assert alerts.counters.notifications_sent_total == 1 and receiver.voice_not_called_total == 1
            assert sum(alerts.counters.notification_failures_total.values()) == 0
        assert generic_server.sink.calls == [] and aliyun_server.sink.requests == []  # type: ignore[attr-defined]


def test_only_grades_i_and_ii_are_worth_a_call_and_not_a_cleared_notice() -> None:
    def body(number: int, reason: str = "opened") -> dict[str, Any]:
        return {"grade": {"number": number}, "reason": reason}

    assert [calls_for(body(n)) for n in (1, 2, 3, 4)] == [True, True, False, False]
    assert calls_for(body(1, "escalated")) and not calls_for(body(1, "cleared"))
    assert not calls_for({"reason": "incident_notice"}), "a body without a grade is not a call"


@pytest.mark.parametrize(("codes", "sent"), [(("isv.BUSINESS_LIMIT_CONTROL",), 1), (("isv.TTS_TEMPLATE_ILLEGAL",), 0)])
async def test_the_aliyun_format_is_signed_and_its_codes_decide(
    tmp_path: Path, codes: tuple[str, ...], sent: int
) -> None:
    async with start_sink(AliyunVms(*codes)) as server:
        alerts, _ = await deliver(aliyun(server.port), tmp_path)
        requests = server.sink.requests  # type: ignore[attr-defined]
    assert alerts.counters.notifications_sent_total == sent
    if not sent:
        assert alerts.counters.notification_failures_total["permanent"] == 1
        return
    assert alerts.counters.notification_failures_total["retryable"] == 1, "flow control is retried"
    [params] = requests
    assert params["CalledNumber"] == "13800000000" and params["PlayTimes"] == "2"
    assert "CalledShowNumber" not in params, "the shared pool: no caller id"
    assert len(params["OutId"]) == 15
    spoken = json.loads(params["TtsParam"])
    assert spoken == {"grade": "II级橙色", "place": "红星社区 1栋301厨房", "kind": "可燃气体", "reason": "新告警"}


async def test_aliyun_calls_a_fixed_line_from_a_dedicated_number_and_refuses_a_wrong_secret(tmp_path: Path) -> None:
    async with start_sink(AliyunVms()) as server:
        alerts, _ = await deliver(aliyun(server.port, show="02866660000"), tmp_path, phone="028-12345678")
        [params] = server.sink.requests  # type: ignore[attr-defined]
        assert params["CalledNumber"] == "02812345678" and params["CalledShowNumber"] == "02866660000"
        (tmp_path / "wrong").mkdir()
        wrong, _ = await deliver(aliyun(server.port, secret="not-the-secret-000000"), tmp_path / "wrong")
    assert alerts.counters.notifications_sent_total == 1
    assert wrong.counters.notification_failures_total["permanent"] == 1, "SignatureDoesNotMatch is not retried"


async def test_no_voice_gateway_is_said_plainly() -> None:
    async with WebhookReceiver() as receiver:
        with pytest.raises(PermanentDeliveryError, match="no voice gateway"):
            await receiver.deliver(target=VoiceTarget(phone=MOBILE), idempotency_key="k", body=b"{}")


def test_the_spoken_text_drops_brackets_symbols_and_the_citation() -> None:
    line = "【升级 I级 红色 特别重大】2栋地下车库 温度 68 °C ≥ 57 °C（GB 50116-2013 定温报警）"
    text = voice_text({"message_zh": line + "\n[upgraded] …"})
    said = "升级 I级 红色 特别重大，2栋地下车库 温度 68 摄氏度 达到或超过 57 摄氏度"
    assert text == f"安居安全告警：{said}。请立即处理，并在应用中接单。"
    assert len(voice_text({"message_zh": "很长" * 500})) == VOICE_MAX_CHARS


def test_phones_and_secrets() -> None:
    for phone in (MOBILE, "13800000000", "028-12345678", "01012345678", "0755-1234567"):
        VoiceTarget(phone=phone)
    for phone in ("12345", "0028-12345678", "138-0000-0000", "+86028-12345678", ""):
        with pytest.raises(ValueError, match="fixed line"):
            VoiceTarget(phone=phone)
    shown = repr(VoiceGateway(format="aliyun", url="https://dyvmsapi.aliyuncs.com/", access_key_id=KEY_ID,
                              access_key_secret=KEY_SECRET, tts_code="TTS_1", token=TOKEN))  # fmt: skip
    assert KEY_SECRET not in shown and TOKEN not in shown and KEY_ID in shown
    with pytest.raises(ValueError, match="play_times"):
        VoiceGateway(format="generic", url="https://x.cn/", token=TOKEN, play_times=4)
