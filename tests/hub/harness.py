"""A running hub for tests: real Mosquitto (fixture), the real app under uvicorn, the real webhook sink."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
import uvicorn

from alerts.sink import RunningSink, Sink, start_sink
from hub.api import create_app
from hub.cli import GRACEFUL_STOP_S
from hub.demo.orchestrator import localise_deployment
from hub.demo.processes import free_port
from hub.settings import HubSettings
from protocol import Ack, Batch, Reading, decode_ack, encode_batch
from protocol.topics import Channel, topic

TOKEN = "test-token-0123456789abcdef"
SECRET = "test-webhook-secret-0123456789abcdef"
T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000
"""A whole hour before the tests start (ms): device times the hub takes as current, not clock skew."""


@dataclass
class Hub:
    settings: HubSettings
    api: httpx.AsyncClient
    sink: RunningSink
    mqtt_port: int

    async def metric(self, name: str) -> float:
        text = (await self.api.get("/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def metric_line(self, line_start: str) -> float | None:
        for line in (await self.api.get("/metrics")).text.splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return None


def write_deployment(directory: Path, source: Path, sink_port: int) -> Path:
    (directory / "webhook.secret").write_text(SECRET + "\n", encoding="utf-8")
    return localise_deployment(source, directory / "deployment.yaml", sink_port=sink_port, modbus_ports={})


@contextlib.asynccontextmanager
async def running_hub(
    *, mosquitto: int, deployment: Path, data_dir: Path, **overrides: float | int | str
) -> AsyncIterator[Hub]:
    """``overrides``: more ``HubSettings`` fields (``time_check_interval_s=0.5``)."""
    async with start_sink(Sink(secret=SECRET), port=0) as sink:
        config = write_deployment(data_dir.parent, deployment, sink.port)
        http_port = free_port()
        settings = HubSettings(
            deployment=config,
            data_dir=data_dir,
            mqtt_port=mosquitto,
            http_port=http_port,
            api_token=TOKEN,
            **overrides,  # type: ignore[arg-type]
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=http_port,
                log_level="warning",
                timeout_graceful_shutdown=GRACEFUL_STOP_S,
            )
        )
        serving = asyncio.create_task(server.serve(), name="test-hub-http")
        deadline = time.monotonic() + 15
        while not server.started:
            assert time.monotonic() < deadline, "hub did not start"
            assert not serving.done(), serving
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as api:
            hub = Hub(settings, api, sink, mosquitto)
            while not (await api.get("/api/v1/health")).json()["mqtt_connected"]:
                assert time.monotonic() < deadline, "hub did not connect to the broker"
                await asyncio.sleep(0.05)
            try:
                yield hub
            finally:
                server.should_exit = True
                await asyncio.wait_for(serving, 15)


@contextlib.asynccontextmanager
async def gateway(port: int, gateway_id: str = "gw-b1") -> AsyncIterator["Gateway"]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-{gateway_id}-{time.monotonic_ns()}") as client:
        await client.subscribe(topic("hongxing", gateway_id, Channel.ACK), qos=1)
        yield Gateway(client, gateway_id)


@dataclass
class Gateway:
    client: aiomqtt.Client
    id: str
    session: int = 1

    async def publish(self, seq: int, *readings: Reading, channel: Channel = Channel.DATA) -> None:
        body = encode_batch(Batch("hongxing", self.id, self.session, seq, readings))
        await self.client.publish(topic("hongxing", self.id, channel), body, qos=1)

    async def raw(self, name: str, body: bytes) -> None:
        await self.client.publish(name, body, qos=1)

    async def ack(self, timeout_s: float = 10.0) -> Ack:
        async with asyncio.timeout(timeout_s):
            async for message in self.client.messages:
                assert isinstance(message.payload, bytes)
                decoded = decode_ack(message.payload)
                assert isinstance(decoded, Ack), decoded
                return decoded
        raise AssertionError("no ack")


async def eventually(check, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """Await ``check()`` until it returns a truthy value or the deadline passes; return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
