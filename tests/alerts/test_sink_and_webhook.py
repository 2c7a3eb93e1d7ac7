"""The webhook receiver against the real sink over loopback HTTP, and the sink's own checks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from alerts import PermanentDeliveryError, RetryableDeliveryError, WebhookReceiver, WebhookTarget
from alerts.sink import RunningSink, Sink, SinkResponse, start_sink
from hub.demo.processes import free_port
from tests.alerts.support import SECRET

pytestmark = pytest.mark.anyio

BODY = json.dumps({"message_zh": "测试", "message_en": "test", "recipient": {"name": "张伟"}}).encode()


class RecordingSink(Sink):
    """Keeps the raw requests so the test can check the signature on its own."""

    def __init__(self, status: int = 200) -> None:
        super().__init__(secret=SECRET)
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> SinkResponse:
        self.requests.append((headers, body))
        return SinkResponse(self.status) if self.status != 200 else super().handle(method, path, headers, body)


async def test_signature_verifies_independently() -> None:
    recording = RecordingSink()
    async with start_sink(recording) as running, WebhookReceiver() as receiver:
        await receiver.deliver(target=WebhookTarget(url=running.url, secret=SECRET), idempotency_key="k1", body=BODY)
    [(headers, body)] = recording.requests
    assert body == BODY
    assert headers["idempotency-key"] == "k1"
    timestamp = headers["x-anju-timestamp"]
    assert abs(int(timestamp) - time.time()) < 5
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers["x-anju-signature"] == f"sha256={expected}"
    assert recording.received[0]["message_zh"] == "测试"


async def test_wrong_secret_is_rejected_with_401(sink: RunningSink) -> None:
    async with WebhookReceiver() as receiver:
        with pytest.raises(PermanentDeliveryError) as caught:
            await receiver.deliver(
                target=WebhookTarget(url=sink.url, secret="not-the-secret"), idempotency_key="k", body=BODY
            )
    assert caught.value.status == 401
    assert sink.sink.rejected == 1 and sink.sink.received == []


async def test_stale_timestamp_is_rejected(sink: RunningSink) -> None:
    async with WebhookReceiver(clock_s=lambda: time.time() - 301) as receiver:
        with pytest.raises(PermanentDeliveryError) as caught:
            await receiver.deliver(target=WebhookTarget(url=sink.url, secret=SECRET), idempotency_key="k", body=BODY)
    assert caught.value.status == 401


async def test_repeat_key_is_accepted_but_shown_once(sink: RunningSink, tmp_path: Path) -> None:
    target = WebhookTarget(url=sink.url, secret=SECRET)
    async with WebhookReceiver() as receiver:
        for _ in range(3):
            await receiver.deliver(target=target, idempotency_key="same", body=BODY)
    assert len(sink.sink.received) == 1 and sink.sink.duplicates == 2
    assert len((tmp_path / "sink.jsonl").read_text(encoding="utf-8").splitlines()) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, RetryableDeliveryError), (503, RetryableDeliveryError), (429, RetryableDeliveryError),
     (408, RetryableDeliveryError), (400, PermanentDeliveryError), (404, PermanentDeliveryError)],
)  # fmt: skip
async def test_status_classification(status: int, error: type[Exception]) -> None:
    async with start_sink(RecordingSink(status)) as running, WebhookReceiver() as receiver:
        with pytest.raises(error) as caught:
            await receiver.deliver(target=WebhookTarget(url=running.url, secret=SECRET), idempotency_key="k", body=BODY)
    assert getattr(caught.value, "status", None) == status


async def test_connection_refused_is_retryable() -> None:
    async with WebhookReceiver(timeout_s=1.0) as receiver:
        with pytest.raises(RetryableDeliveryError) as caught:
            url = f"http://127.0.0.1:{free_port()}/notify"
            await receiver.deliver(target=WebhookTarget(url=url, secret=SECRET), idempotency_key="k", body=BODY)
    assert caught.value.status is None


def test_secret_not_in_repr() -> None:
    assert SECRET not in repr(WebhookTarget(url="http://127.0.0.1/x", secret=SECRET))
    assert SECRET not in repr(Sink(secret=SECRET))


def test_sink_cli_logs_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    log_file = tmp_path / "out.jsonl"
    port = free_port()
    cmd = [sys.executable, "-m", "alerts.sink", "--port", str(port), "--secret-file", str(secret_file)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([*cmd, "--log", str(log_file)], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "sink did not start"
                time.sleep(0.05)

        async def deliver() -> None:
            async with WebhookReceiver() as receiver:
                target = WebhookTarget(url=f"http://127.0.0.1:{port}/notify", secret=SECRET)
                await receiver.deliver(target=target, idempotency_key="cli-1", body=BODY)
                await receiver.deliver(target=target, idempotency_key="cli-1", body=BODY)

        asyncio.run(deliver())
        assert log_file.read_text(encoding="utf-8").count("\n") == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert stderr.count("📟 收到通知 notification received: 测试 | test → 张伟 [cli-1]") == 1
