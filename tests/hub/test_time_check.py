"""The hub checks its gateways' clocks by itself: ``cmd/time`` on each birth and every ``time_check_interval_s``,
the skew from the matching ``reply/time`` on ``/metrics``. Real Mosquitto, the real hub app under uvicorn, the edge
as a process; a listener on the broker sees every ``cmd/time`` and ``reply/time`` (nobody in these tests sends a
``cmd/time`` to a real edge, so every check seen is the hub's). The edge's clock cannot be shifted cleanly here
(no faketime), so its skew is asserted small and matched to the request; a non-zero skew comes from a scripted
gateway that speaks the protocol on the wire."""

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from protocol import GatewayState, encode_state
from protocol.telemetry import Reply, encode_reply
from tests.edge.support import Detector, Detectors, EdgeProcess, write_config
from tests.hub.harness import Hub, eventually, running_hub

pytestmark = pytest.mark.anyio

SKEW = "anju_gateway_clock_skew_seconds"
SENT = 'anju_commands_sent_total{command="time"}'


def _labels(gateway: str) -> str:
    return f'{{community="hongxing",gateway="{gateway}"}}'


@dataclass(frozen=True)
class Check:
    gateway: str
    hub_time: float
    qos: int
    retain: bool


@dataclass
class Wire:
    """Every ``cmd/time`` and ``reply/time`` of the community, in the order the broker delivered them."""

    checks: list[Check] = field(default_factory=list)
    replies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def sent_to(self, gateway: str) -> list[float]:
        return [check.hub_time for check in self.checks if check.gateway == gateway]

    def answers_from(self, gateway: str) -> list[dict[str, Any]]:
        return [body for name, body in self.replies if name == gateway]


@contextlib.asynccontextmanager
async def listening(port: int) -> AsyncIterator[Wire]:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"test-wire-{time.monotonic_ns()}") as client:
        await client.subscribe([("anju/v1/hongxing/+/cmd/time", 1), ("anju/v1/hongxing/+/reply/time", 1)])
        wire = Wire()

        async def listen() -> None:
            async for message in client.messages:
                _, _, _, gateway, channel, _ = message.topic.value.split("/")
                assert isinstance(message.payload, bytes)
                body = orjson.loads(message.payload)
                if channel == "cmd":
                    assert set(body) == {"hub_time"}, body
                    wire.checks.append(Check(gateway, body["hub_time"], message.qos, message.retain))
                else:
                    wire.replies.append((gateway, body))

        task = asyncio.create_task(listen(), name="test-wire")
        try:
            yield wire
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _write_edge_config(directory: Path, *, broker_port: int, modbus_port: int) -> Path:
    directory.mkdir(exist_ok=True)
    return write_config(
        directory,
        broker_port=broker_port,
        modbus_port=modbus_port,
        sensors={1: ("gas-b1-101", "gas"), 7: ("temp-b1-101", "temperature")},
        extra={"health_interval_s": 0.3},
        gateway="gw-b1",
    )


@contextlib.asynccontextmanager
async def edge_process(hub: Hub, directory: Path) -> AsyncIterator[EdgeProcess]:
    """gw-b1 as ``python -m edge run`` polling a real Modbus server; stopped (SIGTERM: offline state) by the test."""
    server = Detectors({1: ("gas-b1-101", Detector("gas")), 7: ("temp-b1-101", Detector("temperature"))})
    server.start()
    config = await asyncio.to_thread(_write_edge_config, directory, broker_port=hub.mqtt_port, modbus_port=server.port)
    edge = EdgeProcess(config)
    edge.start()
    try:
        yield edge
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nedge log:\n{edge.text()[-6000:]}") from None
    finally:
        edge.kill()
        await asyncio.to_thread(server.stop)  # it runs its own event loop, which may not nest in this one
    assert not [line for line in edge.text().splitlines() if "Traceback" in line]


def _matched(reply: dict[str, Any], sent: list[float]) -> bool:
    """The reply answers one of the checks sent: its clock minus its skew gives back that check's hub_time."""
    return any(abs(reply["time"] - reply["skew_s"] - hub_time) < 1e-3 for hub_time in sent)


async def _online(hub: Hub, gateway: str = "gw-b1") -> bool:
    body: dict[str, Any] = (await hub.api.get(f"/api/v1/gateways/hongxing/{gateway}/health")).json()
    return bool(body["online"])


async def _offline(hub: Hub) -> bool:
    return not await _online(hub)


async def test_a_gateway_coming_online_gets_a_time_check_nobody_asked_for(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    async with (
        running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as hub,
        listening(hub.mqtt_port) as wire,
    ):
        assert hub.settings.time_check_interval_s == 600, "the default: only the birth's check within this test"
        async with edge_process(hub, tmp_path / "edge") as edge:
            (reply,) = await eventually(lambda: _async(wire.answers_from("gw-b1")), 60)
            (check,) = wire.checks
            assert (check.gateway, check.qos, check.retain) == ("gw-b1", 1, False)
            assert abs(check.hub_time - time.time()) < 20
            assert reply["ok"] is True and _matched(reply, [check.hub_time]), (reply, check)
            assert abs(reply["skew_s"]) < 2, "same host, same clock"

            gauge = await eventually(lambda: hub.metric_line(f"{SKEW}{_labels('gw-b1')} "), 30)
            assert gauge == pytest.approx(reply["skew_s"], abs=1e-9)
            assert await hub.metric_line(f"{SKEW}{_labels('gw-b2')}") is None, "gw-b2 never came online"
            assert await hub.metric_line(SENT) == 1

            async def health_carries_the_skew() -> dict[str, Any] | None:
                body: dict[str, Any] = (await hub.api.get("/api/v1/gateways/hongxing/gw-b1/health")).json()
                return body if "clock_skew_s" in body["values"] else None

            body = await eventually(health_carries_the_skew, 30)
            assert body["values"]["clock_skew_s"] == pytest.approx(reply["skew_s"], abs=1e-6), "one figure, twice"
            assert [r["command"] for r in body["replies"]] == ["time"]
            await asyncio.sleep(1.0)
            assert len(wire.checks) == 1, "no second check before the interval"
            assert await asyncio.to_thread(edge.terminate) == 0

    async with listening(mosquitto) as late:
        await asyncio.sleep(0.3)
        assert late.checks == [], "cmd/time is not retained"


async def _async(value: Any) -> Any:
    return value


async def test_checks_repeat_every_interval_and_skip_a_gateway_while_it_is_offline(
    mosquitto: int, demo_deployment: Path, tmp_path: Path
) -> None:
    async with (
        running_hub(
            mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data", time_check_interval_s=0.5
        ) as hub,
        listening(hub.mqtt_port) as wire,
    ):
        async with edge_process(hub, tmp_path / "edge") as edge:
            await eventually(lambda: _async(len(wire.answers_from("gw-b1")) >= 3), 60)
            sent = wire.sent_to("gw-b1")
            gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
            assert all(0.45 < gap < 5 for gap in gaps), gaps
            for reply in wire.answers_from("gw-b1"):
                assert _matched(reply, sent) and abs(reply["skew_s"]) < 2, (reply, sent)
            assert await hub.metric_line(f"{SKEW}{_labels('gw-b1')} ") is not None
            assert await asyncio.to_thread(edge.terminate) == 0

        await eventually(lambda: _offline(hub))
        await asyncio.sleep(0.3)  # a check already on its way when the death arrived
        count, counted = len(wire.checks), await hub.metric_line(SENT)
        await asyncio.sleep(1.6)  # three intervals
        assert len(wire.checks) == count, "no checks to an offline gateway"
        assert await hub.metric_line(SENT) == counted == count
        assert {check.gateway for check in wire.checks} == {"gw-b1"}, "gw-b2 was never online"

        async with edge_process(hub, tmp_path / "edge") as edge:  # its birth puts it back on the schedule
            await eventually(lambda: _async(len(wire.sent_to("gw-b1")) > count), 60)
            assert await asyncio.to_thread(edge.terminate) == 0


async def test_a_skewed_clock_is_gauged_and_warned_about_and_only_the_hubs_own_checks_count(
    mosquitto: int, demo_deployment: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """gw-b2 is scripted on the wire with a clock 5.25 s ahead (the real edge's clock cannot be shifted here)."""
    caplog.set_level(logging.INFO, logger="anju.hub.timecheck")
    state = "anju/v1/hongxing/gw-b2/state"
    async with (
        running_hub(mosquitto=mosquitto, deployment=demo_deployment, data_dir=tmp_path / "data") as hub,
        aiomqtt.Client("127.0.0.1", hub.mqtt_port, identifier="test-gw-b2") as gw,
    ):
        await gw.subscribe("anju/v1/hongxing/gw-b2/cmd/time", qos=1)

        async def answer(session: int, skew_s: float, *, delay_s: float = 0.0) -> float:
            await gw.publish(state, encode_state(GatewayState("online", session, time.time())), qos=1, retain=True)
            async with asyncio.timeout(10):
                message = await anext(aiter(gw.messages))
            assert isinstance(message.payload, bytes)
            hub_time: float = orjson.loads(message.payload)["hub_time"]
            await asyncio.sleep(delay_s)
            reply = Reply("time", True, hub_time + skew_s, "clock skew", skew_s=skew_s)
            await gw.publish("anju/v1/hongxing/gw-b2/reply/time", encode_reply(reply), qos=1)
            return hub_time

        async def replies() -> float | None:
            return await hub.metric_line('anju_command_replies_total{command="time",ok="true"} ')

        await answer(1, 5.25)
        assert await eventually(lambda: hub.metric_line(f"{SKEW}{_labels('gw-b2')} ")) == 5.25
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(w.startswith("gateway gw-b2 clock is +5.250 s off the hub's") for w in warnings), warnings

        made_up = Reply("time", True, time.time(), "hand-published", skew_s=-30.0)  # hub_time: 30 s from now
        await gw.publish("anju/v1/hongxing/gw-b2/reply/time", encode_reply(made_up), qos=1)
        await eventually(lambda: _async_ge(replies(), 2))
        assert await hub.metric_line(f"{SKEW}{_labels('gw-b2')} ") == 5.25, "not an answer to the hub's check"

        await answer(2, 40.0, delay_s=2.2)  # a new session is a new birth: a new check, answered too late to judge
        await eventually(lambda: _async_ge(replies(), 3))
        assert await hub.metric_line(f"{SKEW}{_labels('gw-b2')} ") == 5.25, "uncertain by more than the limit"
        assert await hub.metric_line(SENT) == 2

    infos = [r.getMessage() for r in caplog.records if r.name == "anju.hub.timecheck"]
    assert any("a cmd/time the hub did not send" in line and "-30.000 s not taken" in line for line in infos), infos
    assert any("answered cmd/time after 2." in line and "not taken" in line for line in infos), infos
    assert not [w for w in caplog.records if w.levelno >= logging.WARNING and "+40.000" in w.getMessage()]


async def _async_ge(value: Any, at_least: float) -> bool:
    got = await value
    return got is not None and got >= at_least
